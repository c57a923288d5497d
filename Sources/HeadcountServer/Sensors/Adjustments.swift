import Foundation
import SQLKit

/// Counting sensors drift. An adjustment says what a sensor's count was at an instant (zero, for a
/// daily reset); it is stored beside the raw events, never altering them, and from its instant on
/// the count is the adjustment's plus what the raw events add after it.
struct SensorAdjustment: Encodable, Sendable {
    static let columns: SQLQueryString = "sensor, at_us, inside, kind, reason, made_by, created_us"

    let sensor: String
    let at: Timestamp
    let inside: Int64
    /// `manual` or `reset`.
    let kind: String
    let reason: String?
    let madeBy: String
    let createdAt: Timestamp

    enum CodingKeys: String, CodingKey {
        case sensor, at, inside, kind, reason
        case madeBy = "made_by"
        case createdAt = "created_at"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sensor, forKey: .sensor)
        try container.encode(at.rfc3339, forKey: .at)
        try container.encode(inside, forKey: .inside)
        try container.encode(kind, forKey: .kind)
        try container.encode(reason, forKey: .reason)
        try container.encode(madeBy, forKey: .madeBy)
        try container.encode(createdAt.rfc3339, forKey: .createdAt)
    }

    init(row: any SQLRow) throws {
        sensor = try row.decode(column: "sensor", as: String.self)
        at = Timestamp(microseconds: try row.decode(column: "at_us", as: Int64.self))
        inside = try row.decode(column: "inside", as: Int64.self)
        kind = try row.decode(column: "kind", as: String.self)
        reason = try row.decode(column: "reason", as: String?.self)
        madeBy = try row.decode(column: "made_by", as: String.self)
        createdAt = Timestamp(microseconds: try row.decode(column: "created_us", as: Int64.self))
    }
}

extension SensorsRepository {
    /// Stores an adjustment (replacing one at the same instant) under the sensor's lock; nil for an
    /// unknown sensor. A reset already made at its instant is left alone (false).
    static func adjust(
        sensor: String, to inside: Int64, at: Timestamp, kind: String, reason: String?, by: String, db: any SQLDatabase, changes: Changes
    ) async throws -> Bool? {
        guard
            let row = try await db.raw("UPDATE sensors SET events = events WHERE sensor = \(bind: sensor) RETURNING inside, adjusted_us").first()
        else { return nil }
        let conflict: SQLQueryString =
            kind == "reset"
            ? "DO NOTHING" : "DO UPDATE SET inside = excluded.inside, kind = excluded.kind, reason = excluded.reason, made_by = excluded.made_by"
        let stored =
            try await db.raw(
                """
                INSERT INTO sensor_adjustments (\(SensorAdjustment.columns))
                VALUES (\(bind: sensor), \(bind: at.microseconds), \(bind: inside), \(bind: kind), \(bind: reason), \(bind: by), \(bind: Timestamp.now().microseconds))
                ON CONFLICT (sensor, at_us) \(conflict) RETURNING sensor
                """
            ).first() != nil
        guard stored else { return false }
        // The count from `at` on is another: what instances hold of the sensor's past is stale.
        try await db.raw("UPDATE sensors SET revisions = revisions + 1 WHERE sensor = \(bind: sensor)").run()
        // The sensor's row keeps the latest adjustment, as an offset from the raw count at it.
        if try row.decode(column: "adjusted_us", as: Int64?.self).map({ at.microseconds >= $0 }) ?? true {
            let offset = inside - (try await rawInside(sensor: sensor, at: at, db: db))
            try await db.raw("UPDATE sensors SET adjustment = \(bind: offset), adjusted_us = \(bind: at.microseconds) WHERE sensor = \(bind: sensor)").run()
            let now = try await db.raw("SELECT inside + adjustment AS inside FROM sensors WHERE sensor = \(bind: sensor)").first()!.decode(column: "inside", as: Int64.self)
            let change: [String: JSONValue] = ["sensor": .string(sensor), "inside": .int(now)]
            changes.publish(.sensorOccupancy, change)
            changes.send(OutboundEvent(.sensorOccupancyChanged, change, sensor: sensor, count: now))
        }
        return true
    }

