import SQLKit

/// The SQL of sensors: the events as posted, one totals row per sensor (current occupancy in O(1))
/// and per-minute rollups with prefix sums (occupancy at any instant without replaying history).
struct SensorsRepository: Sendable {
    let database: any Database

    /// Every sensor that has posted, sorted by name.
    func sensors() async throws -> [String] {
        try await database.read { db in
            try await db.raw("SELECT sensor FROM sensors").all().map { try $0.decode(column: "sensor", as: String.self) }
        }.sorted()
    }

    /// Occupancy now, or nil for an unknown sensor.
    func inside(sensor: String) async throws -> Int64? {
        try await database.read { db in
            try await db.raw("SELECT inside + adjustment AS inside FROM sensors WHERE sensor = \(bind: sensor)").first()?.decode(column: "inside", as: Int64.self)
        }
    }

    /// Occupancy at `instant`: every event with `ts <= instant`, or nil for an unknown sensor.
    /// One indexed lookup of the latest minute at or before the instant, plus the events of that
    /// minute up to the instant when it is the instant's own minute.
    func inside(sensor: String, at instant: Timestamp) async throws -> Int64? {
        try await database.read { db -> Int64? in
            guard let kept = try await Self.kept(sensor: sensor, db: db) else { return nil }
            return try await Self.inside(sensor: sensor, at: instant, kept: kept, db: db)
        }
    }

    /// Several sensors' occupancy, now or at `instant`, read together (unknown sensors are absent).
    func inside(sensors: [String], at instant: Timestamp?) async throws -> [String: Int64] {
        guard !sensors.isEmpty else { return [:] }
        return try await database.read { db in
            var inside: [String: Int64] = [:]
            var kept: [String: KeptDetail] = [:]
            for chunk in sensors.chunks(of: 500) {
                for row in try await db.raw(
                    "SELECT sensor, inside + adjustment AS inside, minutes_from_us, hours_from_us FROM sensors WHERE sensor IN (\(binds: Array(chunk)))"
                ).all() {
                    let sensor = try row.decode(column: "sensor", as: String.self)
                    inside[sensor] = try row.decode(column: "inside", as: Int64.self)
                    kept[sensor] = try KeptDetail(row: row)
                }
            }
            if let instant {
                let together = try await Self.atMinute(Array(kept.keys), at: instant, db: db)
                for (sensor, kept) in kept {
                    if let count = together[sensor] { inside[sensor] = count } else { inside[sensor] = try await Self.inside(sensor: sensor, at: instant, kept: kept, db: db) }
                }
            }
            return inside
        }
    }

    /// The counts at `instant` of those `sensors` that need neither adjustments nor coarser rows
    /// then, as `inside(sensor:at:)` reads them, in three statements for all: a 200-doorway
    /// building took 600 at an instant, one sensor at a time. The others are absent.
    private static func atMinute(_ sensors: [String], at instant: Timestamp, db: any SQLDatabase) async throws -> [String: Int64] {
        let minute = RollupLevel.minute.start(of: instant.microseconds)
        var inside: [String: Int64] = [:]
        for chunk in sensors.chunks(of: 500) {
            let chunk = Array(chunk)
            var plain = Set(chunk)
            for row in try await db.raw(
                """
                SELECT sensor FROM sensor_adjustments WHERE sensor IN (\(binds: chunk)) AND at_us <= \(bind: instant.microseconds)
                UNION SELECT sensor FROM sensors WHERE sensor IN (\(binds: chunk)) AND minutes_from_us > \(bind: instant.microseconds)
                """
            ).all() {
                plain.remove(try row.decode(column: "sensor", as: String.self))
            }
            guard !plain.isEmpty else { continue }
            // Each sensor's latest minute row at or before the instant's minute: no row, nobody yet;
            // an earlier minute, its balance after; the instant's own minute, its balance before and
            // the minute's events up to the instant.
            var current: [String: Int64] = [:]
            for row in try await db.raw(
                """
                SELECT \(rollupColumns(.minute)) FROM sensor_minutes r JOIN (
                    SELECT s.sensor AS id, (SELECT MAX(m.minute_us) FROM sensor_minutes m WHERE m.sensor = s.sensor AND m.minute_us <= \(bind: minute)) AS latest
                    FROM sensors s WHERE s.sensor IN (\(binds: Array(plain)))
                ) k ON r.sensor = k.id AND r.minute_us = k.latest
                """
            ).all() {
                let sensor = try row.decode(column: "sensor", as: String.self), rollup = try Self.rollup(row, level: .minute)
                if rollup.start == minute { current[sensor] = rollup.balanceBefore } else { inside[sensor] = rollup.balanceAfter }
            }
            if !current.isEmpty {
                for row in try await db.raw(
                    """
                    SELECT sensor, CAST(COALESCE(SUM(in_count - out_count), 0) AS BIGINT) AS net FROM sensor_events
                    WHERE sensor IN (\(binds: Array(current.keys))) AND ts_us >= \(bind: minute) AND ts_us <= \(bind: instant.microseconds) GROUP BY sensor
                    """
                ).all() {
                    current[try row.decode(column: "sensor", as: String.self), default: 0] += try row.decode(column: "net", as: Int64.self)
                }
            }
            inside.merge(current) { $1 }
            for sensor in plain where inside[sensor] == nil { inside[sensor] = 0 }
        }
        return inside
    }

