import SQLKit

/// What an operator sets on a sensor: its capacity and the percentages of it that warn and are
/// critical, and how long without a post makes it silent.
struct SensorSettings: Encodable, Sendable {
    static let columns: SQLQueryString = "sensor, capacity, warn_percent, critical_percent, silent_after_minutes"
    static let defaultWarnPercent: Int64 = 80
    static let defaultCriticalPercent: Int64 = 100

    let sensor: String
    var capacity: Int64?
    var warnPercent: Int64 = defaultWarnPercent
    var criticalPercent: Int64 = defaultCriticalPercent
    var silentAfterMinutes: Int64?

    enum CodingKeys: String, CodingKey {
        case sensor, capacity
        case warnPercent = "warn_percent"
        case criticalPercent = "critical_percent"
        case silentAfterMinutes = "silent_after_minutes"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sensor, forKey: .sensor)
        try container.encode(capacity, forKey: .capacity)
        try container.encode(warnPercent, forKey: .warnPercent)
        try container.encode(criticalPercent, forKey: .criticalPercent)
        try container.encode(silentAfterMinutes, forKey: .silentAfterMinutes)
    }

    init(sensor: String) { self.sensor = sensor }

    init(row: any SQLRow) throws {
        sensor = try row.decode(column: "sensor", as: String.self)
        capacity = try row.decode(column: "capacity", as: Int64?.self)
        warnPercent = try row.decode(column: "warn_percent", as: Int64.self)
        criticalPercent = try row.decode(column: "critical_percent", as: Int64.self)
        silentAfterMinutes = try row.decode(column: "silent_after_minutes", as: Int64?.self)
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
                INSERT INTO sensor_settings (sensor, capacity, warn_percent, critical_percent, silent_after_minutes, updated_us)
                VALUES (\(bind: sensor), \(bind: capacity), \(bind: warnPercent), \(bind: criticalPercent), \(bind: silentAfterMinutes), \(bind: Timestamp.now().microseconds))
                ON CONFLICT (sensor) DO UPDATE SET capacity = excluded.capacity, warn_percent = excluded.warn_percent,
                    critical_percent = excluded.critical_percent, silent_after_minutes = excluded.silent_after_minutes, updated_us = excluded.updated_us
                """
            ).run()
        }
    }
}
