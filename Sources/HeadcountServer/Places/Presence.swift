import SQLKit

/// Someone a family knows to be in a place: a room's registrant, a worker clocked in at one of its
/// attendance devices, an event's checked-in attendee, a reservation's holder.
struct NamedPerson: JSONWritable, Sendable, Equatable {
    let name: String
    /// `room`, `attendance`, `event` or `reservation`.
    let source: String
    /// The person within the source: `room/name`, `tenant/employee`, `event/user`, a reservation id.
    let sourceID: String
    /// The place of the tree the source is linked to.
    let placeID: String
    let since: Timestamp
    /// When the place's `stale_after_minutes` closed the presence, if it did.
    var closedAt: Timestamp?

    enum CodingKeys: String, CodingKey {
        case name, source, since
        case sourceID = "source_id"
        case placeID = "place_id"
        case closedAt = "closed_at"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(source, forKey: .source)
        try container.encode(sourceID, forKey: .sourceID)
        try container.encode(placeID, forKey: .placeID)
        try container.encode(since.rfc3339, forKey: .since)
        if let closedAt { try container.encode(closedAt.rfc3339, forKey: .closedAt) }
    }

    /// As `encode(to:)`, keys sorted.
    func writeJSON(to out: inout [UInt8]) {
        if let closedAt {
            out += #"{"closed_at":"#.utf8
            JSONWriter.append(closedAt.rfc3339, to: &out)
            out += #","name":"#.utf8
        } else {
            out += #"{"name":"#.utf8
        }
        JSONWriter.append(name, to: &out)
        out += #","place_id":"#.utf8
        JSONWriter.append(placeID, to: &out)
        out += #","since":"#.utf8
        JSONWriter.append(since.rfc3339, to: &out)
        out += #","source":"#.utf8
        JSONWriter.append(source, to: &out)
        out += #","source_id":"#.utf8
        JSONWriter.append(sourceID, to: &out)
        out.append(UInt8(ascii: "}"))
    }
}

/// Who and how many are in a place at an instant: the doorway count, the people named by the
/// families, and the difference.
struct Presence: Encodable, Sendable {
    let place: String
    let at: Timestamp
    let counted: Int64
    let named: [NamedPerson]
    /// Registrants and workers still inside by their source whose presence the place's limit
    /// closed during the limit before `at` (people forget to sign out).
    let closedByPolicy: [NamedPerson]

    /// `counted` − people named: positive when the sensors see people nobody named, negative when
    /// named people are not counted (they left without signing out, or a doorway has no sensor).
    var unaccounted: Int64 { counted.subtractingReportingOverflow(Int64(named.count)).partialValue }

    enum CodingKeys: String, CodingKey {
        case place, at, counted, named, unaccounted
        case closedByPolicy = "closed_by_policy"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(place, forKey: .place)
        try container.encode(at.rfc3339, forKey: .at)
        try container.encode(counted, forKey: .counted)
        try container.encode(named, forKey: .named)
        try container.encode(unaccounted, forKey: .unaccounted)
        try container.encode(closedByPolicy, forKey: .closedByPolicy)
    }
}

/// A place and everything under it, as counting and naming need it.
struct Subtree: Sendable {
    let places: Set<String>
    let doorways: [Doorway]
    let links: [PlaceLink]
    /// Each place's `stale_after_minutes`.
    let staleAfter: [String: Int64]
}

extension PlacesRepository {
    /// The subtree under a place; nil for an unknown place.
    func subtree(of id: String) async throws -> Subtree? {
        try await database.read { db in
            let rows = try await db.raw("\(Self.descendants(of: id)) SELECT p.place_id, p.stale_after_minutes FROM down JOIN places p ON p.place_id = down.place_id")
                .all()
            guard !rows.isEmpty else { return nil }
            var staleAfter: [String: Int64] = [:]
            for row in rows {
                staleAfter[try row.decode(column: "place_id", as: String.self)] = try row.decode(column: "stale_after_minutes", as: Int64.self)
            }
            let (doorways, links) = try await Self.links(of: Array(staleAfter.keys), db: db)
            return Subtree(places: Set(staleAfter.keys), doorways: doorways, links: links, staleAfter: staleAfter)
        }
    }

