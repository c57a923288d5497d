import NIOCore
import SQLKit

struct Event: Encodable, Sendable {
    static let statuses = ["active", "scheduled", "ongoing", "completed", "cancelled"]
    static let columns: SQLQueryString = """
        event_id, title, description, date, location, capacity, organizer, status, has_waitlist, confirmed, waitlisted, checked_in, created_us
        """

    let eventId: String
    let title: String
    let description: String
    let date: String
    let location: String
    let capacity: Int64
    let organizer: String
    let status: String
    let hasWaitlist: Bool
    let confirmedCount: Int64
    let waitlistCount: Int64
    /// People checked in and not out.
    let checkedInCount: Int64
    let createdAt: String

    init(row: any SQLRow) throws {
        eventId = try row.decode(column: "event_id", as: String.self)
        title = try row.decode(column: "title", as: String.self)
        description = try row.decode(column: "description", as: String.self)
        date = try row.decode(column: "date", as: String.self)
        location = try row.decode(column: "location", as: String.self)
        capacity = try row.decode(column: "capacity", as: Int64.self)
        organizer = try row.decode(column: "organizer", as: String.self)
        status = try row.decode(column: "status", as: String.self)
        hasWaitlist = try row.decode(column: "has_waitlist", as: Int64.self) == 1
        confirmedCount = try row.decode(column: "confirmed", as: Int64.self)
        waitlistCount = try row.decode(column: "waitlisted", as: Int64.self)
        checkedInCount = try row.decode(column: "checked_in", as: Int64.self)
        createdAt = Timestamp(microseconds: try row.decode(column: "created_us", as: Int64.self)).rfc3339
    }
}

/// The fields of an event a create or update sets, already validated (nil: not sent).
struct EventChanges: Sendable {
    var title, description, date, location, organizer, status: String?
    var capacity: Int64?
    var hasWaitlist: Bool?

    /// Column and value pairs to write.
    var assignments: [(String, any Encodable & Sendable)] {
        var list: [(String, any Encodable & Sendable)] = []
        if let title { list.append(("title", title)) }
        if let description { list.append(("description", description)) }
        if let date { list.append(("date", date)) }
        if let location { list.append(("location", location)) }
        if let capacity { list.append(("capacity", capacity)) }
        if let organizer { list.append(("organizer", organizer)) }
        if let status { list.append(("status", status)) }
        if let hasWaitlist { list.append(("has_waitlist", Int64(hasWaitlist ? 1 : 0))) }
        return list
    }
}

/// The SQL of events and users. Registrations, and the waitlist, are in `RegistrationsRepository`.
struct EventsRepository: Sendable {
    let database: any Database
    let feed: ChangeFeed

    /// Creates an event; nil if its id is taken.
    func create(id: String, _ fields: EventChanges) async throws -> Event? {
        let values = [("event_id", id as any Encodable & Sendable), ("created_us", Timestamp.now().microseconds)] + fields.assignments
        return try await database.transaction(publishingTo: feed) { db, changes in
            let event = try await db.raw(
                """
                INSERT INTO events (\(unsafeRaw: values.map(\.0).joined(separator: ", "))) VALUES (\(binds: values.map(\.1)))
                ON CONFLICT (event_id) DO NOTHING RETURNING \(Event.columns)
                """
            ).first().map(Event.init)
            if let event { changes.publish(.eventCreated, event) }
            return event
        }
    }

    private static func events(status: String?, db: any SQLDatabase) async throws -> [Event] {
        let filter: SQLQueryString = status.map { "WHERE status = \(bind: $0)" } ?? ""
        return try await db.raw("SELECT \(Event.columns) FROM events \(filter) ORDER BY created_us, event_id").all().map(Event.init)
    }

    /// `events(status:)` as JSON, from memory while no event has changed. Every change to an event
    /// bumps its version under its lock, so the number of events, the sum of their versions and a
    /// sum of (version, creation) hashed modulo a prime all move with any change: for a different
    /// list to look the same, those sums would have to agree by chance (~1 in 2³¹ per change).
    /// The digest is read first: a list read after a change is only ever kept under an older one.
    func eventsJSON(status: String?) async throws -> ByteBuffer {
        try await database.read { db in
            let digest = try await db.raw(
                """
                SELECT COUNT(*) AS n, CAST(COALESCE(SUM(version), 0) AS BIGINT) AS v,
                    CAST(COALESCE(SUM((version * 1000003 + created_us) % 2147483647), 0) AS BIGINT) AS h
                FROM events
                """
            ).first()!
            let (key, version) = (["events", status ?? ""], try ["n", "v", "h"].map { try digest.decode(column: $0, as: Int64.self) })
            if let held = database.caches.answers[key], held.version == version { return held.bytes }
            let bytes = try jsonBytes(try await Self.events(status: status, db: db))
            database.caches.answers.store(HeldAnswer(version: version, bytes: bytes), for: key, weight: bytes.capacity)
            return bytes
        }
    }

