import SQLKit

extension SensorsRepository {
    /// Stores a batch of events in the caller's transaction and keeps every sensor's totals and
    /// minute rollups current. Returns, per event, whether it was stored (false: its id was seen),
    /// and the occupancy of each sensor the batch changed (with its adjustment).
    ///
    /// A batch costs three statements however many events and sensors it holds, when the events
    /// arrive in time order; a late event also rewrites its minute and shifts the minutes after it.
    static func ingest(_ events: [SensorEvent], db: any SQLDatabase) async throws -> (accepted: [Bool], inside: [String: Int64]) {
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
        var adjusted: [String: Int64] = [:]
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
            adjusted[sensor] = total.inside + offset
            let batch = bySensor[sensor]!
            if let prior = total.priorLast, batch[0].ts.microseconds < prior {
                try await repairMinutes(sensor: sensor, late: batch, db: db)
            } else {
                inOrder.append((batch, total.inside - batch.reduce(0) { $0 + $1.net }))
            }
        }
        try await appendMinutes(inOrder, db: db)
        return (accepted, adjusted)
    }

    /// Inserts events, ignoring those whose (sensor, id) is already stored; returns the ids stored.
    private static func insert(_ events: [SensorEvent], db: any SQLDatabase) async throws -> Set<[String]> {
        let received = Timestamp.now().microseconds
        var stored = Set<[String]>()
        for chunk in events.chunks(of: 500) {
            let rows = chunk.map { e -> SQLQueryString in
                "(\(bind: e.sensor), \(bind: e.ts.microseconds), \(bind: e.inCount), \(bind: e.outCount), \(bind: e.id), \(bind: received))"
            }
            var query: SQLQueryString = """
                INSERT INTO sensor_events (sensor, ts_us, in_count, out_count, event_id, received_us)
                VALUES \(rows.joined(separator: ", "))
                """
            // Only events with ids can be duplicates; without any, there is nothing to read back.
            guard chunk.contains(where: { $0.id != nil }) else {
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
    /// Returns each sensor's occupancy now and the latest event time before this batch.
    private static func applyTotals(
        _ bySensor: [String: [SensorEvent]], db: any SQLDatabase
    ) async throws -> [(String, (inside: Int64, priorLast: Int64?, adjustment: Int64, adjustedAt: Int64?))] {
        let now = Timestamp.now().microseconds
        let rows = bySensor.keys.sorted().map { sensor -> SQLQueryString in
            let batch = bySensor[sensor]!
            let entries = batch.reduce(0) { $0 + $1.inCount }, exits = batch.reduce(0) { $0 + $1.outCount }
            let last = batch.last!.ts.microseconds
            return "(\(bind: sensor), \(bind: entries - exits), \(bind: entries), \(bind: exits), \(bind: Int64(batch.count)), \(bind: last), NULL, \(bind: now))"
        }
        return try await db.raw(
            """
            INSERT INTO sensors (sensor, inside, entries, exits, events, last_ts_us, prior_last_ts_us, received_us)
            VALUES \(rows.joined(separator: ", "))
            ON CONFLICT (sensor) DO UPDATE SET
                inside = sensors.inside + excluded.inside,
                entries = sensors.entries + excluded.entries,
                exits = sensors.exits + excluded.exits,
                events = sensors.events + excluded.events,
                prior_last_ts_us = sensors.last_ts_us,
                received_us = excluded.received_us,
                last_ts_us = CASE WHEN excluded.last_ts_us > sensors.last_ts_us THEN excluded.last_ts_us ELSE sensors.last_ts_us END
            RETURNING sensor, inside, prior_last_ts_us, adjustment, adjusted_us
            """
        ).all().map { row in
            (
                try row.decode(column: "sensor", as: String.self),
                (
                    try row.decode(column: "inside", as: Int64.self), try row.decode(column: "prior_last_ts_us", as: Int64?.self),
                    try row.decode(column: "adjustment", as: Int64.self), try row.decode(column: "adjusted_us", as: Int64?.self)
                )
            )
        }
    }

    /// Rolls events that come after everything stored into minutes, in one statement: a minute
    /// already stored is continued (its counts added, its low and high widened from where it
    /// ended), later minutes start from the occupancy before the batch.
    private static func appendMinutes(_ sensors: [(events: [SensorEvent], insideBefore: Int64)], db: any SQLDatabase) async throws {
        let rows = sensors.flatMap { s in
            MinuteRollup.rolling(s.events, from: s.insideBefore).map { (s.events[0].sensor, $0) }
        }
        try await upsertMinutes(
            rows, db: db,
            onConflict: """
                entries = sensor_minutes.entries + excluded.entries,
                exits = sensor_minutes.exits + excluded.exits,
                low = CASE WHEN sensor_minutes.entries - sensor_minutes.exits + excluded.low < sensor_minutes.low
                    THEN sensor_minutes.entries - sensor_minutes.exits + excluded.low ELSE sensor_minutes.low END,
                high = CASE WHEN sensor_minutes.entries - sensor_minutes.exits + excluded.high > sensor_minutes.high
                    THEN sensor_minutes.entries - sensor_minutes.exits + excluded.high ELSE sensor_minutes.high END
                """)
    }

    /// Brings the minutes of late events up to date: each touched minute is recomputed from its
    /// events (few: one minute's worth) and the minutes after it shift by its change.
    private static func repairMinutes(sensor: String, late events: [SensorEvent], db: any SQLDatabase) async throws {
        let changes = Dictionary(grouping: events, by: { MinuteRollup.minute(of: $0.ts) }).mapValues { $0.reduce(0) { $0 + $1.net } }
        for (minute, net) in changes.sorted(by: { $0.key < $1.key }) {
            let previous = try await db.raw(
                """
                SELECT minute_us, entries, exits, balance_before, low, high FROM sensor_minutes
                WHERE sensor = \(bind: sensor) AND minute_us <= \(bind: minute) ORDER BY minute_us DESC LIMIT 1
                """
            ).first().map(minuteRollup)
            let before = previous.map { $0.minute == minute ? $0.balanceBefore : $0.balanceAfter } ?? 0
            var row = MinuteRollup(minute: minute, balanceBefore: before)
            for event in try await db.raw(
                """
                SELECT in_count, out_count FROM sensor_events
                WHERE sensor = \(bind: sensor) AND ts_us >= \(bind: minute) AND ts_us < \(bind: minute + MinuteRollup.length)
                ORDER BY ts_us, seq
                """
            ).all() {
                row.apply(in: try event.decode(column: "in_count", as: Int64.self), out: try event.decode(column: "out_count", as: Int64.self))
            }
            try await upsertMinutes(
                [(sensor, row)], db: db,
                onConflict: """
                    entries = excluded.entries, exits = excluded.exits, balance_before = excluded.balance_before,
                    low = excluded.low, high = excluded.high
                    """)
            if net != 0 {
                try await db.raw(
                    """
                    UPDATE sensor_minutes SET balance_before = balance_before + \(bind: net)
                    WHERE sensor = \(bind: sensor) AND minute_us > \(bind: minute)
                    """
                ).run()
            }
        }
    }

    /// Inserts minute rows; `onConflict` says how a row already stored takes the new one.
    private static func upsertMinutes(_ rows: [(String, MinuteRollup)], db: any SQLDatabase, onConflict: SQLQueryString) async throws {
        for chunk in rows.chunks(of: 500) {
            let values = chunk.map { sensor, m -> SQLQueryString in
                "(\(bind: sensor), \(bind: m.minute), \(bind: m.entries), \(bind: m.exits), \(bind: m.balanceBefore), \(bind: m.low), \(bind: m.high))"
            }
            try await db.raw(
                """
                INSERT INTO sensor_minutes (sensor, minute_us, entries, exits, balance_before, low, high)
                VALUES \(values.joined(separator: ", "))
                ON CONFLICT (sensor, minute_us) DO UPDATE SET \(onConflict)
                """
            ).run()
        }
    }
}
