import SQLKit

struct RollupKey: Hashable, Sendable {
    let sensor: String
    let level: RollupLevel
}

/// A run of a sensor's hour or day rows that are final: all before the row holding its latest
/// event. Events in time order only touch that row and later ones; a late event rewrites earlier
/// rows and bumps the sensor's `revisions` (so does an adjustment), which the run was read under.
struct RollupHistory: Sendable {
    let revisions: Int64
    /// The rows held span [from, until), and `opening` is the occupancy just before `from`.
    var from: Int64
    var until: Int64
    var opening: Int64
    var rows: [Rollup]
}

extension SensorsRepository {
    /// The same as `rollups(sensor:level:from:to:db:)`, with the final rows of hours and days read
    /// from this instance's memory: a year's report reads its 8,760 hours once, then only rows it
    /// does not hold (and all of them again once the sensor's past is revised). What is held is
    /// one run per sensor and level, extended by reports that touch it, replaced by others.
    func cachedRollups(sensor: String, level: RollupLevel, from start: Int64, to end: Int64, db: any SQLDatabase) async throws -> (opening: Int64, rows: [Rollup]) {
        // The version first: rows read after it are at least as new as it says.
        guard level != .minute, let (latest, revisions) = try await Self.past(of: sensor, db: db) else {
            return try await Self.rollups(sensor: sensor, level: level, from: start, to: end, db: db)
        }
        // The part of the report whose rows are final.
        let final = min(end, level.start(of: latest))
        guard start < final else { return try await Self.rollups(sensor: sensor, level: level, from: start, to: end, db: db) }

        let key = RollupKey(sensor: sensor, level: level)
        let held = database.caches.rollups[key].flatMap { $0.revisions == revisions && $0.from <= final && start <= $0.until ? $0 : nil }
        var history: RollupHistory
        if var held {
            if start < held.from {
                let (opening, rows) = try await Self.rollups(sensor: sensor, level: level, from: start, to: held.from, db: db)
                (held.from, held.opening, held.rows) = (start, opening, rows + held.rows)
            }
            if held.until < final {
                held.rows += try await Self.rollups(sensor: sensor, level: level, from: held.until, to: final, db: db).rows
                held.until = final
            }
            history = held
        } else {
            let (opening, rows) = try await Self.rollups(sensor: sensor, level: level, from: start, to: final, db: db)
            history = RollupHistory(revisions: revisions, from: start, until: final, opening: opening, rows: rows)
        }
        if held?.from != history.from || held?.until != history.until {
            database.caches.rollups.store(history, for: key, weight: history.rows.count + 1)
        }

        let rows = history.rows
        let lower = rows.partitioningIndex { $0.start >= start }
        let upper = rows.partitioningIndex { $0.start >= final }
        let opening = lower > 0 ? rows[lower - 1].balanceAfter : history.opening
        let recent = end > final ? try await Self.rollups(sensor: sensor, level: level, from: final, to: end, db: db).rows : []
        return (opening, Array(rows[lower..<upper]) + recent)
    }

    /// The sensor's `revisions` when a report until `end` can no longer change but by a revision
    /// of its past (a late event, an adjustment); nil while it can: `end` after the sensor's latest
    /// event, or after now.
    func settledVersion(sensor: String, until end: Int64) async throws -> Int64? {
        guard end <= Timestamp.now().microseconds else { return nil }
        return try await database.read { db in
            try await Self.past(of: sensor, db: db).flatMap { end <= $0.latest ? $0.revisions : nil }
        }
    }

    /// What memory of a sensor's past is checked against: its latest event (rows before the one
    /// holding it are final) and how many times its past was revised. Nil for an unknown sensor.
    private static func past(of sensor: String, db: any SQLDatabase) async throws -> (latest: Int64, revisions: Int64)? {
        try await db.raw("SELECT last_ts_us, revisions FROM sensors WHERE sensor = \(bind: sensor)").first().map {
            (try $0.decode(column: "last_ts_us", as: Int64.self), try $0.decode(column: "revisions", as: Int64.self))
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
