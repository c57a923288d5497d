import SQLKit

struct Registration: Encodable, Sendable {
    let userId: String
    let eventId: String
    let status: String
    let registeredAt: String
    /// 1-based place in the waitlist; only for waitlisted registrations.
    let position: Int64?
    /// Only in a user's list of registrations.
    let eventTitle: String?
    /// Only in exports: whether the user is checked in now.
    var checkedIn: Bool?

    /// Selects registrations `r` (joined to their event `e`) with each waitlisted one's position.
    static let select: SQLQueryString = """
        SELECT r.user_id, r.event_id, r.status, r.registered_us, e.title,
            CASE WHEN r.status = 'waitlisted' THEN (
                SELECT COUNT(*) FROM registrations w WHERE w.event_id = r.event_id AND w.status = 'waitlisted'
                    AND (w.registered_us < r.registered_us OR (w.registered_us = r.registered_us AND w.seq <= r.seq))
            ) END AS position
        FROM registrations r JOIN events e ON e.event_id = r.event_id
        """

    init(row: any SQLRow, withTitle: Bool) throws {
        userId = try row.decode(column: "user_id", as: String.self)
        eventId = try row.decode(column: "event_id", as: String.self)
        status = try row.decode(column: "status", as: String.self)
        registeredAt = Timestamp(microseconds: try row.decode(column: "registered_us", as: Int64.self)).rfc3339
        position = try row.decode(column: "position", as: Int64?.self)
        eventTitle = withTitle ? try row.decode(column: "title", as: String.self) : nil
    }

    init(userId: String, eventId: String, status: String, registeredAt: Int64, position: Int64?) {
        self.userId = userId
        self.eventId = eventId
        self.status = status
        self.registeredAt = Timestamp(microseconds: registeredAt).rfc3339
        self.position = position
        eventTitle = nil
    }
}

/// What the change feed says when an event's registrations change: who, and the counts after.
struct RegistrationChange: Encodable, Sendable {
    let eventId: String
    var userId: String?
    var status: String?
    var position: Int64?
    /// Users confirmed from the waitlist by this change, oldest first.
    var promoted: [String]?
    let capacity: Int64
    let confirmedCount: Int64
    let waitlistCount: Int64
}

/// Registrations and the waitlist. Every change locks the event's row first, so the seat count it
/// reads stays true until it commits, on one instance or many; `confirmed <= capacity` in the
/// schema catches what a bug here would not.
struct RegistrationsRepository: Sendable {
    let database: any Database
    let feed: ChangeFeed
    private let registering: RowBatcher<String, Registration>

    init(database: any Database, feed: ChangeFeed) {
        self.database = database
        self.feed = feed
        registering = RowBatcher { id, users in try await Self.register(users, event: id, database: database, feed: feed) }
    }

    /// Registers a user: confirmed while seats are free, then waitlisted if the event has a
    /// waitlist, else 409. Checks, in order: unknown user, unknown event, already registered, full.
    /// Registrations to one event that arrive together are decided together, in arrival order.
    func register(user: String, event id: String) async throws -> Registration {
        try await registering.ask(user, key: id)
    }

