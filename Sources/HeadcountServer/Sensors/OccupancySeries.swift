/// Occupancy over time in fixed UTC buckets, folded from the rollups of the coarsest level that fits them.
enum SeriesBucket: String, Sendable, CaseIterable {
    case fiveMinutes = "5m"
    case hour = "1h"
    case day = "1d"

    var length: Int64 {
        switch self {
        case .fiveMinutes: 5 * RollupLevel.minute.length
        case .hour: RollupLevel.hour.length
        case .day: RollupLevel.day.length
        }
    }

    /// The start of the bucket holding `microseconds`.
    func floor(_ microseconds: Int64) -> Int64 { Timestamp(microseconds: microseconds).floored(to: length) }
}

struct SeriesPoint: Encodable, Sendable, Equatable {
    let start: String
    let end: String
    let entries: Int64
    let exits: Int64
    /// Lowest, highest and closing occupancy in the bucket; the level carried in counts.
    let min: Int64
    let max: Int64
    let last: Int64

    /// Buckets from `from` (a bucket start) until `to`, given the occupancy just before `from` and
    /// the rollups in between (none straddling a bucket), oldest first. Buckets without events
    /// carry the level on.
    static func fold(from: Int64, to: Int64, bucket: SeriesBucket, opening: Int64, rows: [Rollup]) -> [SeriesPoint] {
        var points: [SeriesPoint] = []
        var level = opening
        var next = rows.makeIterator()
        var pending = next.next()
        var start = from
        while start < to {
            let end = start + bucket.length
            var (entries, exits, low, high) = (Int64(0), Int64(0), level, level)
            while let row = pending, row.start < end {
                entries += row.entries
                exits += row.exits
                low = Swift.min(low, row.balanceBefore + row.low)
                high = Swift.max(high, row.balanceBefore + row.high)
                level = row.balanceAfter
                pending = next.next()
            }
            points.append(
                SeriesPoint(
                    start: Timestamp(microseconds: start).rfc3339, end: Timestamp(microseconds: end).rfc3339,
                    entries: entries, exits: exits, min: low, max: high, last: level
                ))
            start = end
        }
        return points
    }
}
