import SQLKit

/// A sensor a webhook batch changed: its occupancy now (with its adjustment), and what its alerts
/// and places need, read with its totals in the same statement: its thresholds, whether it has
/// an open alert, and the places it is a doorway between.
struct ChangedSensor: Sendable {
    let inside: Int64
    let thresholds: Thresholds?
    let alerted: Bool
    let places: [String]
}

extension SensorsRepository {
    /// Stores a batch of events in the caller's transaction and keeps every sensor's totals and
    /// minute, hour and day rollups current. Returns, per event, whether it was stored (false: its
    /// id was seen), and each sensor the batch changed.
    ///
    /// A batch costs two round trips however many events and sensors it holds, when the events
    /// arrive in time order (the events, the totals); its rollups, a statement per level, go to
    /// `changes.write`, which runs them with the outbox's at the end (one round trip on
    /// PostgreSQL). A late event also rewrites its minute, hour and day and shifts the rows after
    /// them, there and then.
    static func ingest(_ events: [SensorEvent], db: any SQLDatabase, changes: Changes) async throws -> (accepted: [Bool], changed: [String: ChangedSensor]) {
        // The first of each (sensor, id) in the batch is a candidate; the database decides the rest.
        // Inserting in (sensor, id) order keeps concurrent batches from deadlocking on the unique index.
        var seen = Set<[String]>()
        let candidates = events.indices
            .filter { i in events[i].id.map { seen.insert([events[i].sensor, $0]).inserted } ?? true }
            .sorted { (events[$0].sensor, events[$0].id ?? "", $0) < (events[$1].sensor, events[$1].id ?? "", $1) }
        let storedIDs = try await insert(candidates.map { events[$0] }, db: db)
        var accepted = Array(repeating: false, count: events.count)
        for i in candidates where events[i].id.map({ storedIDs.contains([events[i].sensor, $0]) }) ?? true {
            accepted[i] = true
        }

        // Stable sort by time: events at the same instant keep their arrival order.
        let bySensor = Dictionary(grouping: events.indices.filter { accepted[$0] }.map { events[$0] }, by: \.sensor)
            .mapValues { $0.enumerated().sorted { ($0.element.ts, $0.offset) < ($1.element.ts, $1.offset) }.map(\.element) }
        guard !bySensor.isEmpty else { return (accepted, [:]) }
        let totals = try await applyTotals(bySensor, db: db)

        var inOrder: [(events: [SensorEvent], insideBefore: Int64)] = []
        var changed: [String: ChangedSensor] = [:]
        for (sensor, total) in totals {
            // Events before the latest adjustment raise the raw count at it: its offset falls by as much.
            var offset = total.adjustment
            if let at = total.adjustedAt {
                let late = bySensor[sensor]!.filter { $0.ts.microseconds <= at }.reduce(Int64(0)) { $0 + $1.net }
                if late != 0 {
                    offset -= late
                    try await db.raw("UPDATE sensors SET adjustment = \(bind: offset) WHERE sensor = \(bind: sensor)").run()
                }
            }
            changed[sensor] = ChangedSensor(inside: total.inside + offset, thresholds: total.thresholds, alerted: total.alerted, places: total.places)
            let batch = bySensor[sensor]!
            if let prior = total.priorLast, batch[0].ts.microseconds < prior {
                try await repairRollups(sensor: sensor, late: batch, db: db)
            } else {
                inOrder.append((batch, total.inside - batch.reduce(0) { $0 + $1.net }))
            }
        }
        changes.write(appendedRollups(inOrder, db: db))
        return (accepted, changed)
    }

