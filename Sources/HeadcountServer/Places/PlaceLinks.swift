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

    init(sensor: String, from: String?, to: String?) {
        self.sensor = sensor
        self.from = from
        self.to = to
    }

    init(row: any SQLRow) throws {
        sensor = try row.decode(column: "sensor", as: String.self)
        from = try row.decode(column: "from_place", as: String?.self)
        to = try row.decode(column: "to_place", as: String?.self)
    }

    /// How this doorway's occupancy counts toward a set of places: +1 if it leads into the set
    /// from outside it, −1 if out of it, 0 if both sides (or neither) are in it.
    func sign(into places: Set<String>) -> Int64 {
        (to.map(places.contains) == true ? 1 : 0) - (from.map(places.contains) == true ? 1 : 0)
    }
}

/// A room, attendance device, reservation device or event in a place.
struct PlaceLink: Encodable, Sendable, Equatable {
    enum Kind: String, Sendable, CaseIterable {
        case room
        case attendanceDevice = "attendance_device"
        case reservationDevice = "reservation_device"
        case event

        /// The key that names it in JSON, as its own family names it.
        var key: String {
            switch self {
            case .room: "room"
            case .attendanceDevice, .reservationDevice: "device_id"
            case .event: "eventId"
            }
        }

        var noun: String { rawValue.replacingOccurrences(of: "_", with: " ") }
    }

    let kind: Kind
    let id: String
    let placeID: String

    /// `{"<key>": id, "place_id": …}`, e.g. `{"room": "r1", "place_id": "floor-1"}`.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: AnyKey.self)
        try container.encode(id, forKey: AnyKey(kind.key))
        try container.encode(placeID, forKey: AnyKey("place_id"))
    }
}

extension PlaceLink {
    init(row: any SQLRow) throws {
        kind = Kind(rawValue: try row.decode(column: "kind", as: String.self)) ?? .room
        id = try row.decode(column: "link_id", as: String.self)
        placeID = try row.decode(column: "place_id", as: String.self)
    }
}

/// The links that tie the families to places: sensors as doorways, and rooms, devices and events
/// in a place. Each locks the tree first, so a place cannot be deleted while something is being
/// linked to it.
extension PlacesRepository {
    /// Links (or relinks) a sensor as a doorway; the places must exist (422 otherwise).
    func setDoorway(_ doorway: Doorway) async throws {
        try await database.transaction(publishingTo: feed) { db, changes in
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
            changes.publish(.placeLinked, doorway)
        }
    }

    /// Puts a family's thing in a place (moving it if it was in another). The place must exist
    /// (422), and an attendance device or an event must exist too (404).
    func link(_ kind: PlaceLink.Kind, _ id: String, to place: String) async throws -> PlaceLink {
        let link = PlaceLink(kind: kind, id: id, placeID: place)
        try await database.transaction(publishingTo: feed) { db, changes in
            try await Self.lockTree(db)
            switch kind {
            case .attendanceDevice:
                guard try await db.raw("SELECT 1 AS known FROM devices WHERE device_id = \(bind: id)").first() != nil else { throw APIError.notFound("Device not found") }
            case .event:
                guard try await db.raw("SELECT 1 AS known FROM events WHERE event_id = \(bind: id)").first() != nil else { throw APIError.notFound("Event not found") }
            case .room, .reservationDevice: break  // both come into being with their first use
            }
            guard try await db.raw("SELECT 1 AS known FROM places WHERE place_id = \(bind: place)").first() != nil else {
                throw APIError.invalid("place_id", "place_id names no place")
            }
            try await db.raw(
                """
                INSERT INTO place_links (kind, link_id, place_id) VALUES (\(bind: kind.rawValue), \(bind: id), \(bind: place))
                ON CONFLICT (kind, link_id) DO UPDATE SET place_id = excluded.place_id
                """
            ).run()
            changes.publish(.placeLinked, link)
        }
        return link
    }

    /// A sensor is no longer a doorway; 404 if it was none.
    func unlink(sensor: String) async throws {
        try await unlink("DELETE FROM place_doorways WHERE sensor = \(bind: sensor) RETURNING sensor", missing: "The sensor is no doorway.", change: ["sensor": sensor])
    }

    /// A thing is no longer in a place; 404 if it was in none.
    func unlink(_ kind: PlaceLink.Kind, _ id: String) async throws {
        try await unlink(
            "DELETE FROM place_links WHERE kind = \(bind: kind.rawValue) AND link_id = \(bind: id) RETURNING link_id", missing: "The \(kind.noun) is in no place.",
            change: [kind.key: id])
    }

    private func unlink(_ delete: SQLQueryString, missing: String, change: [String: String]) async throws {
        try await database.transaction(publishingTo: feed) { db, changes in
            try await Self.lockTree(db)
            guard try await db.raw(delete).first() != nil else { throw APIError.notFound(missing) }
            changes.publish(.placeUnlinked, change)
        }
    }

    /// The doorways among `sensors`.
    static func doorways(of sensors: [String], db: any SQLDatabase) async throws -> [Doorway] {
        var doorways: [Doorway] = []
        for chunk in sensors.chunks(of: 500) {
            doorways += try await db.raw("SELECT sensor, from_place, to_place FROM place_doorways WHERE sensor IN (\(binds: Array(chunk))) ORDER BY sensor").all()
                .map(Doorway.init)
        }
        return doorways
    }

    /// The doorways and links a place and its descendants hold.
    static func links(of ids: [String], db: any SQLDatabase) async throws -> (doorways: [Doorway], links: [PlaceLink]) {
        guard !ids.isEmpty else { return ([], []) }
        let doorways = try await db.raw(
            """
            SELECT sensor, from_place, to_place FROM place_doorways
            WHERE from_place IN (\(binds: ids)) OR to_place IN (\(binds: ids)) ORDER BY sensor
            """
        ).all().map(Doorway.init)
        let links = try await db.raw("SELECT kind, link_id, place_id FROM place_links WHERE place_id IN (\(binds: ids)) ORDER BY kind, link_id").all()
            .map(PlaceLink.init)
        return (doorways, links)
    }
}

/// A coding key made at run time, for a link's family-given key.
private struct AnyKey: CodingKey {
    let stringValue: String
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    var intValue: Int? { nil }
    init?(intValue: Int) { nil }
}
