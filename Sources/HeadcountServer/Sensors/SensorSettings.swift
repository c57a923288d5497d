import Foundation
import SQLKit

/// What an operator sets on a sensor: its capacity and the percentages of it that warn and are
/// critical, how long without a post makes it silent, and when its count is reset each day.
struct SensorSettings: Encodable, Sendable {
    static let columns: SQLQueryString = "sensor, capacity, warn_percent, critical_percent, silent_after_minutes, reset_time, reset_time_zone"
    static let defaultWarnPercent: Int64 = 80
    static let defaultCriticalPercent: Int64 = 100

    let sensor: String
    @Nullable var capacity: Int64?
    var warnPercent: Int64 = defaultWarnPercent
    var criticalPercent: Int64 = defaultCriticalPercent
    @Nullable var silentAfterMinutes: Int64?
    /// A daily reset to zero at this local time (`HH:MM`) in `resetTimeZone`.
    @Nullable var resetTime: String?
    @Nullable var resetTimeZone: String?

    enum CodingKeys: String, CodingKey {
        case sensor, capacity
        case resetTime = "reset_time"
        case resetTimeZone = "reset_time_zone"
        case warnPercent = "warn_percent"
        case criticalPercent = "critical_percent"
        case silentAfterMinutes = "silent_after_minutes"
    }

    init(sensor: String) { self.sensor = sensor }

    init(row: any SQLRow) throws {
        sensor = try row.decode(column: "sensor", as: String.self)
        capacity = try row.decode(column: "capacity", as: Int64?.self)
        warnPercent = try row.decode(column: "warn_percent", as: Int64.self)
        criticalPercent = try row.decode(column: "critical_percent", as: Int64.self)
        silentAfterMinutes = try row.decode(column: "silent_after_minutes", as: Int64?.self)
        resetTime = try row.decode(column: "reset_time", as: String?.self)
        resetTimeZone = try row.decode(column: "reset_time_zone", as: String?.self)
    }

    static func read(_ sensor: String, database: any Database) async throws -> SensorSettings {
        try await database.read { db in
            try await db.raw("SELECT \(columns) FROM sensor_settings WHERE sensor = \(bind: sensor)").first().map(SensorSettings.init) ?? SensorSettings(sensor: sensor)
        }
    }

    /// Stores these settings; the sensor's alerts follow from its next post (or the watcher's next round).
    func save(database: any Database) async throws {
        try await database.transaction { db in
            try await db.raw(
                """
                INSERT INTO sensor_settings (sensor, capacity, warn_percent, critical_percent, silent_after_minutes, reset_time, reset_time_zone, updated_us)
                VALUES (\(bind: sensor), \(bind: capacity), \(bind: warnPercent), \(bind: criticalPercent), \(bind: silentAfterMinutes), \(bind: resetTime),
                        \(bind: resetTimeZone), \(bind: Timestamp.now().microseconds))
                ON CONFLICT (sensor) DO UPDATE SET capacity = excluded.capacity, warn_percent = excluded.warn_percent,
                    critical_percent = excluded.critical_percent, silent_after_minutes = excluded.silent_after_minutes, reset_time = excluded.reset_time,
                    reset_time_zone = excluded.reset_time_zone, updated_us = excluded.updated_us
                """
            ).run()
        }
    }
}

extension SensorSettings {
    /// The latest daily reset at or before `now` (the reset time on today's local date, or
    /// yesterday's); nil without a reset time. A time a DST change skips resets at the next that exists.
    func lastReset(before now: Int64) -> Timestamp? {
        guard let resetTime, let zone = TimeZone(identifier: resetTimeZone ?? "UTC") else { return nil }
        let parts = resetTime.split(separator: ":").compactMap { Int($0) }
        guard parts.count == 2 else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let date = Date(timeIntervalSince1970: Double(now) / 1_000_000)
        for days in [0, -1] {
            guard let day = calendar.date(byAdding: .day, value: days, to: date),
                let reset = calendar.date(bySettingHour: parts[0], minute: parts[1], second: 0, of: day)
            else { continue }
            let at = Int64((reset.timeIntervalSince1970 * 1_000_000).rounded())
            if at <= now { return Timestamp(microseconds: at) }
        }
        return nil
    }
}