    /// Inserts events, ignoring those whose (sensor, id) is already stored; returns the ids stored.
    private static func insert(_ events: [SensorEvent], db: any SQLDatabase) async throws -> Set<[String]> {
        let received = Timestamp.now().microseconds
        // On PostgreSQL ids are kept apart (`SensorPartitions`): claimed there first, and only the
        // events whose ids were new are stored.
        let idsApart = db.dialect.name == "postgresql"
        var stored = Set<[String]>()
        for part in events.chunks(of: 500) {
            var chunk = Array(part)
            if idsApart, chunk.contains(where: { $0.id != nil }) {
                var ids = BulkRows(["sensor": .text, "event_id": .text, "ts_us": .integer])
                for e in chunk { if let id = e.id { ids.append(.text(e.sensor), .text(id), .integer(e.ts.microseconds)) } }
                let claimed = Set(
                    try await db.raw(
                        """
                        INSERT INTO sensor_event_ids (sensor, event_id, ts_us) SELECT k.sensor, k.event_id, k.ts_us FROM \(ids.table("k", in: db))
                        ON CONFLICT (sensor, event_id) DO NOTHING RETURNING sensor, event_id
                        """
                    ).all().map { [try $0.decode(column: "sensor", as: String.self), try $0.decode(column: "event_id", as: String.self)] })
                stored.formUnion(claimed)
                chunk.removeAll { e in e.id.map { !claimed.contains([e.sensor, $0]) } ?? false }
                if chunk.isEmpty { continue }
            }
            var rows = BulkRows(["sensor": .text, "ts_us": .integer, "in_count": .integer, "out_count": .integer, "event_id": .text])
            for e in chunk { rows.append(.text(e.sensor), .integer(e.ts.microseconds), .integer(e.inCount), .integer(e.outCount), e.id.map { .text($0) }) }
            // `WHERE true` tells SQLite's parser that an `ON CONFLICT` after it is the upsert's.
            var query: SQLQueryString = """
                INSERT INTO sensor_events (sensor, ts_us, in_count, out_count, event_id, received_us)
                SELECT k.sensor, k.ts_us, k.in_count, k.out_count, k.event_id, \(bind: received) FROM \(rows.table("k", in: db)) WHERE true
                """
            // Only events with ids can be duplicates; without any, there is nothing to read back.
            guard !idsApart, chunk.contains(where: { $0.id != nil }) else {
                try await db.raw(query).run()
                continue
            }
            query += " ON CONFLICT (sensor, event_id) DO NOTHING RETURNING sensor, event_id"
            for row in try await db.raw(query).all() {
                if let id = try row.decode(column: "event_id", as: String?.self) {
                    stored.insert([try row.decode(column: "sensor", as: String.self), id])
                }
            }
        }
        return stored
    }

    /// Adds each sensor's events to its totals, creating new sensors; locks the rows, in name order.
    /// Returns each sensor's occupancy now, the latest event time before this batch, its
    /// adjustment, and what `ChangedSensor` holds besides (one statement for all of it).
    private static func applyTotals(
        _ bySensor: [String: [SensorEvent]], db: any SQLDatabase
    ) async throws -> [(String, Totals)] {
        let now = Timestamp.now().microseconds
        var rows = BulkRows(["sensor": .text, "entries": .integer, "exits": .integer, "events": .integer, "last_ts_us": .integer])
        for sensor in bySensor.keys.sorted() {
            let batch = bySensor[sensor]!
            let entries = batch.reduce(0) { $0 + $1.inCount }, exits = batch.reduce(0) { $0 + $1.outCount }
            rows.append(.text(sensor), .integer(entries), .integer(exits), .integer(Int64(batch.count)), .integer(batch.last!.ts.microseconds))
        }
        return try await db.raw(
            """
            INSERT INTO sensors (sensor, inside, entries, exits, events, last_ts_us, prior_last_ts_us, received_us)
            SELECT k.sensor, k.entries - k.exits, k.entries, k.exits, k.events, k.last_ts_us, NULL, \(bind: now) FROM \(rows.table("k", in: db)) WHERE true
            ON CONFLICT (sensor) DO UPDATE SET
                inside = sensors.inside + excluded.inside,
                entries = sensors.entries + excluded.entries,
                exits = sensors.exits + excluded.exits,
                events = sensors.events + excluded.events,
                prior_last_ts_us = sensors.last_ts_us,
                received_us = excluded.received_us,
                last_ts_us = CASE WHEN excluded.last_ts_us > sensors.last_ts_us THEN excluded.last_ts_us ELSE sensors.last_ts_us END
            RETURNING sensor, inside, prior_last_ts_us, adjustment, adjusted_us,
                (SELECT capacity FROM sensor_settings s WHERE s.sensor = sensors.sensor) AS capacity,
                (SELECT warn_percent FROM sensor_settings s WHERE s.sensor = sensors.sensor) AS warn_percent,
                (SELECT critical_percent FROM sensor_settings s WHERE s.sensor = sensors.sensor) AS critical_percent,
                CASE WHEN EXISTS (SELECT 1 FROM alerts a WHERE a.subject = 'sensor' AND a.subject_id = sensors.sensor AND a.cleared_us IS NULL)
                    THEN 1 ELSE 0 END AS alerted,
                (SELECT from_place FROM place_doorways d WHERE d.sensor = sensors.sensor) AS from_place,
                (SELECT to_place FROM place_doorways d WHERE d.sensor = sensors.sensor) AS to_place
            """
        ).all().map { row in
            let capacity = try row.decode(column: "capacity", as: Int64?.self)
            return (
                try row.decode(column: "sensor", as: String.self),
                Totals(
                    inside: try row.decode(column: "inside", as: Int64.self), priorLast: try row.decode(column: "prior_last_ts_us", as: Int64?.self),
                    adjustment: try row.decode(column: "adjustment", as: Int64.self), adjustedAt: try row.decode(column: "adjusted_us", as: Int64?.self),
                    thresholds: try capacity.map {
                        Thresholds(
                            capacity: $0, warnPercent: try row.decode(column: "warn_percent", as: Int64.self),
                            criticalPercent: try row.decode(column: "critical_percent", as: Int64.self))
                    },
                    alerted: try row.decode(column: "alerted", as: Int.self) == 1,
                    places: [try row.decode(column: "from_place", as: String?.self), try row.decode(column: "to_place", as: String?.self)].compactMap { $0 })
            )
        }
    }

