import Logging
import SQLKit
import ServiceLifecycle

/// How many days of each kind of sensor detail are kept; nil: forever. Day rows are always kept,
/// and a finer kind never outlives a coarser one (the settings are checked at start).
public struct SensorKeep: Sendable, Equatable {
    /// Raw events (`--keep-sensor-events`).
    public var events: Int?
    /// Minute rows (`--keep-sensor-minutes`).
    public var minutes: Int?
    /// Hour rows (`--keep-sensor-hours`).
    public var hours: Int?

    public init(events: Int? = nil, minutes: Int? = nil, hours: Int? = nil) {
        (self.events, self.minutes, self.hours) = (events, minutes, hours)
    }
}

/// Drops sensor detail older than `SensorKeep` says, a minute after start and hourly.
///
/// Raw events: counts, series and reports read the rollups, and a minute row holds the count at
/// the start of its minute, so dropping old events costs only the detail within a minute: an
/// instant in a minute whose events are gone is answered with the count at that minute's start,
/// and the event listing starts at the oldest kept. Events go in whole minutes, so a minute is
/// either all there or all gone; the minutes that hold an adjustment keep theirs, since the
/// adjustment's offset is worked out from the exact count at its instant. On PostgreSQL a month
/// partition (`SensorPartitions`) that ends before the horizon goes in one statement.
///
/// Minute and hour rows go in whole UTC days, a day behind: a late event rebuilds its hour from
/// its minutes and its day from its hours, and an adjustment's day may be split into its minutes
/// by a report. Before the first goes, the sensor's row says from when that level is whole
/// (`minutes_from_us`, `hours_from_us`), so every instance refuses a report that would need the
/// missing rows (422) and answers an older instant from the next coarser level; the rows go only
/// `settle` later, once any read that checked before has finished. The newest row before that
/// start stays (a later answer's opening count is its closing one), and so do the minute rows of
/// every day that holds an adjustment (its offset and its place in a report are read from them).
///
/// Each sweep of a table starts where the sensor's last one finished (`events_swept_us`,
/// `minutes_swept_us`, `hours_swept_us`, written after its deletes), so its cost follows what is
/// new, not the years of adjustments behind it.
struct SensorRetention: Service {
    /// The most rows one delete takes (more only when one minute alone holds more events).
    static let chunk = 10_000
    /// The sweep stays this far behind the horizon the routes check, so that an event or an
    /// adjustment let in just before a sweep (or by an instance whose clock is a little ahead)
    /// still finds its minute's events when it commits.
    static let margin = RollupLevel.hour.length
    static let interval: Duration = .seconds(3600)
    static let retry: Duration = .seconds(60)
    /// Between marking a level and deleting its rows: longer than a request's database work may
    /// take on PostgreSQL (35 s), so a read that checked before the mark is done.
    static let settle: Duration = .seconds(40)
    let keep: SensorKeep
    let database: any Database
    let logger: Logger

    /// The first minute whose events are kept at `now`; nil when all are.
    func horizon(now: Int64 = Timestamp.now().microseconds) -> Int64? {
        Self.horizon(days: keep.events, now: now)
    }

    private static func horizon(days: Int?, now: Int64) -> Int64? {
        days.map { RollupLevel.minute.start(of: now - Int64($0) * RollupLevel.day.length) }
    }

    /// Why `field` at `instant` is refused, if it is older than the horizon: its minute's events
    /// may be gone, and a late event's minute (or an adjustment's offset) is worked out from them.
    func refusal(_ field: String, at instant: Timestamp) -> String? {
        guard let horizon = horizon(), instant.microseconds < horizon, let days = keep.events else { return nil }
        return "\(field) is older than the \(days) days of sensor events this server keeps (--keep-sensor-events)"
    }

    /// An event older than the horizon is a 400 (the seed's convention for a bad webhook).
    func check(_ event: SensorEvent, index: Int? = nil) throws {
        guard let message = refusal("ts", at: event.ts) else { return }
        throw APIError.badRequest(index.map { "events[\($0)]: \(message)" } ?? message)
    }

    func run() async throws {
        guard keep.events != nil else {
            try? await gracefulShutdown()
            return
        }
        // Shutting down cancels the wait (and a sweep in flight: each delete is its own transaction).
        try? await cancelWhenGracefulShutdown {
            // The first sweep a minute after start, once the database is up and migrated.
            try await Task.sleep(for: Self.retry)
            while !Task.isCancelled {
                var wait = Self.interval
                do {
                    let started = ContinuousClock.now
                    let swept = try await sweep()
                    if swept != Swept() {
                        let seconds = Double((ContinuousClock.now - started).milliseconds) / 1000
                        logger.info(
                            "dropped sensor events and rollups older than the kept days",
                            metadata: ["events": "\(swept.events)", "minutes": "\(swept.minutes)", "hours": "\(swept.hours)", "seconds": "\(seconds)"])
                    }
                } catch {
                    logger.warning("could not drop old sensor detail; trying again in a minute", metadata: ["error": "\(error)"])
                    wait = Self.retry
                }
                try await Task.sleep(for: wait)
            }
        }
    }