    /// The count at `instant` with the adjustment in force then. Before the sensor's minute rows
    /// are whole (`KeptDetail`), the count at the start of the instant's hour (or day).
    static func inside(sensor: String, at instant: Timestamp, kept: KeptDetail? = nil, db: any SQLDatabase) async throws -> Int64 {
        let detail = if let kept { kept } else { try await Self.kept(sensor: sensor, db: db) ?? KeptDetail() }
        let level = detail.finest(at: instant.microseconds)
        let at = level == .minute ? instant : Timestamp(microseconds: level.start(of: instant.microseconds))
        return try await rawInside(sensor: sensor, at: at, level: level, db: db) + offset(sensor: sensor, at: at.microseconds, db: db)
    }

    /// The raw count at `instant`: what the events alone add up to; with hours or days, the count
    /// at the start of the row holding it.
    static func rawInside(sensor: String, at instant: Timestamp, level: RollupLevel = .minute, db: any SQLDatabase) async throws -> Int64 {
        let (table, column): (SQLQueryString, SQLQueryString) = ("\(unsafeRaw: level.table)", "\(unsafeRaw: level.column)")
        let start = level.start(of: instant.microseconds)
        guard
            let row = try await db.raw(
                """
                SELECT \(rollupColumns(level)) FROM \(table)
                WHERE sensor = \(bind: sensor) AND \(column) <= \(bind: start) ORDER BY \(column) DESC LIMIT 1
                """
            ).first().map({ try Self.rollup($0, level: level) })
        else { return 0 }
        guard row.start == start else { return row.balanceAfter }
        guard level == .minute else { return row.balanceBefore }
        let within =
            try await db.raw(
                """
                SELECT CAST(COALESCE(SUM(in_count - out_count), 0) AS BIGINT) AS net FROM sensor_events
                WHERE sensor = \(bind: sensor) AND ts_us >= \(bind: start) AND ts_us <= \(bind: instant.microseconds)
                """
            ).first()?.decode(column: "net", as: Int64.self) ?? 0
        return row.balanceBefore + within
    }

    /// Occupancy just before `start` (a row boundary) and the rows of `level` in [start, end).
    static func rollups(sensor: String, level: RollupLevel, from start: Int64, to end: Int64, db: any SQLDatabase) async throws -> (opening: Int64, rows: [Rollup]) {
        let (table, column): (SQLQueryString, SQLQueryString) = ("\(unsafeRaw: level.table)", "\(unsafeRaw: level.column)")
        let opening =
            try await db.raw(
                """
                SELECT \(rollupColumns(level)) FROM \(table)
                WHERE sensor = \(bind: sensor) AND \(column) < \(bind: start) ORDER BY \(column) DESC LIMIT 1
                """
            ).first().map { try rollup($0, level: level) }?.balanceAfter ?? 0
        // A year of hours is 8,784 rows: they come back as one text (decoding a row costs more than
        // reading it), packed and parsed here. Rows are sorted here too: an aggregate's order is the
        // engine's business.
        let fields: SQLQueryString =
            "\(column) || ' ' || entries || ' ' || exits || ' ' || balance_before || ' ' || low || ' ' || high || ' ' || low_us || ' ' || high_us || ' ' || area"
        let packed: SQLQueryString =
            db.dialect.name == "postgresql" ? "string_agg(\(fields), ' ')" : "group_concat(\(fields), ' ')"
        let text = try await db.raw(
            """
            SELECT \(packed) AS packed FROM \(table)
            WHERE sensor = \(bind: sensor) AND \(column) >= \(bind: start) AND \(column) < \(bind: end)
            """
        ).first()?.decode(column: "packed", as: String?.self)
        return (opening, try unpack(text ?? "", level: level).sorted { $0.start < $1.start })
    }

    struct UnreadableRollup: Error {
        let text: String
    }

