import SQLKit

/// From when a sensor's minute and hour rows are whole, once older ones were dropped
/// (`SensorRetention`); nil: from the start.
struct KeptDetail: Sendable {
    var minutes: Int64?
    var hours: Int64?

    func from(_ level: RollupLevel) -> Int64? {
        switch level {
        case .minute: minutes
        case .hour: hours
        case .day: nil
        }
    }

    /// The finest level whose rows are whole at `instant`.
    func finest(at instant: Int64) -> RollupLevel {
        RollupLevel.allCases.first { level in from(level).map { instant >= $0 } ?? true }!
    }
}

extension KeptDetail {
    /// From a row of `sensors` with `minutes_from_us` and `hours_from_us`.
    init(row: any SQLRow) throws {
        self.init(minutes: try row.decode(column: "minutes_from_us", as: Int64?.self), hours: try row.decode(column: "hours_from_us", as: Int64?.self))
    }
}

extension SensorsRepository {
    /// Nil for an unknown sensor.
    static func kept(sensor: String, db: any SQLDatabase) async throws -> KeptDetail? {
        try await db.raw("SELECT minutes_from_us, hours_from_us FROM sensors WHERE sensor = \(bind: sensor)").first().map(KeptDetail.init(row:))
    }

    /// A 422 when an answer from `start` would need rows of `level` that were dropped.
    static func checkKept(sensor: String, level: RollupLevel, from start: Int64, db: any SQLDatabase) async throws {
        guard let from = try await kept(sensor: sensor, db: db)?.from(level), start < from else { return }
        let (flag, instead) = level == .minute ? ("--keep-sensor-minutes", "whole hours") : ("--keep-sensor-hours", "whole days")
        throw APIError.invalid(
            "from", "sensor \(sensor) keeps its \(level) rows from \(Timestamp(microseconds: from).rfc3339) on (\(flag)): ask from then, or in \(instead)")
    }

    func checkKept(sensor: String, level: RollupLevel, from start: Int64) async throws {
        try await database.read { db in try await Self.checkKept(sensor: sensor, level: level, from: start, db: db) }
    }
}
