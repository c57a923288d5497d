/// What a change is about; subscribers of `/api/stream` choose topics.
enum Topic: String, CaseIterable, Sendable {
    case rooms, sensors, events, attendance, reservations, places
    case rollCalls = "rollcalls"
    case alerts

    /// Topics that carry names or tenants' data, and so take the admin key.
    static let admin: Set<Topic> = [.attendance, .rollCalls]
}

extension Topic {
    /// Its place in `allCases`, for counting by topic without a dictionary.
    var index: Int { Topic.allCases.firstIndex(of: self)! }
    /// Its bit in a mask of topics.
    var bit: Int { 1 << index }
}