    /// How many people the doorway sensors count inside the subtree, now or at `instant` (each
    /// sensor's occupancy read from its totals or minute rollups: no replay), and the doorways that
    /// count. A doorway between two places inside moves people within it and counts for neither.
    func counted(_ tree: Subtree, at instant: Timestamp?) async throws -> (counted: Int64, doorways: [Doorway]) {
        let counting = tree.doorways.filter { $0.sign(into: tree.places) != 0 }
        let inside = try await SensorsRepository(database: database).inside(sensors: counting.map(\.sensor), at: instant)
        var counted: Int64 = 0
        for doorway in counting {
            let reading = inside[doorway.sensor] ?? 0
            // Totals are bounded by the webhook limits; an absurd sum saturates rather than trap.
            let into = doorway.sign(into: tree.places) > 0
            let (sum, overflow) = into ? counted.addingReportingOverflow(reading) : counted.subtractingReportingOverflow(reading)
            counted = overflow ? (into == (reading > 0) ? .max : .min) : sum
        }
        return (counted, counting)
    }

    /// Who is in a place and everything under it, now or at `instant`; nil for an unknown place.
    func presence(of id: String, at instant: Timestamp?) async throws -> Presence? {
        guard let tree = try await subtree(of: id) else { return nil }
        let at = instant ?? Timestamp.now()
        let counted = try await counted(tree, at: instant).counted
        let people = try await named(in: tree, at: at)
        let ordered = people.sorted { ($0.name, $0.source, $0.sourceID) < ($1.name, $1.source, $1.sourceID) }
        return Presence(
            place: id, at: at, counted: counted, named: ordered.filter { $0.closedAt == nil }, closedByPolicy: ordered.filter { $0.closedAt != nil })
    }

    /// Everyone the families name in the subtree at `at` (reservation holders only with `holders`),
    /// with those the stale policy closed.
    func named(in tree: Subtree, at: Timestamp, holders: Bool = true) async throws -> [NamedPerson] {
        let linked = Dictionary(grouping: tree.links, by: \.kind).mapValues { Dictionary($0.map { ($0.id, $0.placeID) }, uniquingKeysWith: { a, _ in a }) }
        return try await database.read { db in
            try await Self.roomRegistrants(linked[.room] ?? [:], tree: tree, at: at, db: db)
                + Self.clockedIn(linked[.attendanceDevice] ?? [:], tree: tree, at: at, db: db)
                + Self.checkedIn(linked[.event] ?? [:], at: at, db: db)
                + (holders ? Self.holders(linked[.reservationDevice] ?? [:], at: at, db: db) : [])
        }
    }

    /// A presence `since` in a place with `minutes` of limit, at `at`: open, closed by policy (in
    /// the limit before `at`), or nil when the policy closed it longer ago than that. An admin's
    /// correction replaces the policy: inside until they left, or all along.
    private static func policed(_ person: NamedPerson, minutes: Int64, corrected: Timestamp??, at: Timestamp) -> NamedPerson? {
        if case .some(let left) = corrected {
            guard let left else { return person }
            return left.microseconds > at.microseconds ? person : nil
        }
        let limit = minutes * 60_000_000
        let closes = person.since.microseconds + limit
        guard closes <= at.microseconds else { return person }
        guard closes > at.microseconds - limit else { return nil }
        var closed = person
        closed.closedAt = Timestamp(microseconds: closes)
        return closed
    }

    /// The longest limit of the places given, in microseconds: how far back a presence can reach.
    private static func window(_ places: some Sequence<String>, _ tree: Subtree) -> Int64 {
        2 * 60_000_000 * (places.map { tree.staleAfter[$0] ?? 960 }.max() ?? 960)
    }

    /// Registrants of the rooms (room → place) at `at`: whose last action by then is a register.
    private static func roomRegistrants(_ rooms: [String: String], tree: Subtree, at: Timestamp, db: any SQLDatabase) async throws -> [NamedPerson] {
        guard !rooms.isEmpty else { return [] }
        let from = at.microseconds - window(rooms.values, tree)
        let people = try await db.raw(
            """
            SELECT a.room, a.name, a.at_us FROM room_actions a
            WHERE a.room IN (\(binds: Array(rooms.keys))) AND a.action = 'register' AND a.at_us <= \(bind: at.microseconds) AND a.at_us > \(bind: from)
            AND NOT EXISTS (
                SELECT 1 FROM room_actions b WHERE b.room = a.room AND b.name = a.name AND b.seq > a.seq AND b.at_us <= \(bind: at.microseconds))
            """
        ).all().map { row in
            let room = try row.decode(column: "room", as: String.self), name = try row.decode(column: "name", as: String.self)
            return NamedPerson(
                name: name, source: "room", sourceID: "\(room)/\(name)", placeID: rooms[room]!, since: Timestamp(microseconds: try row.decode(column: "at_us", as: Int64.self)))
        }
        return try await policed(people, source: "room", tree: tree, at: at, db: db)
    }