    /// Rows packed as `start entries exits balance_before low high low_us high_us area …`.
    static func unpack(_ text: String, level: RollupLevel) throws -> [Rollup] {
        var text = text
        return try text.withUTF8 { bytes in
            var rows: [Rollup] = []
            var at = 0
            func token() -> UnsafeBufferPointer<UInt8>.SubSequence? {
                while at < bytes.count, bytes[at] == 32 { at += 1 }
                let start = at
                while at < bytes.count, bytes[at] != 32 { at += 1 }
                return start < at ? bytes[start..<at] : nil
            }
            func integer() throws -> Int64 {
                guard let digits = token() else { throw UnreadableRollup(text: "a row ends early") }
                var (value, negative) = (Int64(0), digits.first == UInt8(ascii: "-"))
                for byte in digits.dropFirst(negative ? 1 : 0) {
                    guard (48...57).contains(byte) else { throw UnreadableRollup(text: String(decoding: digits, as: UTF8.self)) }
                    value = value * 10 + Int64(byte - 48)
                }
                return negative ? -value : value
            }
            while at < bytes.count {
                let (start, entries, exits, before, low, high, lowAt, highAt) = (
                    try integer(), try integer(), try integer(), try integer(), try integer(), try integer(), try integer(), try integer()
                )
                guard let field = token(), let area = Double(String(decoding: field, as: UTF8.self)) else { throw UnreadableRollup(text: "no area") }
                rows.append(
                    Rollup(
                        start: start, length: level.length, entries: entries, exits: exits, balanceBefore: before, low: low, high: high,
                        lowAt: lowAt, highAt: highAt, area: area))
                while at < bytes.count, bytes[at] == 32 { at += 1 }
            }
            return rows
        }
    }

    struct StoredEvent: Sendable {
        let seq: Int64
        let event: SensorEvent
    }

    /// Up to `limit` events with `from <= ts < to`, in time order, after the (ts, seq) `cursor`.
    func events(sensor: String, from: Int64, to: Int64, after cursor: (ts: Int64, seq: Int64)?, limit: Int) async throws -> [StoredEvent] {
        let (ts, seq) = cursor ?? (from, -1)
        return try await database.read { db in
            try await db.raw(
                """
                SELECT seq, ts_us, in_count, out_count, event_id FROM sensor_events
                WHERE sensor = \(bind: sensor) AND ts_us >= \(bind: from) AND ts_us < \(bind: to)
                    AND (ts_us > \(bind: ts) OR (ts_us = \(bind: ts) AND seq > \(bind: seq)))
                ORDER BY ts_us, seq LIMIT \(literal: limit)
                """
            ).all().map { row in
                StoredEvent(
                    seq: try row.decode(column: "seq", as: Int64.self),
                    event: SensorEvent(
                        sensor: sensor,
                        ts: Timestamp(microseconds: try row.decode(column: "ts_us", as: Int64.self)),
                        inCount: try row.decode(column: "in_count", as: Int64.self),
                        outCount: try row.decode(column: "out_count", as: Int64.self),
                        id: try row.decode(column: "event_id", as: String?.self)
                    ))
            }
        }
    }

    static func rollupColumns(_ level: RollupLevel) -> SQLQueryString {
        "sensor, \(unsafeRaw: level.column), entries, exits, balance_before, low, high, low_us, high_us, area"
    }

    static func rollup(_ row: any SQLRow, level: RollupLevel) throws -> Rollup {
        Rollup(
            start: try row.decode(column: level.column, as: Int64.self),
            length: level.length,
            entries: try row.decode(column: "entries", as: Int64.self),
            exits: try row.decode(column: "exits", as: Int64.self),
            balanceBefore: try row.decode(column: "balance_before", as: Int64.self),
            low: try row.decode(column: "low", as: Int64.self),
            high: try row.decode(column: "high", as: Int64.self),
            lowAt: try row.decode(column: "low_us", as: Int64.self),
            highAt: try row.decode(column: "high_us", as: Int64.self),
            area: try row.decode(column: "area", as: Double.self)
        )
    }
}

extension SensorsRepository {
    /// The sensors' gauges of `/metrics`.
    static func gauges(_ db: any SQLDatabase) async throws -> [Gauge] {
        var occupancy = Gauge("headcount_sensor_occupancy", "Occupancy of each sensor now (in minus out).")
        for row in try await db.raw("SELECT sensor, inside + adjustment AS inside FROM sensors").all() {
            occupancy.add(try row.decode(column: "inside", as: Int64.self), ("sensor", try row.decode(column: "sensor", as: String.self)))
        }
        return [occupancy]
    }
}
