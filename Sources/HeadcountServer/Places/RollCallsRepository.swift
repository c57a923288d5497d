import Foundation
import SQLKit

/// One person on a roll call, numbered by `key` within it, and how they were last marked.
struct RollCallPerson: Encodable, Sendable {
    static let columns: SQLQueryString = "person_key, name, source, source_id, place_id, since_us, status, marked_by, marked_us"

    let key: String
    let name: String
    let source: String
    let sourceID: String
    let placeID: String
    let since: String
    /// `unmarked`, `safe` or `missing`.
    let status: String
    @Nullable var markedBy: String?
    @Nullable var markedAt: String?

    enum CodingKeys: String, CodingKey {
        case key, name, source, since, status
        case sourceID = "source_id"
        case placeID = "place_id"
        case markedBy = "marked_by"
        case markedAt = "marked_at"
    }

    init(row: any SQLRow) throws {
        key = try row.decode(column: "person_key", as: String.self)
        name = try row.decode(column: "name", as: String.self)
        source = try row.decode(column: "source", as: String.self)
        sourceID = try row.decode(column: "source_id", as: String.self)
        placeID = try row.decode(column: "place_id", as: String.self)
        since = Timestamp(microseconds: try row.decode(column: "since_us", as: Int64.self)).rfc3339
        status = try row.decode(column: "status", as: String.self)
        markedBy = try row.decode(column: "marked_by", as: String?.self)
        markedAt = try row.decode(column: "marked_us", as: Int64?.self).map { Timestamp(microseconds: $0).rfc3339 }
    }
}

/// A roll call: everyone named in a place at an instant, and the counted figure beside them.
struct RollCall: Encodable, Sendable {
    static let columns: SQLQueryString = "roll_call_id, place_id, place_name, at_us, counted, created_us, closed_us"

    let id: String
    let placeID: String
    let placeName: String
    let at: String
    let counted: Int64
    let createdAt: String
    let closedAt: String?
    /// Absent in lists.
    var people: [RollCallPerson]?

    struct Summary: Encodable {
        let total, safe, missing, unmarked: Int
    }

    var summary: Summary? {
        people.map { people in
            let safe = people.count { $0.status == "safe" }, missing = people.count { $0.status == "missing" }
            return Summary(total: people.count, safe: safe, missing: missing, unmarked: people.count - safe - missing)
        }
    }

    enum CodingKeys: String, CodingKey {
        case id, at, counted, people, summary
        case placeID = "place_id"
        case placeName = "place_name"
        case createdAt = "created_at"
        case closedAt = "closed_at"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(placeID, forKey: .placeID)
        try container.encode(placeName, forKey: .placeName)
        try container.encode(at, forKey: .at)
        try container.encode(counted, forKey: .counted)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(closedAt, forKey: .closedAt)
        if let people {
            try container.encode(people, forKey: .people)
            try container.encode(summary, forKey: .summary)
        }
    }

    init(row: any SQLRow) throws {
        id = try row.decode(column: "roll_call_id", as: String.self)
        placeID = try row.decode(column: "place_id", as: String.self)
        placeName = try row.decode(column: "place_name", as: String.self)
        at = Timestamp(microseconds: try row.decode(column: "at_us", as: Int64.self)).rfc3339
        counted = try row.decode(column: "counted", as: Int64.self)
        createdAt = Timestamp(microseconds: try row.decode(column: "created_us", as: Int64.self)).rfc3339
        closedAt = try row.decode(column: "closed_us", as: Int64?.self).map { Timestamp(microseconds: $0).rfc3339 }
    }
}

/// The SQL of roll calls. A mark is one conditional update: the later mark (by when it was made,
/// which a phone offline for a while sends with it) wins, whichever arrives last.
struct RollCallsRepository: Sendable {
    let database: any Database
    let feed: ChangeFeed
    let places: PlacesRepository

    static let notFound = APIError.notFound("Roll call not found.")

    /// Snapshots everyone named in the place now; nil for an unknown place.
    func create(place id: String) async throws -> RollCall? {
        guard let place = try await places.place(id), let presence = try await places.presence(of: id, at: nil) else { return nil }
        let rollCallID = UUID().uuidString.lowercased()
        let now = Timestamp.now().microseconds
        return try await database.transaction(publishingTo: feed) { db, changes -> RollCall in
            try await db.raw(
                """
                INSERT INTO roll_calls (roll_call_id, place_id, place_name, at_us, counted, created_us)
                VALUES (\(bind: rollCallID), \(bind: id), \(bind: place.name), \(bind: presence.at.microseconds), \(bind: presence.counted), \(bind: now))
                """
            ).run()
            for chunk in Array(presence.named.enumerated()).chunks(of: 100) {
                let rows = chunk.map { index, person -> SQLQueryString in
                    "(\(bind: rollCallID), \(bind: String(index + 1)), \(bind: person.name), \(bind: person.source), \(bind: person.sourceID), \(bind: person.placeID), \(bind: person.since.microseconds), 'unmarked')"
                }
                try await db.raw(
                    """
                    INSERT INTO roll_call_people (roll_call_id, person_key, name, source, source_id, place_id, since_us, status)
                    VALUES \(rows.joined(separator: ", "))
                    """
                ).run()
            }
            let rollCall = try await Self.rollCall(rollCallID, db: db)!
            // Without its people: a roll call of thousands would be one huge change; subscribers read it.
            var listed = rollCall
            listed.people = nil
            changes.publish(.rollCallCreated, listed)
            changes.send(OutboundEvent(.rollCallCreated, listed, placeID: id))
            return rollCall
        }
    }