    /// Each presence through the place's policy, with the admins' corrections.
    private static func policed(_ people: [NamedPerson], source: String, tree: Subtree, at: Timestamp, db: any SQLDatabase) async throws -> [NamedPerson] {
        let corrections = try await corrections(source, of: people, db: db)
        return people.compactMap { person in
            policed(person, minutes: tree.staleAfter[person.placeID] ?? 960, corrected: corrections[key(person.sourceID, person.since)], at: at)
        }
    }

    /// Workers whose last record by `at`, at any device, is an entry at one of these (device →
    /// place), not deleted: a later record anywhere (another place's device too) wins.
    private static func clockedIn(_ devices: [String: String], tree: Subtree, at: Timestamp, db: any SQLDatabase) async throws -> [NamedPerson] {
        guard !devices.isEmpty else { return [] }
        let atMs = at.microseconds / 1000
        let fromMs = atMs - window(devices.values, tree) / 1000
        let people = try await db.raw(
            """
            SELECT r.tenant_id, r.employee_id, r.device_id, r.timestamp_ms, w.first_name, w.last_name FROM attendance_records r
            LEFT JOIN workers w ON w.document_id = r.employee_id
            WHERE r.device_id IN (\(binds: Array(devices.keys))) AND r.type = 'ENTRY' AND r.deleted_us IS NULL
            AND r.timestamp_ms <= \(bind: atMs) AND r.timestamp_ms > \(bind: fromMs)
            AND NOT EXISTS (
                SELECT 1 FROM attendance_records l
                WHERE l.tenant_id = r.tenant_id AND l.employee_id = r.employee_id AND l.deleted_us IS NULL AND l.timestamp_ms <= \(bind: atMs)
                AND (l.timestamp_ms > r.timestamp_ms OR (l.timestamp_ms = r.timestamp_ms AND l.server_id > r.server_id)))
            """
        ).all().map { row in
            let tenant = try row.decode(column: "tenant_id", as: String.self), employee = try row.decode(column: "employee_id", as: String.self)
            let first = try row.decode(column: "first_name", as: String?.self), last = try row.decode(column: "last_name", as: String?.self)
            return NamedPerson(
                name: first.map { "\($0) \(last ?? "")".trimmingCharacters(in: .whitespaces) } ?? employee, source: "attendance",
                sourceID: "\(tenant)/\(employee)", placeID: devices[try row.decode(column: "device_id", as: String.self)]!,
                since: Timestamp(microseconds: try row.decode(column: "timestamp_ms", as: Int64.self) * 1000))
        }
        return try await policed(people, source: "attendance", tree: tree, at: at, db: db)
    }

    /// Attendees of the events (event → place) whose last scan by `at` is an entry.
    private static func checkedIn(_ events: [String: String], at: Timestamp, db: any SQLDatabase) async throws -> [NamedPerson] {
        guard !events.isEmpty else { return [] }
        return try await db.raw(
            """
            SELECT c.event_id, c.user_id, c.at_us, u.name FROM event_checkins c LEFT JOIN users u ON u.user_id = c.user_id
            WHERE c.event_id IN (\(binds: Array(events.keys))) AND c.type = 'entry' AND c.at_us <= \(bind: at.microseconds)
            AND NOT EXISTS (
                SELECT 1 FROM event_checkins l WHERE l.event_id = c.event_id AND l.user_id = c.user_id AND l.at_us <= \(bind: at.microseconds)
                AND (l.at_us > c.at_us OR (l.at_us = c.at_us AND l.id > c.id)))
            """
        ).all().map { row in
            let event = try row.decode(column: "event_id", as: String.self), user = try row.decode(column: "user_id", as: String.self)
            return NamedPerson(
                name: try row.decode(column: "name", as: String?.self) ?? user, source: "event", sourceID: "\(event)/\(user)", placeID: events[event]!,
                since: Timestamp(microseconds: try row.decode(column: "at_us", as: Int64.self)))
        }
    }

    /// Holders of the devices' (device → place) active reservations that span `at`.
    private static func holders(_ devices: [String: String], at: Timestamp, db: any SQLDatabase) async throws -> [NamedPerson] {
        guard !devices.isEmpty else { return [] }
        return try await db.raw(
            """
            SELECT id, device_id, holder, start_us FROM reservations
            WHERE device_id IN (\(binds: Array(devices.keys))) AND status = 'active' AND holder IS NOT NULL
            AND start_us <= \(bind: at.microseconds) AND end_us > \(bind: at.microseconds)
            """
        ).all().map { row in
            NamedPerson(
                name: try row.decode(column: "holder", as: String.self), source: "reservation", sourceID: String(try row.decode(column: "id", as: Int64.self)),
                placeID: devices[try row.decode(column: "device_id", as: String.self)]!, since: Timestamp(microseconds: try row.decode(column: "start_us", as: Int64.self)))
        }
    }
}
