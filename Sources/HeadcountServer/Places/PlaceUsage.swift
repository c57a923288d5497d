/// A place's utilisation: the count of its doorways (each sensor signed by whether it leads in or
/// out), as rows folded like one sensor's. A row of one doorway moves the place alone; where two
/// doorways have rows over the same span, those rows are replaced by their finer rows (days by
/// hours, hours by minutes) until none overlap, so the lowest and peak stay exact to the minute.
/// Within a minute in which two doorways both counted, they are bounds: the sum of the doorways'
/// extremes; so are they past `maxRefinedRows` finer rows read for one answer (a busy place over
/// years), and where a doorway's finer rows were dropped (`KeptDetail`). The average is exact at
/// any level (areas add).
extension PlacesRepository {
    static let maxRefinedRows = 200_000

    /// The usage of each bucket between `boundaries`; nil for a bucket not yet started.
    func usage(of tree: Subtree, boundaries: [Int64], now: Int64) async throws -> [Usage?] {
        let sensors = SensorsRepository(database: database)
        var sources: [(sensor: String, sign: Int64, opening: Int64, kept: KeptDetail)] = []
        var rows: [(source: Int, row: Rollup)] = []
        for doorway in tree.doorways.sorted(by: { $0.sensor < $1.sensor }) {
            let sign = doorway.sign(into: tree.places)
            guard sign != 0, try await sensors.inside(sensor: doorway.sensor) != nil else { continue }
            let (opening, sensorRows) = try await sensors.usageRows(sensor: doorway.sensor, boundaries: boundaries)
            let kept = try await sensors.database.read { db in try await SensorsRepository.kept(sensor: doorway.sensor, db: db) }
            rows += sensorRows.map { (sources.count, $0) }
            sources.append((doorway.sensor, sign, opening, kept ?? KeptDetail()))
        }
        rows.sort { ($0.row.start, $0.source) < ($1.row.start, $1.source) }
        // Refine overlapping rows a level at a time, one query per doorway and level, reading at
        // most `maxRefinedRows` finer rows in all: past that, what still overlaps merges as bounds.
        var refined = 0
        refining: while true {
            // A row is refined only where its doorway still keeps the finer rows.
            let contended = Self.overlapping(rows).filter { i in
                let (row, kept) = (rows[i].row, sources[rows[i].source].kept)
                return row.length > RollupLevel.minute.length && kept.from(RollupLevel(length: row.length)!.finer!).map { row.start >= $0 } ?? true
            }
            guard !contended.isEmpty else { break }
            var (finer, replaced): ([(source: Int, row: Rollup)], Set<Int>) = ([], [])
            defer {
                rows = (rows.indices.filter { !replaced.contains($0) }.map { rows[$0] } + finer).sorted { ($0.row.start, $0.source) < ($1.row.start, $1.source) }
            }
            for (key, indices) in Dictionary(grouping: contended, by: { [rows[$0].source, Int(rows[$0].row.length)] }) {
                let (source, level) = (key[0], RollupLevel(length: Int64(key[1]))!.finer!)
                let (parents, sensor) = (indices.map { rows[$0].row }.sorted { $0.start < $1.start }, sources[source].sensor)
                // Past the limit, what still overlaps merges as bounds.
                refined += parents.reduce(0) { $0 + Int($1.length / level.length) }
                guard refined <= Self.maxRefinedRows else { break refining }
                // One query per run of adjacent parents.
                var runs: [Range<Int64>] = []
                for parent in parents {
                    if let last = runs.last, last.upperBound == parent.start { runs[runs.count - 1] = last.lowerBound..<parent.end } else { runs.append(parent.start..<parent.end) }
                }
                var raw: [Rollup] = []
                for run in runs {
                    raw += try await sensors.database.read { db in
                        try await SensorsRepository.rollups(sensor: sensor, level: level, from: run.lowerBound, to: run.upperBound, db: db).rows
                    }
                }
                var next = 0
                for parent in parents {
                    while next < raw.count, raw[next].start < parent.start { next += 1 }
                    let first = next
                    while next < raw.count, raw[next].start < parent.end { next += 1 }
                    // The parent carries its adjustment: its children shift by as much.
                    let shift = first < next ? parent.balanceBefore - raw[first].balanceBefore : 0
                    finer += raw[first..<next].map { child in
                        var shifted = child
                        shifted.balanceBefore += shift
                        return (source, shifted)
                    }
                }
                replaced.formUnion(indices)
            }
        }
        var levels = sources.map(\.opening)
        let opening = zip(sources, levels).reduce(Int64(0)) { $0 + $1.0.sign * $1.1 }
        var merged: [Rollup] = []
        var i = 0
        while i < rows.count {
            var j = i + 1
            while j < rows.count, rows[j].row.start == rows[i].row.start { j += 1 }
            var total = zip(sources, levels).reduce(Int64(0)) { $0 + $1.0.sign * $1.1 }
            var row = Rollup(start: rows[i].row.start, length: rows[i].row.length, balanceBefore: 0)
            for (source, sourceRow) in rows[i..<j] {
                let signed = Self.signed(sourceRow, sources[source].sign)
                total += signed.balanceBefore - sources[source].sign * levels[source]
                row.entries += signed.entries
                row.exits += signed.exits
                row.area += signed.area
                if signed.low < 0 { (row.low, row.lowAt) = (row.low + signed.low, signed.lowAt) }
                if signed.high > 0 { (row.high, row.highAt) = (row.high + signed.high, signed.highAt) }
                levels[source] = sourceRow.balanceAfter
            }
            row.balanceBefore = total
            merged.append(row)
            i = j
        }
        return Usage.fold(boundaries: boundaries, opening: opening, rows: merged, now: now)
    }

