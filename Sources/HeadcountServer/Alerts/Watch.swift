import Logging
import SQLKit
import ServiceLifecycle

/// What no write tells: a sensor's daily reset coming due, a sensor that stopped posting, and a
/// place whose doorways together cross its capacity. Every instance runs a round every 15
/// seconds; the rounds take turns (a lock on PostgreSQL, the writer on SQLite), so one reset is
/// made, and one alert raised, once.
struct Watch: Service {
    let database: any Database
    let feed: ChangeFeed
    let logger: Logger
    static let interval: Duration = .seconds(15)

    func run() async throws {
        // Shutting down cancels the wait (and a round in flight: the next start does it again).
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do { try await round(now: Timestamp.now().microseconds) } catch { logger.debug("alert round failed", metadata: ["error": "\(error)"]) }
                try await Task.sleep(for: Self.interval)
            }
        }
    }

    func round(now: Int64) async throws {
        try await resets(now: now)
        // The places' counts are read first, outside the transaction that raises and clears.
        let places = PlacesRepository(database: database, feed: feed)
        var counts: [(id: String, count: Int64, thresholds: Thresholds)] = []
        for place in try await places.places() where place.capacity ?? 0 > 0 {
            guard let tree = try await places.subtree(of: place.id) else { continue }
            let thresholds = Thresholds(capacity: place.capacity!, warnPercent: SensorSettings.defaultWarnPercent, criticalPercent: SensorSettings.defaultCriticalPercent)
            counts.append((place.id, try await places.counted(tree, at: nil).counted, thresholds))
        }
        let postgres = database.engine == .postgres, measured = counts
        try await database.transaction(publishingTo: feed) { db, changes in
            if postgres { try await db.raw("SELECT pg_advisory_xact_lock(4242002)").run() }
            let silent = try await db.raw(
                """
                SELECT s.sensor, s.silent_after_minutes, x.received_us FROM sensor_settings s JOIN sensors x ON x.sensor = s.sensor
                WHERE s.silent_after_minutes IS NOT NULL AND x.received_us IS NOT NULL
                """
            ).all()
            let sensors = try silent.map { try $0.decode(column: "sensor", as: String.self) }
            let active = try await AlertsRepository.active(subject: "sensor", ids: sensors, db: db)
            for row in silent {
                let sensor = try row.decode(column: "sensor", as: String.self)
                let minutes = try row.decode(column: "silent_after_minutes", as: Int64.self)
                let quiet = (now - (try row.decode(column: "received_us", as: Int64.self))) / 60_000_000
                if quiet >= minutes, active[sensor]?[AlertKind.silent.rawValue] == nil {
                    try await AlertsRepository.raise(subject: "sensor", id: sensor, kind: .silent, value: quiet, threshold: minutes, now: now, db: db, changes: changes)
                }
            }
            let placeAlerts = try await AlertsRepository.active(subject: "place", ids: measured.map(\.id), db: db)
            for (id, count, thresholds) in measured {
                try await AlertsRepository.evaluate(
                    subject: "place", id: id, count: count, thresholds: thresholds, kinds: [.warn, .critical], active: placeAlerts[id] ?? [:], now: now, db: db,
                    changes: changes)
            }
        }
    }

    /// Each sensor's latest daily reset, if it came after its settings were saved and is not made
    /// yet: an adjustment to zero at the reset's instant.
    func resets(now: Int64) async throws {
        let due = try await database.read { db in
            try await db.raw(
                "SELECT \(SensorSettings.columns), updated_us FROM sensor_settings WHERE reset_time IS NOT NULL"
            ).all().compactMap { row -> (String, Timestamp)? in
                let settings = try SensorSettings(row: row)
                guard let at = settings.lastReset(before: now), at.microseconds > (try row.decode(column: "updated_us", as: Int64.self)) else { return nil }
                return (settings.sensor, at)
            }
        }
        guard !due.isEmpty else { return }
        try await database.transaction(publishingTo: feed) { db, changes in
            for (sensor, at) in due {
                _ = try await SensorsRepository.adjust(sensor: sensor, to: 0, at: at, kind: "reset", reason: "daily reset", by: "schedule", db: db, changes: changes)
            }
        }
    }
}
