import SQLKit

struct RollupKey: Hashable, Sendable {
    let sensor: String
    let level: RollupLevel
}

/// A sensor's hour or day rows that are final: every row before the one holding its latest event.
/// Events in time order only touch that row and later ones; a late event rewrites earlier rows and
/// bumps the sensor's `repairs`, which is what the history was read under.
struct RollupHistory: Sendable {
    let repairs: Int64
    /// The rows held span [from, final), and `opening` is the occupancy just before `from`.
    var from: Int64
    var final: Int64
    var opening: Int64
    var rows: [Rollup]
}

extension SensorsRepository {
    /// The same as `rollups(sensor:level:from:to:db:)`, with the final rows of hours and days read
    /// from this instance's memory: a year's report reads its 8,760 hours once, then only the
    /// rows after the last it holds (and reads them all again after a late event).
    func cachedRollups(sensor: String, level: RollupLevel, from start: Int64, to end: Int64, db: any SQLDatabase) async throws -> (opening: Int64, rows: [Rollup]) {
        // The version first: rows read after it are at least as new as it says.
        guard level != .minute,
            let state = try await db.raw("SELECT last_ts_us, repairs FROM sensors WHERE sensor = \(bind: sensor)").first()
        else { return try await Self.rollups(sensor: sensor, level: level, from: start, to: end, db: db) }
        let (repairs, final) = (try state.decode(column: "repairs", as: Int64.self), level.start(of: try state.decode(column: "last_ts_us", as: Int64.self)))
        guard start < final else { return try await Self.rollups(sensor: sensor, level: level, from: start, to: end, db: db) }

        let key = RollupKey(sensor: sensor, level: level)
        let held = database.caches.rollups[key].flatMap { $0.repairs == repairs ? $0 : nil }
        var history = held ?? RollupHistory(repairs: repairs, from: final, final: final, opening: 0, rows: [])
        if start < history.from {
            let (opening, rows) = try await Self.rollups(sensor: sensor, level: level, from: start, to: history.from, db: db)
            (history.from, history.opening, history.rows) = (start, opening, rows + history.rows)
        }
        if history.final < final {
            history.rows += try await Self.rollups(sensor: sensor, level: level, from: history.final, to: final, db: db).rows
            history.final = final
        }
        if held?.from != history.from || held?.final != history.final {
            database.caches.rollups.store(history, for: key, weight: history.rows.count)
        }

        // Rows another instance's newer read put past `final` are read below, with the recent ones.
        let rows = history.rows
        let lower = rows.partitioningIndex { $0.start >= start }
        let upper = rows.partitioningIndex { $0.start >= min(end, final) }
        let opening = lower > 0 ? rows[lower - 1].balanceAfter : history.opening
        let recent = end > final ? try await Self.rollups(sensor: sensor, level: level, from: final, to: end, db: db).rows : []
        return (opening, Array(rows[lower..<upper]) + recent)
    }
}

extension SensorsRepository {
    /// A version of everything a report of `sensor` until `end` reads, or nil while that can
    /// change without a late event or an adjustment: `end` after the sensor's latest event, or
    /// after now.
    func settledVersion(sensor: String, until end: Int64) async throws -> String? {
        guard end <= Timestamp.now().microseconds else { return nil }
        return try await database.read { db -> String? in
            guard
                let row = try await db.raw(
                    """
                    SELECT last_ts_us, repairs, (SELECT COUNT(*) FROM sensor_adjustments a WHERE a.sensor = s.sensor) AS adjustments
                    FROM sensors s WHERE s.sensor = \(bind: sensor)
                    """
                ).first(), end <= (try row.decode(column: "last_ts_us", as: Int64.self))
            else { return nil }
            return "\(try row.decode(column: "repairs", as: Int64.self)) \(try row.decode(column: "adjustments", as: Int64.self))"
        }
    }
}

extension Array {
    /// The first index whose element satisfies `belongs`, which holds of a suffix of the array.
    func partitioningIndex(where belongs: (Element) -> Bool) -> Int {
        var (low, high) = (0, count)
        while low < high {
            let middle = (low + high) / 2
            if belongs(self[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}