    /// Registers `users` (requests in arrival order, at most 64: the batcher's default) with event `id`
    /// in one transaction of four statements whatever their number (three round trips on
    /// PostgreSQL): the event's lock, one read of which users exist and are registered already,
    /// then one insert, and one update of the counts, the version and the clock. Seats are given
    /// in order in between, in Swift, under the lock; a refused request changes nothing.
    private static func register(
        _ users: [String], event id: String, database: any Database, feed: ChangeFeed
    ) async throws -> [Result<Registration, any Error>] {
        try await database.transaction(publishingTo: feed) { db, changes in
            let locked = try await EventsRepository.lock(id, bump: 0, db: db)
            // Each known user, and whether already registered with this event: a lookup of the
            // registration per user, not a join the planner may run over the whole event. Through
            // the user's own registrations (few, whatever the event's size): `|| ''` keeps the
            // event's indexes out of it, which statistics taken while the event was empty made the
            // planner prefer, and then walk its whole waitlist for every user as the event filled.
            var registered: [String: Bool] = [:]
            for row in try await db.raw(
                """
                SELECT u.user_id, (SELECT r.status FROM registrations r WHERE r.user_id = u.user_id AND r.event_id || '' = \(bind: id)) AS status
                FROM users u WHERE u.user_id IN (\(binds: users))
                """
            ).all() {
                registered[try row.decode(column: "user_id", as: String.self)] = try row.decode(column: "status", as: String?.self) != nil
            }
            guard let (event, version, clock) = locked else {
                return users.map { .failure(APIError.notFound(registered[$0] == nil ? "User not found" : "Event not found")) }
            }
            let at = max(Timestamp.now().microseconds, clock)
            var (confirmedCount, waitlistCount) = (event.confirmedCount, event.waitlistCount)
            var seq = version
            var rows: [SQLQueryString] = []
            let answers = users.map { user -> Result<Registration, any Error> in
                guard let already = registered[user] else { return .failure(APIError.notFound("User not found")) }
                guard !already else { return .failure(APIError.conflict("User is already registered for this event")) }
                let confirmed = confirmedCount < event.capacity
                guard confirmed || event.hasWaitlist else { return .failure(APIError.conflict("Event is full")) }
                if confirmed { confirmedCount += 1 } else { waitlistCount += 1 }
                registered[user] = true
                seq += 1
                let status = confirmed ? "confirmed" : "waitlisted"
                rows.append("(\(bind: id), \(bind: user), \(bind: status), \(bind: at), \(bind: seq))")
                // The newest registration is last in the waitlist.
                let registration = Registration(userId: user, eventId: id, status: status, registeredAt: at, position: confirmed ? nil : waitlistCount)
                changes.publish(
                    .eventRegistration,
                    RegistrationChange(
                        eventId: id, userId: user, status: status, position: registration.position, capacity: event.capacity,
                        confirmedCount: confirmedCount, waitlistCount: waitlistCount))
                changes.send(OutboundEvent(.eventRegistrationCreated, registration, eventID: id))
                changes.send(OutboundEvent(confirmed ? .eventRegistrationConfirmed : .eventRegistrationWaitlisted, registration, eventID: id))
                return .success(registration)
            }
            guard !rows.isEmpty else { return answers }
            changes.write([
                "INSERT INTO registrations (event_id, user_id, status, registered_us, seq) VALUES \(rows.joined(separator: ", "))",
                """
                UPDATE events SET confirmed = confirmed + \(bind: confirmedCount - event.confirmedCount),
                    waitlisted = waitlisted + \(bind: waitlistCount - event.waitlistCount), version = \(bind: seq), last_registered_us = \(bind: at)
                WHERE event_id = \(bind: id)
                """,
            ])
            return answers
        }
    }

    /// Removes a registration; a freed seat goes to the oldest waitlisted, in the same transaction.
    /// False if there was no such registration.
    func unregister(user: String, event id: String) async throws -> Bool {
        try await database.transaction(publishingTo: feed, sharing: "event:\(id)") { db, changes in
            guard let event = try await EventsRepository.lock(id, db: db)?.event else { return false }
            guard
                let removed = try await db.raw(
                    """
                    DELETE FROM registrations WHERE event_id = \(bind: id) AND user_id = \(bind: user) RETURNING status
                    """
                ).first()?.decode(column: "status", as: String.self)
            else { return false }
            let counter: SQLQueryString = removed == "confirmed" ? "confirmed = confirmed - 1" : "waitlisted = waitlisted - 1"
            try await db.raw("UPDATE events SET \(counter), cancellations = cancellations + 1 WHERE event_id = \(bind: id)").run()
            let promoted = removed == "confirmed" ? try await Self.promote(event: id, seats: 1, db: db, changes: changes) : []
            let freed: Int64 = removed == "confirmed" ? 1 : 0
            changes.publish(
                .eventCancellation,
                RegistrationChange(
                    eventId: id, userId: user, status: "cancelled", promoted: promoted, capacity: event.capacity,
                    confirmedCount: event.confirmedCount - freed + Int64(promoted.count),
                    waitlistCount: event.waitlistCount - (1 - freed) - Int64(promoted.count)))
            changes.send(OutboundEvent(.eventRegistrationCancelled, ["eventId": id, "userId": user, "status": removed], eventID: id))
            return true
        }
    }