    /// The adjustments with `from <= at < to`, in time order.
    func adjustments(sensor: String, from: Int64, to: Int64) async throws -> [SensorAdjustment] {
        try await database.read { db in
            try await db.raw(
                """
                SELECT \(SensorAdjustment.columns) FROM sensor_adjustments
                WHERE sensor = \(bind: sensor) AND at_us >= \(bind: from) AND at_us < \(bind: to) ORDER BY at_us LIMIT 100000
                """
            ).all().map(SensorAdjustment.init)
        }
    }

    /// The offset (adjusted count minus raw count) in force at `instant`: the latest adjustment at
    /// or before it, less the raw count at its own instant; 0 before the first.
    static func offset(sensor: String, at instant: Int64, db: any SQLDatabase) async throws -> Int64 {
        guard
            let row = try await db.raw(
                "SELECT at_us, inside FROM sensor_adjustments WHERE sensor = \(bind: sensor) AND at_us <= \(bind: instant) ORDER BY at_us DESC LIMIT 1"
            ).first()
        else { return 0 }
        let at = try row.decode(column: "at_us", as: Int64.self)
        return try row.decode(column: "inside", as: Int64.self) - (try await rawInside(sensor: sensor, at: Timestamp(microseconds: at), db: db))
    }

    /// For a series: the offset in force just before `start`, and each later adjustment's instant
    /// with the offset from then on.
    static func offsets(sensor: String, from start: Int64, to end: Int64, db: any SQLDatabase) async throws -> (opening: Int64, changes: [(at: Int64, offset: Int64)]) {
        let opening = try await offset(sensor: sensor, at: start - 1, db: db)
        var changes: [(at: Int64, offset: Int64)] = []
        for row in try await db.raw(
            "SELECT at_us, inside FROM sensor_adjustments WHERE sensor = \(bind: sensor) AND at_us >= \(bind: start) AND at_us < \(bind: end) ORDER BY at_us LIMIT 100000"
        ).all() {
            let at = try row.decode(column: "at_us", as: Int64.self)
            let offset = try row.decode(column: "inside", as: Int64.self) - (try await rawInside(sensor: sensor, at: Timestamp(microseconds: at), db: db))
            changes.append((at, offset))
        }
        return (opening, changes)
    }
}

/// Rollups adjusted: each row shifted by the offset in force at its start, and a row added where
/// an adjustment starts without events of its own, so the level moves there. Minute precision: an
/// adjustment inside a minute counts from that minute's start (callers give minute rows around them).
func adjusted(opening: Int64, rows: [Rollup], openingOffset: Int64, changes: [(at: Int64, offset: Int64)]) -> (opening: Int64, rows: [Rollup]) {
    guard openingOffset != 0 || !changes.isEmpty else { return (opening, rows) }
    let changes = changes.map { (start: RollupLevel.minute.start(of: $0.at), offset: $0.offset) }
    var result: [Rollup] = []
    var (raw, offset, next) = (opening, openingOffset, 0)
    func moveTo(_ start: Int64?) {
        while next < changes.count, start.map({ changes[next].start <= $0 }) ?? true {
            offset = changes[next].offset
            if changes[next].start != start {
                if result.last?.start == changes[next].start { result.removeLast() }
                result.append(Rollup(start: changes[next].start, balanceBefore: raw + offset))
            }
            next += 1
        }
    }
    for row in rows {
        moveTo(row.start)
        var shifted = row
        shifted.balanceBefore += offset
        result.append(shifted)
        raw = row.balanceAfter
    }
    moveTo(nil)
    return (opening + openingOffset, result)
}
