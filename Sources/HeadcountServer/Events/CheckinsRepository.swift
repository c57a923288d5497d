import SQLKit

/// A scan at an event's door: a registered person coming in (`entry`) or going out (`exit`).
struct CheckIn: Encodable, Sendable {
    static let columns: SQLQueryString = "id, event_id, user_id, type, at_us, nonce, created_us"

    let id: Int64
    let eventId: String
    let userId: String
    let type: String
    /// When the scan was made (a device offline sends it later).
    let datetime: String
    let nonce: String
    let createdAt: String

    init(row: any SQLRow) throws {
        id = try row.decode(column: "id", as: Int64.self)
        eventId = try row.decode(column: "event_id", as: String.self)
        userId = try row.decode(column: "user_id", as: String.self)
        type = try row.decode(column: "type", as: String.self)
        datetime = Timestamp(microseconds: try row.decode(column: "at_us", as: Int64.self)).rfc3339
        nonce = try row.decode(column: "nonce", as: String.self)
        createdAt = Timestamp(microseconds: try row.decode(column: "created_us", as: Int64.self)).rfc3339
    }
}

/// The SQL of check-ins. Each takes the event's lock, as registrations do, so the rules below
/// hold under any concurrency; a `nonce` makes a scan idempotent (pretix's rule: a replay gets the
/// first answer).
struct CheckinsRepository: Sendable {
    let database: any Database
    let feed: ChangeFeed

    static let openStatuses: Set<String> = ["active", "scheduled", "ongoing"]

    /// Records a scan; `created` is false when `nonce` was already used for the same scan. Refusals
    /// carry a `reason`: `not_registered` and `waitlisted` (422), `already_checked_in`,
    /// `not_checked_in` and `event_not_open` (409), `nonce_reused` for another scan's nonce (422).
    func checkIn(event: String, user: String, type: String, at: Timestamp, nonce: String) async throws -> (checkIn: CheckIn, created: Bool) {
        let now = Timestamp.now().microseconds
        return try await database.transaction(publishingTo: feed) { db, changes -> (checkIn: CheckIn, created: Bool) in
            guard let event = try await EventsRepository.lock(event, db: db)?.event else { throw APIError.notFound("Event not found") }
            if let first = try await db.raw("SELECT \(CheckIn.columns) FROM event_checkins WHERE event_id = \(bind: event.eventId) AND nonce = \(bind: nonce)")
                .first().map(CheckIn.init)
            {
                guard first.userId == user, first.type == type else {
                    throw APIError(.unprocessableContent, "nonce \(nonce) was used for another scan of this event", reason: "nonce_reused")
                }
                return (first, false)
            }
            guard Self.openStatuses.contains(event.status) else {
                throw APIError(.conflict, "the event is \(event.status); check-in is closed", reason: "event_not_open")
            }
            let registration = try await db.raw("SELECT status FROM registrations WHERE event_id = \(bind: event.eventId) AND user_id = \(bind: user)").first()
            switch try registration?.decode(column: "status", as: String.self) {
            case nil: throw APIError(.unprocessableContent, "user \(user) is not registered for this event", reason: "not_registered")
            case "waitlisted": throw APIError(.unprocessableContent, "user \(user) is on the waitlist, not confirmed", reason: "waitlisted")
            default: break
            }
            let last = try await db.raw(
                "SELECT type FROM event_checkins WHERE event_id = \(bind: event.eventId) AND user_id = \(bind: user) ORDER BY id DESC LIMIT 1"
            ).first()
            let inside = try last?.decode(column: "type", as: String.self) == "entry"
            if type == "entry", inside { throw APIError(.conflict, "user \(user) is already checked in", reason: "already_checked_in") }
            if type == "exit", !inside { throw APIError(.conflict, "user \(user) is not checked in", reason: "not_checked_in") }
            let checkIn = try await db.raw(
                """
                INSERT INTO event_checkins (event_id, user_id, type, at_us, nonce, created_us)
                VALUES (\(bind: event.eventId), \(bind: user), \(bind: type), \(bind: at.microseconds), \(bind: nonce), \(bind: now))
                RETURNING \(CheckIn.columns)
                """
            ).first().map(CheckIn.init)!
            let delta: Int64 = type == "entry" ? 1 : -1
            try await db.raw("UPDATE events SET checked_in = checked_in + \(bind: delta) WHERE event_id = \(bind: event.eventId)").run()
            changes.publish(.eventCheckIn, CheckInChange(checkIn: checkIn, checkedInCount: event.checkedInCount + delta))
            changes.send(OutboundEvent(.eventCheckedIn, checkIn, eventID: event.eventId))
            return (checkIn, true)
        }
    }

    /// An event's scans in the order they were recorded; nil for an unknown event.
    func checkIns(event: String) async throws -> [CheckIn]? {
        try await database.read { db in
            guard try await db.raw("SELECT 1 AS known FROM events WHERE event_id = \(bind: event)").first() != nil else { return nil }
            return try await db.raw("SELECT \(CheckIn.columns) FROM event_checkins WHERE event_id = \(bind: event) ORDER BY id").all().map(CheckIn.init)
        }
    }
}

/// What the change feed says of a scan: the scan, and how many are inside after it.
struct CheckInChange: Encodable, Sendable {
    let checkIn: CheckIn
    let checkedInCount: Int64
}