    func event(_ id: String) async throws -> Event? {
        try await database.read { db in
            try await db.raw("SELECT \(Event.columns) FROM events WHERE event_id = \(bind: id)").first().map(Event.init)
        }
    }

    /// Applies the changes sent. Raising the capacity confirms waitlisted people, oldest first, in
    /// the same transaction; lowering it below the number confirmed is a 409.
    func update(_ id: String, _ fields: EventChanges) async throws -> Event {
        try await database.transaction(publishingTo: feed) { db, changes in
            guard let event = try await Self.lock(id, db: db)?.event else { throw APIError.notFound("Event not found") }
            if let capacity = fields.capacity, capacity < event.confirmedCount {
                throw APIError.conflict("capacity \(capacity) is below the \(event.confirmedCount) people already confirmed")
            }
            let assignments = fields.assignments
            if !assignments.isEmpty {
                let sets = assignments.map { column, value -> SQLQueryString in "\(unsafeRaw: column) = \(bind: value)" }
                try await db.raw("UPDATE events SET \(sets.joined(separator: ", ")) WHERE event_id = \(bind: id)").run()
            }
            let seats = (fields.capacity ?? event.capacity) - event.confirmedCount
            try await RegistrationsRepository.promote(event: id, seats: min(seats, event.waitlistCount), db: db, changes: changes)
            let updated = try await db.raw("SELECT \(Event.columns) FROM events WHERE event_id = \(bind: id)").first().map(Event.init)!
            changes.publish(.eventUpdated, updated)
            return updated
        }
    }

    /// Deletes an event and its registrations; false if there was no such event.
    func delete(_ id: String) async throws -> Bool {
        try await database.transaction(publishingTo: feed) { db, changes in
            guard try await Self.lock(id, db: db) != nil else { return false }
            try await db.raw("DELETE FROM registrations WHERE event_id = \(bind: id)").run()
            try await db.raw("DELETE FROM event_checkins WHERE event_id = \(bind: id)").run()
            try await db.raw("DELETE FROM place_links WHERE kind = 'event' AND link_id = \(bind: id)").run()
            try await db.raw("DELETE FROM events WHERE event_id = \(bind: id)").run()
            changes.publish(.eventDeleted, ["eventId": id])
            return true
        }
    }

    /// Locks an event's row for the rest of the transaction, bumping its version by `bump`, and
    /// reads it. Returns the event, its new version and its registration clock (the newest
    /// registration time, which never runs backwards within an event, even across instances whose
    /// clocks differ); nil if there is no such event.
    static func lock(_ id: String, bump: Int = 1, db: any SQLDatabase) async throws -> (event: Event, version: Int64, clock: Int64)? {
        try await db.raw(
            """
            UPDATE events SET version = version + \(bind: bump) WHERE event_id = \(bind: id) RETURNING \(Event.columns), version, last_registered_us
            """
        ).first().map { row in
            (try Event(row: row), try row.decode(column: "version", as: Int64.self), try row.decode(column: "last_registered_us", as: Int64.self))
        }
    }
}

extension EventsRepository {
    /// The events' gauges of `/metrics`.
    static func gauges(_ db: any SQLDatabase) async throws -> [Gauge] {
        var seats = Gauge("headcount_event_registrations", "Registrations of each event by status.")
        var capacity = Gauge("headcount_event_capacity", "Seats of each event.")
        for row in try await db.raw("SELECT event_id, capacity, confirmed, waitlisted FROM events").all() {
            let event = try row.decode(column: "event_id", as: String.self)
            seats.add(try row.decode(column: "confirmed", as: Int64.self), ("event", event), ("status", "confirmed"))
            seats.add(try row.decode(column: "waitlisted", as: Int64.self), ("event", event), ("status", "waitlisted"))
            capacity.add(try row.decode(column: "capacity", as: Int64.self), ("event", event))
        }
        return [seats, capacity]
    }
}
