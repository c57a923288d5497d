/// What a change is about; subscribers of `/api/stream` choose topics.
enum Topic: String, CaseIterable, Sendable {
    case rooms, sensors, events, attendance, reservations, places
}

extension Topic {
    /// Its place in `allCases`, for counting by topic without a dictionary.
    var index: Int { Topic.allCases.firstIndex(of: self)! }
    /// Its bit in a mask of topics.
    var bit: Int { 1 << index }
}
