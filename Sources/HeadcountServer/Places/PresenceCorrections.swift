import SQLKit

/// An admin's correction of a presence that the stale policy closes (people forget to sign out):
/// when the person really left, or (`left` nil) that they were inside all along.
struct PresenceCorrection: Encodable, Sendable {
    static let columns: SQLQueryString = "source, source_id, since_us, left_us, corrected_by, corrected_us"

    let source: String
    let sourceID: String
    let since: Timestamp
    let left: Timestamp?
    let correctedBy: String
    let correctedAt: Timestamp

    enum CodingKeys: String, CodingKey {
        case source, since
        case sourceID = "source_id"
        case left = "left_at"
        case correctedBy = "corrected_by"
        case correctedAt = "corrected_at"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(source, forKey: .source)
        try container.encode(sourceID, forKey: .sourceID)
        try container.encode(since.rfc3339, forKey: .since)
        try container.encode(left?.rfc3339, forKey: .left)
        try container.encode(correctedBy, forKey: .correctedBy)
        try container.encode(correctedAt.rfc3339, forKey: .correctedAt)
    }

    init(source: String, sourceID: String, since: Timestamp, left: Timestamp?, correctedBy: String, correctedAt: Timestamp) {
        self.source = source
        self.sourceID = sourceID
        self.since = since
        self.left = left
        self.correctedBy = correctedBy
        self.correctedAt = correctedAt
    }

    init(row: any SQLRow) throws {
        source = try row.decode(column: "source", as: String.self)
        sourceID = try row.decode(column: "source_id", as: String.self)
        since = Timestamp(microseconds: try row.decode(column: "since_us", as: Int64.self))
        left = try row.decode(column: "left_us", as: Int64?.self).map(Timestamp.init(microseconds:))
        correctedBy = try row.decode(column: "corrected_by", as: String.self)
        correctedAt = Timestamp(microseconds: try row.decode(column: "corrected_us", as: Int64.self))
    }
}

extension PlacesRepository {
    /// Records (or replaces) a correction. The presence must exist: a registration of `room/name`
    /// at `since`, or a worker's `tenant/employee` entry record at `since` (404 otherwise).
    func correct(_ correction: PresenceCorrection) async throws -> PresenceCorrection {
        let (owner, person) = correction.sourceID.split(separator: "/", maxSplits: 1).map(String.init).pair
        try await database.transaction { db in
            let found: SQLQueryString =
                correction.source == "room"
                ? """
                SELECT 1 AS known FROM room_actions
                WHERE room = \(bind: owner) AND name = \(bind: person) AND action = 'register' AND at_us = \(bind: correction.since.microseconds)
                """
                : """
                SELECT 1 AS known FROM attendance_records
                WHERE tenant_id = \(bind: owner) AND employee_id = \(bind: person) AND type = 'ENTRY' AND deleted_us IS NULL
                AND timestamp_ms = \(bind: correction.since.microseconds / 1000)
                """
            guard try await db.raw(found).first() != nil else {
                throw APIError.notFound("No \(correction.source) presence \(correction.sourceID) since \(correction.since.rfc3339).")
            }
            try await db.raw(
                """
                INSERT INTO presence_corrections (\(PresenceCorrection.columns))
                VALUES (\(bind: correction.source), \(bind: correction.sourceID), \(bind: correction.since.microseconds), \(bind: correction.left?.microseconds),
                        \(bind: correction.correctedBy), \(bind: correction.correctedAt.microseconds))
                ON CONFLICT (source, source_id, since_us) DO UPDATE SET
                    left_us = excluded.left_us, corrected_by = excluded.corrected_by, corrected_us = excluded.corrected_us
                """
            ).run()
        }
        return correction
    }

    /// The latest corrections, newest first.
    func corrections() async throws -> [PresenceCorrection] {
        try await database.read { db in
            try await db.raw("SELECT \(PresenceCorrection.columns) FROM presence_corrections ORDER BY corrected_us DESC LIMIT 1000").all().map(PresenceCorrection.init)
        }
    }

    /// The corrections of these presences of one source, by `source_id` and `since`: one statement
    /// whatever their number (a building's ten thousand workers took twenty of 500 parameters,
    /// whose parsing and planning were most of the database's time for a presence).
    static func corrections(_ source: String, of people: [NamedPerson], db: any SQLDatabase) async throws -> [String: Timestamp?] {
        guard !people.isEmpty else { return [:] }
        var keys = BulkRows(["source_id": .text, "since_us": .integer])
        for person in people { keys.append(.text(person.sourceID), .integer(person.since.microseconds)) }
        var found: [String: Timestamp?] = [:]
        for row in try await db.raw(
            """
            SELECT c.source_id, c.since_us, c.left_us FROM \(keys.table("k", in: db))
            JOIN presence_corrections c ON c.source = \(bind: source) AND c.source_id = k.source_id AND c.since_us = k.since_us
            """
        ).all() {
            let since = Timestamp(microseconds: try row.decode(column: "since_us", as: Int64.self))
            found[key(try row.decode(column: "source_id", as: String.self), since)] = .some(
                try row.decode(column: "left_us", as: Int64?.self).map(Timestamp.init(microseconds:)))
        }
        return found
    }

    static func key(_ sourceID: String, _ since: Timestamp) -> String { "\(sourceID) \(since.microseconds)" }
}

extension Array where Element == String {
    /// The first two elements, "" for each missing.
    fileprivate var pair: (String, String) { (first ?? "", count > 1 ? self[1] : "") }
}

extension PlacesRepository {
    /// When the stale policy closes each of these attendance records (by server id): entries at a
    /// device in a place, not followed by another record of the worker within the place's limit,
    /// and not corrected by an admin. For exports, a page of records at a time.
    func closedByPolicy(records ids: [Int64]) async throws -> [Int64: Timestamp] {
        guard !ids.isEmpty else { return [:] }
        let now = Timestamp.now().microseconds / 1000
        return try await database.read { db in
            var closed: [Int64: Timestamp] = [:]
            for chunk in ids.chunks(of: 500) {
                let rows = try await db.raw(
                    """
                    SELECT r.server_id, r.timestamp_ms, p.stale_after_minutes, c.since_us AS corrected, (
                        SELECT MIN(n.timestamp_ms) FROM attendance_records n
                        WHERE n.tenant_id = r.tenant_id AND n.employee_id = r.employee_id AND n.deleted_us IS NULL
                        AND (n.timestamp_ms > r.timestamp_ms OR (n.timestamp_ms = r.timestamp_ms AND n.server_id > r.server_id))
                    ) AS next_ms
                    FROM attendance_records r
                    JOIN place_links l ON l.kind = 'attendance_device' AND l.link_id = r.device_id
                    JOIN places p ON p.place_id = l.place_id
                    LEFT JOIN presence_corrections c ON c.source = 'attendance' AND c.source_id = r.tenant_id || '/' || r.employee_id AND c.since_us = r.timestamp_ms * 1000
                    WHERE r.server_id IN (\(binds: Array(chunk))) AND r.type = 'ENTRY'
                    """
                ).all()
                for row in rows where try row.decode(column: "corrected", as: Int64?.self) == nil {
                    let closes = try row.decode(column: "timestamp_ms", as: Int64.self) + 60_000 * (try row.decode(column: "stale_after_minutes", as: Int64.self))
                    if (try row.decode(column: "next_ms", as: Int64?.self) ?? now) > closes {
                        closed[try row.decode(column: "server_id", as: Int64.self)] = Timestamp(microseconds: closes * 1000)
                    }
                }
            }
            return closed
        }
    }
}
