import SQLKit
import Synchronization

/// On PostgreSQL, raw sensor events are partitioned by UTC month (`sensor_events_2026_12`), so a
/// month past the kept days is dropped whole (`dropMonths`, called by `SensorRetention`) and an
/// operator can detach one to archive it. A month's partition is made the first time an event of it is stored, with
/// the next month's ahead of it, for the months from `monthsBack` ago to `monthsAhead` ahead (so a
/// sender cannot make more); other events, and those of a month detached by hand, go to
/// `sensor_events_default`. SQLite keeps one table: the same answers without partitions.
final class SensorPartitions: Sendable {
    static let monthsBack = 60
    static let monthsAhead = 3
    /// Taken by whoever attaches or detaches a month, on any instance.
    static let lock: Int64 = 4_242_002
    let database: any Database
    /// The months (since January 1970) known to have a partition; nil until first read.
    private let known = Mutex<Set<Int>?>(nil)

    init(database: any Database) {
        self.database = database
    }

    /// Makes sure the months of `events` in the window, and the month after each, have partitions;
    /// called before the transaction that stores them.
    func prepare(for events: [SensorEvent]) async throws {
        guard database.engine == .postgres else { return }
        let now = Self.month(of: Timestamp.now().microseconds)
        let window = (now - Self.monthsBack)...(now + Self.monthsAhead)
        var wanted = Set<Int>()
        for event in events {
            let month = Self.month(of: event.ts.microseconds)
            for m in [month, month + 1] where window.contains(m) { wanted.insert(m) }
        }
        var known = self.known.withLock { $0 }
        if known == nil, !wanted.isEmpty {
            known = try await database.read { db in Set(try await Self.attached(db).map(\.month)) }
        }
        let missing = wanted.subtracting(known ?? [])
        for month in missing.sorted() { try await create(month) }
        self.known.withLock { $0 = (known ?? []).union(missing) }
    }

    /// Creates the month's partition, moving into it what the default partition holds of it,
    /// unless another instance made it first or a table of its name was detached.
    private func create(_ month: Int) async throws {
        let (name, start, end) = (Self.name(of: month), Self.start(of: month), Self.start(of: month + 1))
        let table: SQLQueryString = "\(unsafeRaw: name)"
        try await database.transaction { db in
            try await db.raw("SELECT pg_advisory_xact_lock(\(literal: Self.lock))").run()
            let exists = try await db.raw("SELECT to_regclass(\(bind: name)) IS NOT NULL AS found").first()?.decode(column: "found", as: Bool.self)
            guard exists == false else { return }
            // Made apart and attached, rather than `PARTITION OF`: attaching does not stop reads and
            // writes of the other months while it runs.
            try await db.raw("CREATE TABLE \(table) (LIKE sensor_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").run()
            let within: SQLQueryString = "ts_us >= \(literal: start) AND ts_us < \(literal: end)"
            try await db.raw("INSERT INTO \(table) SELECT * FROM sensor_events_default WHERE \(within)").run()
            try await db.raw("DELETE FROM sensor_events_default WHERE \(within)").run()
            try await db.raw("ALTER TABLE sensor_events ATTACH PARTITION \(table) FOR VALUES FROM (\(literal: start)) TO (\(literal: end))").run()
        }
    }

    /// Forgets the ids of events before the horizon (an event that old is refused before its id
    /// is looked at), at most `chunk` a transaction.
    static func forgetIDs(before horizon: Int64, chunk: Int, database: any Database) async throws {
        while true {
            let deleted = try await database.transaction { db in
                try await db.raw(
                    """
                    DELETE FROM sensor_event_ids WHERE ctid = ANY(ARRAY(
                        SELECT ctid FROM sensor_event_ids WHERE ts_us < \(bind: horizon) ORDER BY ts_us LIMIT \(literal: chunk)))
                    RETURNING 1 AS gone
                    """
                ).all().count
            }
            if deleted < chunk { return }
        }
    }

    /// Drops each month partition that ends before the horizon (`SensorRetention`), but for the
    /// events of its adjusted minutes, which move to the default partition; returns how many
    /// events went.
    static func dropMonths(before horizon: Int64, database: any Database) async throws -> Int {
        let old = try await database.read { db in try await attached(db) }.filter { start(of: $0.month + 1) <= horizon }
        var dropped = 0
        for (name, month) in old {
            let (start, end, table): (Int64, Int64, SQLQueryString) = (start(of: month), start(of: month + 1), "\(unsafeRaw: name)")
            dropped += try await database.transaction { db in
                try await db.raw("SELECT pg_advisory_xact_lock(\(literal: lock))").run()
                guard try await attached(db).contains(where: { $0.name == name }) else { return 0 }
                // The reading first: detaching locks every month until the commit, so it comes
                // last, with only quick steps after it, and gives up (to be tried again) rather than
                // stall the table behind a long read.
                let all = try await db.raw("SELECT COUNT(*) AS n FROM \(table)").first()?.decode(column: "n", as: Int.self) ?? 0
                try await db.raw(
                    """
                    CREATE TEMPORARY TABLE kept_events ON COMMIT DROP AS SELECT e.* FROM sensor_adjustments a JOIN \(table) e ON e.sensor = a.sensor
                        AND e.ts_us >= a.at_us - a.at_us % 60000000 AND e.ts_us < a.at_us - a.at_us % 60000000 + 60000000
                    WHERE a.at_us >= \(literal: start) AND a.at_us < \(literal: end)
                    """
                ).run()
                try await db.raw("SET LOCAL lock_timeout = '10s'").run()
                try await db.raw("ALTER TABLE sensor_events DETACH PARTITION \(table)").run()
                let kept = try await db.raw("INSERT INTO sensor_events SELECT DISTINCT * FROM kept_events RETURNING 1 AS kept").all().count
                try await db.raw("DROP TABLE \(table)").run()
                return all - kept
            }
        }
        return dropped
    }

    /// The month partitions attached now.
    static func attached(_ db: any SQLDatabase) async throws -> [(name: String, month: Int)] {
        try await db.raw(
            """
            SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'sensor_events'::regclass
            """
        ).all().compactMap { row in
            let name = try row.decode(column: "name", as: String.self)
            return month(named: name).map { (name, $0) }
        }
    }

    /// Months since January 1970 (negative before it).
    static func month(of microseconds: Int64) -> Int {
        let (year, month, _) = Timestamp.civilFromDays(Int(Timestamp(microseconds: microseconds).floored(to: RollupLevel.day.length) / RollupLevel.day.length))
        return (year - 1970) * 12 + month - 1
    }

    static func start(of month: Int) -> Int64 {
        let (year, index) = month.quotientAndRemainder(dividingBy: 12)
        let (y, m) = index < 0 ? (year - 1, index + 12) : (year, index)
        return Int64(Timestamp.daysFromCivil(year: 1970 + y, month: m + 1, day: 1)) * RollupLevel.day.length
    }

    static func name(of month: Int) -> String {
        let (year, index) = (1970 + Int((Double(month) / 12).rounded(.down)), ((month % 12) + 12) % 12 + 1)
        return "sensor_events_\(year)_\(index < 10 ? "0" : "")\(index)"
    }

    static func month(named name: String) -> Int? {
        let parts = name.split(separator: "_")
        guard parts.count == 4, name.hasPrefix("sensor_events_"), let year = Int(parts[2]), let month = Int(parts[3]), (1...12).contains(month) else { return nil }
        return (year - 1970) * 12 + month - 1
    }
}
