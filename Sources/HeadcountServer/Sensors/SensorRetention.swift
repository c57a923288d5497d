import Logging
import SQLKit
import ServiceLifecycle

/// How long raw sensor events are kept (`--keep-sensor-events DAYS`; forever by default). Counts,
/// series and reports read the rollups, which are kept forever (a minute row holds the count at the
/// start of its minute), so dropping old events costs only the detail within a minute: an instant
/// in a minute whose events are gone is answered with the count at that minute's start, and the
/// event listing starts at the oldest kept. Events are dropped in whole minutes, so a minute is
/// either all there or all gone; the minutes that hold an adjustment keep theirs, since the
/// adjustment's offset is worked out from the exact count at its instant.
struct SensorRetention: Service {
    /// The most events one delete takes (more only when one minute alone holds more).
    static let chunk = 10_000
    /// The sweep stays this far behind the horizon the routes check, so that an event or an
    /// adjustment let in just before a sweep (or by an instance whose clock is a little ahead)
    /// still finds its minute's events when it commits.
    static let margin = RollupLevel.hour.length
    static let interval: Duration = .seconds(3600)
    static let retry: Duration = .seconds(60)
    /// nil: events are kept forever.
    let days: Int?
    let database: any Database
    let logger: Logger

    /// The first minute whose events are kept at `now`; nil when all are.
    func horizon(now: Int64 = Timestamp.now().microseconds) -> Int64? {
        days.map { RollupLevel.minute.start(of: now - Int64($0) * RollupLevel.day.length) }
    }

    /// Why `field` at `instant` is refused, if it is older than the horizon: its minute's events
    /// may be gone, and a late event's minute (or an adjustment's offset) is worked out from them.
    func refusal(_ field: String, at instant: Timestamp) -> String? {
        guard let horizon = horizon(), instant.microseconds < horizon, let days else { return nil }
        return "\(field) is older than the \(days) days of sensor events this server keeps (--keep-sensor-events)"
    }

    /// An event older than the horizon is a 400 (the seed's convention for a bad webhook).
    func check(_ event: SensorEvent, index: Int? = nil) throws {
        guard let message = refusal("ts", at: event.ts) else { return }
        throw APIError.badRequest(index.map { "events[\($0)]: \(message)" } ?? message)
    }

    func run() async throws {
        guard days != nil else {
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
                    let deleted = try await sweep()
                    if deleted > 0 {
                        let seconds = Double((ContinuousClock.now - started).milliseconds) / 1000
                        logger.info("dropped sensor events older than the kept days", metadata: ["events": "\(deleted)", "seconds": "\(seconds)"])
                    }
                } catch {
                    logger.warning("could not drop old sensor events; trying again in a minute", metadata: ["error": "\(error)"])
                    wait = Self.retry
                }
                try await Task.sleep(for: wait)
            }
        }
    }

    /// Deletes the events before the horizon, a sensor at a time, in whole minutes, at most about
    /// `chunk` events a transaction; returns how many. Several instances may sweep at once.
    func sweep(now: Int64 = Timestamp.now().microseconds, chunk: Int = Self.chunk) async throws -> Int {
        guard let horizon = horizon(now: now).map({ $0 - Self.margin }) else { return 0 }
        let sensors = try await database.read { db in
            try await db.raw("SELECT sensor FROM sensors ORDER BY sensor").all().map { try $0.decode(column: "sensor", as: String.self) }
        }
        var deleted = 0
        for sensor in sensors {
            // A read first: a sensor with nothing to drop costs no write.
            let kept = try await database.read { db -> [Int64]? in
                let old = try await db.raw("SELECT ts_us FROM sensor_events WHERE sensor = \(bind: sensor) AND ts_us < \(bind: horizon) LIMIT 1").first()
                guard old != nil else { return nil }
                return try await db.raw("SELECT at_us FROM sensor_adjustments WHERE sensor = \(bind: sensor) AND at_us < \(bind: horizon)").all()
                    .map { RollupLevel.minute.start(of: try $0.decode(column: "at_us", as: Int64.self)) }
            }
            guard let kept else { continue }
            var start = Int64.min
            while start < horizon {
                let from = start
                let range = try await database.transaction { db in
                    try await Self.deleteChunk(sensor: sensor, from: from, before: horizon, keeping: Set(kept), chunk: chunk, db: db)
                }
                deleted += range.deleted
                start = range.until
            }
        }
        return deleted
    }

    /// Deletes the sensor's events in [from, an end at most `before`), whole minutes, but for the
    /// minutes in `keeping`; returns the end it reached.
    private static func deleteChunk(
        sensor: String, from: Int64, before horizon: Int64, keeping: Set<Int64>, chunk: Int, db: any SQLDatabase
    ) async throws -> (deleted: Int, until: Int64) {
        let rows = try await db.raw(
            """
            SELECT ts_us FROM sensor_events WHERE sensor = \(bind: sensor) AND ts_us >= \(bind: from) AND ts_us < \(bind: horizon)
            ORDER BY ts_us LIMIT 1 OFFSET \(literal: chunk)
            """
        ).first()
        // The chunk ends at the minute of its last-plus-one event, or at the horizon when fewer remain.
        var until = try rows.map { RollupLevel.minute.start(of: try $0.decode(column: "ts_us", as: Int64.self)) } ?? horizon
        if until <= from { until = from + RollupLevel.minute.length }
        var deleted = 0
        var start = from
        for minute in keeping.filter({ $0 >= from && $0 < until }).sorted() + [until] {
            if start < minute {
                deleted += try await db.raw(
                    """
                    DELETE FROM sensor_events WHERE sensor = \(bind: sensor) AND ts_us >= \(bind: start) AND ts_us < \(bind: minute) RETURNING seq
                    """
                ).all().count
            }
            start = minute + RollupLevel.minute.length
        }
        return (deleted, until)
    }
}
