import SQLKit

/// The places a message touches, each with every place above it: what a subscription filtered to
/// a place is matched against. A sensor touches the two sides of its doorway; a room, an event or
/// a device the place it is linked to; an alert or a roll call its own place.
enum PlaceSubjects {
    static func load(for messages: [WebhookDeliveries.Message], if needed: Bool, db: any SQLDatabase) async throws -> [Int64: Set<String>] {
        guard needed else { return [:] }
        var parent: [String: String] = [:]
        for row in try await db.raw("SELECT place_id, parent_id FROM places").all() {
            if let up = try row.decode(column: "parent_id", as: String?.self) { parent[try row.decode(column: "place_id", as: String.self)] = up }
        }
        var doorways: [String: [String]] = [:]
        let sensors = Array(Set(messages.compactMap(\.sensor)))
        for chunk in sensors.chunks(of: 500) {
            for doorway in try await PlacesRepository.doorways(of: Array(chunk), db: db) {
                doorways[doorway.sensor] = [doorway.from, doorway.to].compactMap { $0 }
            }
        }
        var linked: [String: String] = [:]
        let things = Array(Set(messages.flatMap { [$0.room, $0.eventID, $0.deviceID].compactMap { $0 } }))
        for chunk in things.chunks(of: 500) {
            for row in try await db.raw("SELECT kind, link_id, place_id FROM place_links WHERE link_id IN (\(binds: Array(chunk)))").all() {
                let link = try PlaceLink(row: row)
                linked["\(link.kind.rawValue) \(link.id)"] = link.placeID
            }
        }
        var touched: [Int64: Set<String>] = [:]
        for message in messages {
            var places = [message.placeID].compactMap { $0 } + (message.sensor.flatMap { doorways[$0] } ?? [])
            places += [
                message.room.flatMap { linked["room \($0)"] }, message.eventID.flatMap { linked["event \($0)"] },
                message.deviceID.flatMap { linked["attendance_device \($0)"] ?? linked["reservation_device \($0)"] },
            ].compactMap { $0 }
            var all = Set<String>()
            for place in places {
                var current: String? = place
                for _ in 0...PlacesRepository.maxDepth {
                    guard let id = current, all.insert(id).inserted else { break }
                    current = parent[id]
                }
            }
            touched[message.id] = all
        }
        return touched
    }
}