    /// A sensor's totals row after a batch, with what `applyTotals` reads beside it.
    private struct Totals {
        let inside: Int64
        let priorLast: Int64?
        let adjustment: Int64
        let adjustedAt: Int64?
        let thresholds: Thresholds?
        let alerted: Bool
        let places: [String]
    }

    /// The statements that roll events coming after everything stored into minutes, hours and
    /// days, one a level: a row already stored is continued (its counts and area added, its low
    /// and high widened from where it ended), later rows start from the occupancy before the
    /// batch. Nothing else in the batch's transaction reads these rows.
    private static func appendedRollups(_ sensors: [(events: [SensorEvent], insideBefore: Int64)], db: any SQLDatabase) -> [SQLQueryString] {
        RollupLevel.allCases.flatMap { level in
            let rows = sensors.flatMap { s in
                Rollup.rolling(s.events, from: s.insideBefore, level: level).map { (s.events[0].sensor, $0) }
            }
            let t = level.table
            return upserts(
                rows, level: level,
                onConflict: """
                    entries = \(unsafeRaw: t).entries + excluded.entries,
                    exits = \(unsafeRaw: t).exits + excluded.exits,
                    low = CASE WHEN \(unsafeRaw: t).entries - \(unsafeRaw: t).exits + excluded.low < \(unsafeRaw: t).low
                        THEN \(unsafeRaw: t).entries - \(unsafeRaw: t).exits + excluded.low ELSE \(unsafeRaw: t).low END,
                    high = CASE WHEN \(unsafeRaw: t).entries - \(unsafeRaw: t).exits + excluded.high > \(unsafeRaw: t).high
                        THEN \(unsafeRaw: t).entries - \(unsafeRaw: t).exits + excluded.high ELSE \(unsafeRaw: t).high END,
                    low_us = CASE WHEN \(unsafeRaw: t).entries - \(unsafeRaw: t).exits + excluded.low < \(unsafeRaw: t).low
                        THEN excluded.low_us ELSE \(unsafeRaw: t).low_us END,
                    high_us = CASE WHEN \(unsafeRaw: t).entries - \(unsafeRaw: t).exits + excluded.high > \(unsafeRaw: t).high
                        THEN excluded.high_us ELSE \(unsafeRaw: t).high_us END,
                    area = \(unsafeRaw: t).area + excluded.area
                    """, db: db)
        }
    }