    /// How many rows a sweep deleted, of each kind.
    struct Swept: Equatable {
        var events = 0
        var minutes = 0
        var hours = 0
    }

    /// Deletes what is older than the kept days, a sensor at a time, at most about `chunk` rows a
    /// transaction. Several instances may sweep at once.
    func sweep(now: Int64 = Timestamp.now().microseconds, chunk: Int = Self.chunk, settle: Duration = Self.settle) async throws -> Swept {
        guard let events = horizon(now: now).map({ $0 - Self.margin }) else { return Swept() }
        // Rollups go in whole days, a day behind the day the kept days start in.
        let day = RollupLevel.day
        let (minutes, hours) = (
            keep.minutes.map { day.start(of: now - Int64($0) * day.length) - day.length }, keep.hours.map { day.start(of: now - Int64($0) * day.length) - day.length }
        )
        let sensors = try await database.read { db in
            try await db.raw("SELECT sensor FROM sensors ORDER BY sensor").all().map { try $0.decode(column: "sensor", as: String.self) }
        }
        var swept = Swept()
        if database.engine == .postgres {
            swept.events += try await SensorPartitions.dropMonths(before: events, database: database)
            try await SensorPartitions.forgetIDs(before: events, chunk: chunk, database: database)
        }
        // First every sensor's plan (and the marks readers check), then, once the reads that checked
        // the old marks are done, the deletes; a table's sweep is recorded as done only after them
        // (and when there was nothing to delete, so the next starts at this horizon all the same).
        var plans: [(table: Table, sensor: String, horizon: Int64, gaps: [Range<Int64>])] = []
        for sensor in sensors {
            for (table, horizon) in [(Table.events, events), (.minutes, minutes), (.hours, hours)] {
                guard let horizon else { continue }
                plans.append((table, sensor, horizon, try await plan(table, sensor: sensor, before: horizon)))
            }
        }
        if plans.contains(where: { $0.table.mark != nil && !$0.gaps.isEmpty }) { try await Task.sleep(for: settle) }
        for plan in plans {
            let deleted = try await delete(plan.table, sensor: plan.sensor, in: plan.gaps, chunk: chunk)
            let column: SQLQueryString = "\(unsafeRaw: plan.table.swept)"
            try await database.transaction { db in
                try await db.raw(
                    "UPDATE sensors SET \(column) = \(bind: plan.horizon) WHERE sensor = \(bind: plan.sensor) AND (\(column) IS NULL OR \(column) < \(bind: plan.horizon))"
                ).run()
            }
            swept[keyPath: plan.table.count] += deleted
        }
        return swept
    }

    /// A table a sweep trims.
    struct Table: Sendable {
        let name: String
        let column: String
        /// Rows go in whole spans of this length (a minute's events together; a rollup row alone).
        let whole: Int64
        /// The column of `sensors` that readers check, saying from when the table is whole (set
        /// before any row goes); nil for events, which readers do not need whole.
        let mark: String?
        /// The column of `sensors` up to which the table's last sweep finished.
        let swept: String
        /// The span around an adjustment whose rows stay: its minute's events, its day's minutes.
        let around: RollupLevel?
        /// Where a sweep counts the rows it deleted.
        let count: WritableKeyPath<Swept, Int> & Sendable

        static let events = Table(
            name: "sensor_events", column: "ts_us", whole: RollupLevel.minute.length, mark: nil, swept: "events_swept_us", around: .minute, count: \.events)
        static let minutes = Table(
            name: RollupLevel.minute.table, column: RollupLevel.minute.column, whole: 1, mark: "minutes_from_us", swept: "minutes_swept_us", around: .day,
            count: \.minutes)
        static let hours = Table(
            name: RollupLevel.hour.table, column: RollupLevel.hour.column, whole: 1, mark: "hours_from_us", swept: "hours_swept_us", around: nil, count: \.hours)
    }

