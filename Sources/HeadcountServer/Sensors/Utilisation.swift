import SQLKit

/// How full a sensor's space was over one bucket: lowest, time-weighted average and highest
/// occupancy, and when it peaked. Folded from rollup rows, never from events.
struct Usage: Sendable, Equatable {
    var min: Int64
    var peak: Int64
    var peakAt: Int64
    /// Person-seconds over the span measured.
    var area: Double
    /// Microseconds measured: the bucket, or its part before now for the bucket in progress.
    var span: Int64

    var average: Double { span > 0 ? area / (Double(span) / 1e6) : Double(min) }

    /// The usage of each bucket between consecutive `boundaries`, given the occupancy before the
    /// first and the rows after it (oldest first, none straddling a boundary); nil for a bucket
    /// that starts at or after `now`. A bucket in progress is measured until now.
    static func fold(boundaries: [Int64], opening: Int64, rows: [Rollup], now: Int64) -> [Usage?] {
        var result: [Usage?] = []
        var level = opening
        var next = 0
        for (start, end) in zip(boundaries, boundaries.dropFirst()) {
            let cut = Swift.min(end, now)
            var usage = Usage(min: level, peak: level, peakAt: start, area: 0, span: Swift.max(0, cut - start))
            var t = start
            while next < rows.count, rows[next].start < end {
                let row = rows[next]
                next += 1
                guard row.start < cut else {
                    // A row after now (a sensor whose clock runs fast): the time until now is at
                    // the level before it.
                    if cut > t { usage.area += Double(level) * Double(cut - t) / 1e6 }
                    (t, level) = (Swift.max(t, row.end), row.balanceAfter)
                    continue
                }
                usage.area += Double(level) * Double(row.start - t) / 1e6
                // A row may open on a new level: an adjustment took effect there.
                usage.min = Swift.min(usage.min, row.balanceBefore + row.low)
                if row.balanceBefore + row.high > usage.peak { (usage.peak, usage.peakAt) = (row.balanceBefore + row.high, row.highAt) }
                usage.area += Double(row.balanceBefore) * Double(row.length) / 1e6 + row.area
                // Now falls inside the row: take off the part after now, at the level it closed on.
                if row.end > cut { usage.area -= Double(row.balanceAfter) * Double(row.end - cut) / 1e6 }
                (t, level) = (row.end, row.balanceAfter)
            }
            if cut > t { usage.area += Double(level) * Double(cut - t) / 1e6 }
            result.append(start < now ? usage : nil)
        }
        return result
    }
}

extension SensorsRepository {
    /// The coarsest level whose rows never straddle one of `boundaries`.
    static func level(for boundaries: [Int64]) -> RollupLevel {
        RollupLevel.allCases.reversed().first { level in boundaries.allSatisfy { level.start(of: $0) == $0 } } ?? .minute
    }

    /// A sensor's adjusted rows for a report from `boundaries.first` to `boundaries.last`, read in
    /// one transaction: rows of the coarsest level that fits the boundaries, with a row that holds
    /// an adjustment (other than at its start) replaced by its minutes, so the level moves there.
    /// A 422 when rows of that level were dropped from before the start (`KeptDetail`).
    func usageRows(sensor: String, boundaries: [Int64]) async throws -> (opening: Int64, rows: [Rollup]) {
        let (start, end) = (boundaries.first!, boundaries.last!)
        let level = Self.level(for: boundaries)
        return try await database.read { db in
            try await Self.checkKept(sensor: sensor, level: level, from: start, db: db)
            var (opening, rows) = try await cachedRollups(sensor: sensor, level: level, from: start, to: end, db: db)
            let offsets = try await Self.offsets(sensor: sensor, from: start, to: end, db: db)
            let split = Set(offsets.changes.map(\.at).filter { RollupLevel.minute.start(of: $0) != level.start(of: $0) }.map { level.start(of: $0) })
            if !split.isEmpty {
                rows.removeAll { split.contains($0.start) }
                for row in split {
                    rows += try await Self.rollups(sensor: sensor, level: .minute, from: row, to: row + level.length, db: db).rows
                }
                rows.sort { $0.start < $1.start }
            }
            let adjustedRows = adjusted(opening: opening, rows: rows, openingOffset: offsets.opening, changes: offsets.changes)
            opening = adjustedRows.opening
            return (opening, adjustedRows.rows)
        }
    }
}