    /// Brings the rows of late events up to date: each touched minute is recomputed from its events
    /// (few: one minute's worth), each touched hour from its minutes and each day from its hours,
    /// and the rows after each shift by its change. The sensor's `revisions` says its past changed.
    private static func repairRollups(sensor: String, late events: [SensorEvent], db: any SQLDatabase) async throws {
        try await db.raw("UPDATE sensors SET revisions = revisions + 1 WHERE sensor = \(bind: sensor)").run()
        for level in RollupLevel.allCases {
            let changes = Dictionary(grouping: events, by: { level.start(of: $0.ts.microseconds) }).mapValues { $0.reduce(0) { $0 + $1.net } }
            for (start, net) in changes.sorted(by: { $0.key < $1.key }) {
                let end = start + level.length
                let row: Rollup
                if let finer = level.finer {
                    let (_, rows) = try await rollups(sensor: sensor, level: finer, from: start, to: end, db: db)
                    row = Rollup.combining(rows, into: level, start: start)
                } else {
                    let previous = try await db.raw(
                        """
                        SELECT \(Self.rollupColumns(.minute)) FROM sensor_minutes
                        WHERE sensor = \(bind: sensor) AND minute_us <= \(bind: start) ORDER BY minute_us DESC LIMIT 1
                        """
                    ).first().map { try Self.rollup($0, level: .minute) }
                    var minute = Rollup(start: start, length: level.length, balanceBefore: previous.map { $0.start == start ? $0.balanceBefore : $0.balanceAfter } ?? 0)
                    for event in try await db.raw(
                        """
                        SELECT ts_us, in_count, out_count FROM sensor_events
                        WHERE sensor = \(bind: sensor) AND ts_us >= \(bind: start) AND ts_us < \(bind: end)
                        ORDER BY ts_us, seq
                        """
                    ).all() {
                        minute.apply(
                            in: try event.decode(column: "in_count", as: Int64.self), out: try event.decode(column: "out_count", as: Int64.self),
                            at: try event.decode(column: "ts_us", as: Int64.self))
                    }
                    row = minute
                }
                try await db.runTogether(
                    upserts(
                        [(sensor, row)], level: level,
                        onConflict: """
                            entries = excluded.entries, exits = excluded.exits, balance_before = excluded.balance_before,
                            low = excluded.low, high = excluded.high, low_us = excluded.low_us, high_us = excluded.high_us, area = excluded.area
                            """, db: db))
                if net != 0 {
                    try await db.raw(
                        """
                        UPDATE \(unsafeRaw: level.table) SET balance_before = balance_before + \(bind: net)
                        WHERE sensor = \(bind: sensor) AND \(unsafeRaw: level.column) > \(bind: start)
                        """
                    ).run()
                }
            }
        }
    }

    /// The statement that inserts rows of a level (none for no rows); `onConflict` says how a row
    /// already stored takes the new one.
    private static func upserts(_ rows: [(String, Rollup)], level: RollupLevel, onConflict: SQLQueryString, db: any SQLDatabase) -> [SQLQueryString] {
        guard !rows.isEmpty else { return [] }
        var table = BulkRows([
            "sensor": .text, "start": .integer, "entries": .integer, "exits": .integer, "balance_before": .integer, "low": .integer, "high": .integer,
            "low_us": .integer, "high_us": .integer, "area": .real,
        ])
        for (sensor, m) in rows {
            table.append(
                .text(sensor), .integer(m.start), .integer(m.entries), .integer(m.exits), .integer(m.balanceBefore), .integer(m.low), .integer(m.high),
                .integer(m.lowAt), .integer(m.highAt), .real(m.area))
        }
        return [
            """
            INSERT INTO \(unsafeRaw: level.table) (\(rollupColumns(level)))
            SELECT k.sensor, k.start, k.entries, k.exits, k.balance_before, k.low, k.high, k.low_us, k.high_us, k.area FROM \(table.table("k", in: db)) WHERE true
            ON CONFLICT (sensor, \(unsafeRaw: level.column)) DO UPDATE SET \(onConflict)
            """
        ]
    }
}