    /// The spans of the sensor's rows of `table` before `horizon` to delete, from where its last
    /// sweep finished: all but the spans around adjustments (and, for a rollup, the newest row
    /// before each of those and before the horizon). For a rollup with any, marks it whole from
    /// the horizon on.
    private func plan(_ table: Table, sensor: String, before horizon: Int64) async throws -> [Range<Int64>] {
        let (name, column, sweptColumn): (SQLQueryString, SQLQueryString, SQLQueryString) = (
            "\(unsafeRaw: table.name)", "\(unsafeRaw: table.column)", "\(unsafeRaw: table.swept)"
        )
        let gaps = try await database.read { db -> [Range<Int64>] in
            let swept = try await db.raw("SELECT \(sweptColumn) AS swept FROM sensors WHERE sensor = \(bind: sensor)").first()?.decode(column: "swept", as: Int64?.self)
            guard swept.map({ $0 < horizon }) ?? true else { return [] }
            // Before the last sweep's end only kept spans are left; a rollup's newest row before it
            // may go now.
            var start = swept ?? Int64.min
            if table.mark != nil, let swept {
                start =
                    try await db.raw("SELECT MAX(\(column)) AS start FROM \(name) WHERE sensor = \(bind: sensor) AND \(column) < \(bind: swept)")
                    .first()?.decode(column: "start", as: Int64?.self) ?? swept
            }
            var kept: [Range<Int64>] = []
            if let around = table.around {
                let lower = start == Int64.min ? start : start - around.length
                for row in try await db.raw(
                    "SELECT at_us FROM sensor_adjustments WHERE sensor = \(bind: sensor) AND at_us >= \(bind: lower) AND at_us < \(bind: horizon)"
                ).all() {
                    let at = around.start(of: try row.decode(column: "at_us", as: Int64.self))
                    kept.append(at..<at + around.length)
                }
            }
            if table.mark != nil {
                for end in Set(kept.map(\.lowerBound)) + [horizon] {
                    let newest = try await db.raw("SELECT MAX(\(column)) AS start FROM \(name) WHERE sensor = \(bind: sensor) AND \(column) < \(bind: end)")
                        .first()?.decode(column: "start", as: Int64?.self)
                    if let newest { kept.append(newest..<newest + 1) }
                }
            }
            var gaps: [Range<Int64>] = []
            for span in kept.sorted(by: { $0.lowerBound < $1.lowerBound }) where span.lowerBound < horizon {
                if start < span.lowerBound { gaps.append(start..<span.lowerBound) }
                start = max(start, span.upperBound)
            }
            if start < horizon { gaps.append(start..<horizon) }
            var found: [Range<Int64>] = []
            for gap in gaps {
                let row = try await db.raw(
                    "SELECT 1 AS found FROM \(name) WHERE sensor = \(bind: sensor) AND \(column) >= \(bind: gap.lowerBound) AND \(column) < \(bind: gap.upperBound) LIMIT 1"
                ).first()
                if row != nil { found.append(gap) }
            }
            return found
        }
        guard !gaps.isEmpty, let mark = table.mark.map({ SQLQueryString("\(unsafeRaw: $0)") }) else { return gaps }
        try await database.transaction { db in
            try await db.raw("UPDATE sensors SET \(mark) = \(bind: horizon) WHERE sensor = \(bind: sensor) AND (\(mark) IS NULL OR \(mark) < \(bind: horizon))").run()
        }
        return gaps
    }

    /// Deletes the sensor's rows of `table` in `gaps`, at most about `chunk` a transaction.
    private func delete(_ table: Table, sensor: String, in gaps: [Range<Int64>], chunk: Int) async throws -> Int {
        var deleted = 0
        for gap in gaps {
            var start = gap.lowerBound
            while start < gap.upperBound {
                let from = start
                let range = try await database.transaction { db in
                    try await Self.deleteChunk(table, sensor: sensor, in: from..<gap.upperBound, chunk: chunk, db: db)
                }
                deleted += range.deleted
                start = range.until
            }
        }
        return deleted
    }

    /// Deletes the sensor's rows of `table` from `span`'s start up to at most its end, in whole
    /// spans of the table's, at most about `chunk`; returns the end it reached.
    private static func deleteChunk(_ table: Table, sensor: String, in span: Range<Int64>, chunk: Int, db: any SQLDatabase) async throws -> (deleted: Int, until: Int64) {
        let (name, column): (SQLQueryString, SQLQueryString) = ("\(unsafeRaw: table.name)", "\(unsafeRaw: table.column)")
        let next = try await db.raw(
            """
            SELECT \(column) AS start FROM \(name) WHERE sensor = \(bind: sensor) AND \(column) >= \(bind: span.lowerBound) AND \(column) < \(bind: span.upperBound)
            ORDER BY \(column) LIMIT 1 OFFSET \(literal: chunk)
            """
        ).first()
        // The chunk ends at the span holding its last-plus-one row, or at the end when fewer remain.
        var until = try next.map { Timestamp(microseconds: try $0.decode(column: "start", as: Int64.self)).floored(to: table.whole) } ?? span.upperBound
        if until <= span.lowerBound { until = min(span.lowerBound + table.whole, span.upperBound) }
        let deleted = try await db.raw(
            """
            DELETE FROM \(name) WHERE sensor = \(bind: sensor) AND \(column) >= \(bind: span.lowerBound) AND \(column) < \(bind: until) RETURNING 1 AS gone
            """
        ).all().count
        return (deleted, until)
    }
}