    /// Whether anyone was in the subtree during [from, to): its doorways counted someone (to the
    /// minute), someone the families name was there at `from` (reservation holders aside: a
    /// booking is not a presence), or someone arrived (an attendance entry, an event check-in, a
    /// room registration).
    func sawPresence(in tree: Subtree, from: Int64, to: Int64, now: Int64) async throws -> Bool {
        let minute = RollupLevel.minute
        let bounds = [minute.start(of: from), minute.start(of: to - 1) + minute.length]
        do {
            if let usage = try await usage(of: tree, boundaries: bounds, now: now).first, let usage, usage.peak > 0 { return true }
        } catch let error as APIError where error.status == .unprocessableContent {
            // A doorway's minute rows of that time were dropped: its sensor cannot tell; the rest may.
        }
        if try await named(in: tree, at: Timestamp(microseconds: from), holders: false).contains(where: { $0.closedAt == nil }) { return true }
        let linked = Dictionary(grouping: tree.links, by: \.kind).mapValues { $0.map(\.id) }
        return try await database.read { db in
            for devices in (linked[.attendanceDevice] ?? []).chunks(of: 500) {
                let entry = try await db.raw(
                    """
                    SELECT 1 AS found FROM attendance_records WHERE device_id IN (\(binds: Array(devices))) AND type = 'ENTRY' AND deleted_us IS NULL
                        AND timestamp_ms >= \(bind: from / 1000) AND timestamp_ms < \(bind: to / 1000) LIMIT 1
                    """
                ).first()
                if entry != nil { return true }
            }
            for events in (linked[.event] ?? []).chunks(of: 500) {
                let checkIn = try await db.raw(
                    """
                    SELECT 1 AS found FROM event_checkins WHERE event_id IN (\(binds: Array(events))) AND type = 'entry'
                        AND at_us >= \(bind: from) AND at_us < \(bind: to) LIMIT 1
                    """
                ).first()
                if checkIn != nil { return true }
            }
            for rooms in (linked[.room] ?? []).chunks(of: 500) {
                let registration = try await db.raw(
                    """
                    SELECT 1 AS found FROM room_actions WHERE room IN (\(binds: Array(rooms))) AND action = 'register'
                        AND at_us >= \(bind: from) AND at_us < \(bind: to) LIMIT 1
                    """
                ).first()
                if registration != nil { return true }
            }
            return false
        }
    }

    /// The indices of rows that overlap another row (rows sorted by start).
    private static func overlapping(_ rows: [(source: Int, row: Rollup)]) -> [Int] {
        var result: [Int] = []
        var i = 0
        while i < rows.count {
            var (j, end) = (i + 1, rows[i].row.end)
            while j < rows.count, rows[j].row.start < end {
                end = max(end, rows[j].row.end)
                j += 1
            }
            if j - i > 1 { result += i..<j }
            i = j
        }
        return result
    }

    /// A doorway's row as the place sees it: leading out, its entries leave.
    private static func signed(_ row: Rollup, _ sign: Int64) -> Rollup {
        guard sign < 0 else { return row }
        return Rollup(
            start: row.start, length: row.length, entries: row.exits, exits: row.entries, balanceBefore: -row.balanceBefore,
            low: -row.high, high: -row.low, lowAt: row.highAt, highAt: row.lowAt, area: -row.area)
    }
}