    func rollCall(_ id: String) async throws -> RollCall? {
        try await database.read { db in try await Self.rollCall(id, db: db) }
    }

    /// Roll calls, newest first, without their people; only open ones when `open`.
    func rollCalls(open: Bool) async throws -> [RollCall] {
        try await database.read { db in
            let filter: SQLQueryString = open ? "WHERE closed_us IS NULL" : ""
            return try await db.raw("SELECT \(RollCall.columns) FROM roll_calls \(filter) ORDER BY created_us DESC, roll_call_id LIMIT 1000").all().map(RollCall.init)
        }
    }

    /// Marks a person `safe` or `missing`, as made by `by` at `at`. A mark older than the person's
    /// current one changes nothing (the answer shows the mark that stands); a closed roll call
    /// refuses marks (409).
    func mark(_ id: String, person key: String, status: String, by: String, at: Timestamp) async throws -> RollCallPerson {
        try await database.transaction(publishingTo: feed) { db, changes -> RollCallPerson in
            guard let row = try await db.raw("SELECT closed_us, place_id FROM roll_calls WHERE roll_call_id = \(bind: id)").first() else { throw Self.notFound }
            guard try row.decode(column: "closed_us", as: Int64?.self) == nil else {
                throw APIError(.conflict, "the roll call is closed", reason: "roll_call_closed")
            }
            let changed =
                try await db.raw(
                    """
                    UPDATE roll_call_people SET status = \(bind: status), marked_by = \(bind: by), marked_us = \(bind: at.microseconds)
                    WHERE roll_call_id = \(bind: id) AND person_key = \(bind: key) AND (marked_us IS NULL OR marked_us <= \(bind: at.microseconds))
                    RETURNING person_key
                    """
                ).first() != nil
            guard
                let person = try await db.raw("SELECT \(RollCallPerson.columns) FROM roll_call_people WHERE roll_call_id = \(bind: id) AND person_key = \(bind: key)")
                    .first().map(RollCallPerson.init)
            else { throw APIError.notFound("No person \(key) on this roll call.") }
            if changed {
                changes.publish(.rollCallMarked, MarkChange(rollCallID: id, person: person))
                changes.send(OutboundEvent(.rollCallMarked, MarkChange(rollCallID: id, person: person), placeID: try row.decode(column: "place_id", as: String.self)))
            }
            return person
        }
    }

    /// Closes a roll call (again: no change); nil if there is none.
    func close(_ id: String) async throws -> RollCall? {
        let now = Timestamp.now().microseconds
        return try await database.transaction(publishingTo: feed) { db, changes -> RollCall? in
            let closed =
                try await db.raw("UPDATE roll_calls SET closed_us = \(bind: now) WHERE roll_call_id = \(bind: id) AND closed_us IS NULL RETURNING roll_call_id")
                .first() != nil
            let rollCall = try await Self.rollCall(id, db: db)
            if closed, let rollCall {
                let change = ["roll_call_id": rollCall.id, "closed_at": rollCall.closedAt]
                changes.publish(.rollCallClosed, change)
                changes.send(OutboundEvent(.rollCallClosed, change, placeID: rollCall.placeID))
            }
            return rollCall
        }
    }

    private static func rollCall(_ id: String, db: any SQLDatabase) async throws -> RollCall? {
        guard var rollCall = try await db.raw("SELECT \(RollCall.columns) FROM roll_calls WHERE roll_call_id = \(bind: id)").first().map(RollCall.init) else {
            return nil
        }
        rollCall.people = try await db.raw(
            "SELECT \(RollCallPerson.columns) FROM roll_call_people WHERE roll_call_id = \(bind: id) ORDER BY name, CAST(person_key AS BIGINT)"
        ).all().map(RollCallPerson.init)
        return rollCall
    }

    struct MarkChange: Encodable {
        let rollCallID: String
        let person: RollCallPerson

        enum CodingKeys: String, CodingKey {
            case person
            case rollCallID = "roll_call_id"
        }
    }
}