    /// Confirms up to `seats` waitlisted registrations, oldest first, and returns their users
    /// (each sent as promoted and confirmed). The caller holds the event's lock.
    @discardableResult
    static func promote(event id: String, seats: Int64, db: any SQLDatabase, changes: Changes) async throws -> [String] {
        guard seats > 0 else { return [] }
        let promoted = try await db.raw(
            """
            SELECT user_id FROM registrations WHERE event_id = \(bind: id) AND status = 'waitlisted'
            ORDER BY registered_us, seq LIMIT \(literal: Int(seats))
            """
        ).all().map { try $0.decode(column: "user_id", as: String.self) }
        guard !promoted.isEmpty else { return [] }
        try await db.raw(
            """
            UPDATE registrations SET status = 'confirmed', promoted_us = \(bind: Timestamp.now().microseconds)
            WHERE event_id = \(bind: id) AND user_id IN (\(binds: promoted))
            """
        ).run()
        try await db.raw(
            """
            UPDATE events SET confirmed = confirmed + \(bind: promoted.count), waitlisted = waitlisted - \(bind: promoted.count)
            WHERE event_id = \(bind: id)
            """
        ).run()
        for user in promoted {
            let change = ["eventId": id, "userId": user, "status": "confirmed"]
            changes.send(OutboundEvent(.eventRegistrationPromoted, change, eventID: id))
            changes.send(OutboundEvent(.eventRegistrationConfirmed, change, eventID: id))
        }
        return promoted
    }

    /// An event's registrations in registration order; nil for an unknown event.
    func registrations(event id: String, status: String?) async throws -> [Registration]? {
        try await database.read { db in
            guard try await db.raw("SELECT 1 AS known FROM events WHERE event_id = \(bind: id)").first() != nil else { return nil }
            let filter: SQLQueryString = status.map { " AND r.status = \(bind: $0)" } ?? ""
            return try await db.raw("\(Registration.select) WHERE r.event_id = \(bind: id)\(filter) ORDER BY r.registered_us, r.seq")
                .all().map { try Registration(row: $0, withTitle: false) }
        }
    }

    /// Where a page of an event's registrations ended, and how many waitlisted came before it.
    struct Cursor: Sendable {
        let registeredUs: Int64
        let seq: Int64
        let waiting: Int64
    }

    /// Up to `limit` of an event's registrations in registration order, after `cursor`, each
    /// waitlisted one numbered on from the cursor; for exports that must not hold a whole event.
    func page(event id: String, after cursor: Cursor?, limit: Int) async throws -> (registrations: [Registration], cursor: Cursor?) {
        try await database.read { db in
            let after: SQLQueryString =
                cursor.map {
                    " AND (registered_us > \(bind: $0.registeredUs) OR (registered_us = \(bind: $0.registeredUs) AND seq > \(bind: $0.seq)))"
                } ?? ""
            var waiting = cursor?.waiting ?? 0
            var last: Cursor?
            let page = try await db.raw(
                """
                SELECT r.user_id, r.status, r.registered_us, r.seq, (
                    SELECT c.type FROM event_checkins c WHERE c.event_id = r.event_id AND c.user_id = r.user_id ORDER BY c.id DESC LIMIT 1
                ) AS last_scan
                FROM registrations r WHERE r.event_id = \(bind: id)\(after)
                ORDER BY r.registered_us, r.seq LIMIT \(literal: limit)
                """
            ).all().map { row in
                let status = try row.decode(column: "status", as: String.self), at = try row.decode(column: "registered_us", as: Int64.self)
                if status == "waitlisted" { waiting += 1 }
                last = Cursor(registeredUs: at, seq: try row.decode(column: "seq", as: Int64.self), waiting: waiting)
                var registration = Registration(
                    userId: try row.decode(column: "user_id", as: String.self), eventId: id, status: status,
                    registeredAt: at, position: status == "waitlisted" ? waiting : nil)
                registration.checkedIn = try row.decode(column: "last_scan", as: String?.self) == "entry"
                return registration
            }
            return (page, last)
        }
    }

    /// A user's registrations, oldest first, with each event's title.
    func registrations(user: String) async throws -> [Registration] {
        try await database.read { db in
            try await db.raw("\(Registration.select) WHERE r.user_id = \(bind: user) ORDER BY r.registered_us, r.event_id")
                .all().map { try Registration(row: $0, withTitle: true) }
        }
    }
}
