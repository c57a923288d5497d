import SQLKit

/// A sensor as a doorway between two places (or a place and the outside).
struct Doorway: Encodable, Sendable, Equatable {
    let sensor: String
    let from: String?
    let to: String?

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sensor, forKey: .sensor)
        try container.encode(from, forKey: .from)
        try container.encode(to, forKey: .to)
    }

    enum CodingKeys: String, CodingKey { case sensor, from, to }

    /// How this doorway's occupancy counts toward a set of places: +1 if it leads into the set
    /// from outside it, −1 if out of it, 0 if both sides (or neither) are in it.
    func sign(into places: Set<String>) -> Int64 {
        (to.map(places.contains) == true ? 1 : 0) - (from.map(places.contains) == true ? 1 : 0)
    }
}

/// The links that tie the families to places: sensors as doorways and rooms in a place. Each
/// locks the tree first, so a place cannot be deleted while something is being linked to it.
extension PlacesRepository {
    /// Links (or relinks) a sensor as a doorway; the places must exist (422 otherwise).
    func setDoorway(_ doorway: Doorway) async throws {
        try await database.transaction { db in
            try await Self.lockTree(db)
            for (field, place) in [("from", doorway.from), ("to", doorway.to)] {
                guard let place else { continue }
                guard try await db.raw("SELECT 1 AS known FROM places WHERE place_id = \(bind: place)").first() != nil else {
                    throw APIError.invalid(field, "\(field) names no place")
                }
            }
            try await db.raw(
                """
                INSERT INTO place_doorways (sensor, from_place, to_place) VALUES (\(bind: doorway.sensor), \(bind: doorway.from), \(bind: doorway.to))
                ON CONFLICT (sensor) DO UPDATE SET from_place = excluded.from_place, to_place = excluded.to_place
                """
            ).run()
        }
        feed.publish(.placeLinked, doorway)
    }

    /// Puts a room in a place (moving it if it was in another); the place must exist (422).
    func setRoomPlace(room: String, place: String) async throws {
        try await database.transaction { db in
            try await Self.lockTree(db)
            guard try await db.raw("SELECT 1 AS known FROM places WHERE place_id = \(bind: place)").first() != nil else {
                throw APIError.invalid("place_id", "place_id names no place")
            }
            try await db.raw(
                """
                INSERT INTO place_rooms (room, place_id) VALUES (\(bind: room), \(bind: place))
                ON CONFLICT (room) DO UPDATE SET place_id = excluded.place_id
                """
            ).run()
        }
        feed.publish(.placeLinked, ["room": room, "place_id": place])
    }

    /// A sensor is no longer a doorway; 404 if it was none.
    func unlink(sensor: String) async throws {
        try await unlink("DELETE FROM place_doorways WHERE sensor = \(bind: sensor) RETURNING sensor", missing: "The sensor is no doorway.")
        feed.publish(.placeUnlinked, ["sensor": sensor])
    }

    /// A room is no longer in a place; 404 if it was in none.
    func unlink(room: String) async throws {
        try await unlink("DELETE FROM place_rooms WHERE room = \(bind: room) RETURNING room", missing: "The room is in no place.")
        feed.publish(.placeUnlinked, ["room": room])
    }

    private func unlink(_ delete: SQLQueryString, missing: String) async throws {
        try await database.transaction { db in
            try await Self.lockTree(db)
            guard try await db.raw(delete).first() != nil else { throw APIError.notFound(missing) }
        }
    }

    /// The doorways and rooms a place and its descendants hold.
    static func links(of ids: [String], db: any SQLDatabase) async throws -> (doorways: [Doorway], rooms: [String]) {
        guard !ids.isEmpty else { return ([], []) }
        let doorways = try await db.raw(
            """
            SELECT sensor, from_place, to_place FROM place_doorways
            WHERE from_place IN (\(binds: ids)) OR to_place IN (\(binds: ids)) ORDER BY sensor
            """
        ).all().map {
            Doorway(
                sensor: try $0.decode(column: "sensor", as: String.self), from: try $0.decode(column: "from_place", as: String?.self),
                to: try $0.decode(column: "to_place", as: String?.self))
        }
        let rooms = try await db.raw("SELECT room FROM place_rooms WHERE place_id IN (\(binds: ids)) ORDER BY room").all()
            .map { try $0.decode(column: "room", as: String.self) }
        return (doorways, rooms)
    }

    /// How many people its doorway sensors count inside a place and everything under it, now or at
    /// `instant` (each sensor's occupancy read from its totals or minute rollups: no replay). A
    /// doorway between two places inside moves people within it and counts for neither side.
    /// Nil for an unknown place.
    func counted(place id: String, at instant: Timestamp?) async throws -> (counted: Int64, doorways: [Doorway])? {
        let found = try await database.read { db -> (Set<String>, [Doorway])? in
            let ids = try await db.raw("\(Self.descendants(of: id)) SELECT place_id FROM down").all().map { try $0.decode(column: "place_id", as: String.self) }
            guard !ids.isEmpty else { return nil }
            return (Set(ids), try await Self.links(of: ids, db: db).doorways)
        }
        guard let (places, doorways) = found else { return nil }
        let sensors = SensorsRepository(database: database)
        var counted: Int64 = 0
        var counting: [Doorway] = []
        for doorway in doorways {
            let sign = doorway.sign(into: places)
            guard sign != 0 else { continue }
            let reading = if let instant { try await sensors.inside(sensor: doorway.sensor, at: instant) } else { try await sensors.inside(sensor: doorway.sensor) }
            let inside = reading ?? 0
            // Totals are bounded by the webhook limits; an absurd sum saturates rather than trap.
            let (sum, overflow) = sign > 0 ? counted.addingReportingOverflow(inside) : counted.subtractingReportingOverflow(inside)
            counted = overflow ? ((sign > 0) == (inside > 0) ? .max : .min) : sum
            counting.append(doorway)
        }
        return (counted, counting)
    }
}
