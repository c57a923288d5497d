/// The lengths a sensor's events are summed over, each kept in its own table, in UTC.
enum RollupLevel: Int, Sendable, CaseIterable {
    case minute, hour, day

    var length: Int64 {
        switch self {
        case .minute: 60_000_000
        case .hour: 3_600_000_000
        case .day: 86_400_000_000
        }
    }

    var table: String {
        switch self {
        case .minute: "sensor_minutes"
        case .hour: "sensor_hours"
        case .day: "sensor_days"
        }
    }

    /// The column holding a row's start (the minutes' predates the other levels).
    var column: String { self == .minute ? "minute_us" : "start_us" }

    /// The level whose rows are `length` long.
    init?(length: Int64) {
        guard let level = Self.allCases.first(where: { $0.length == length }) else { return nil }
        self = level
    }

    /// The next finer level (nil for minutes).
    var finer: RollupLevel? { RollupLevel(rawValue: rawValue - 1) }

    /// The start of the row holding `instant`.
    func start(of instant: Int64) -> Int64 { Timestamp(microseconds: instant).floored(to: length) }
}

/// A sensor's events summed over one UTC minute, hour or day, with the occupancy carried into it.
///
/// `balanceBefore` is a prefix sum: every earlier event's net, kept up to date on write (a late
/// event shifts the rows after it). So the occupancy at any instant is one indexed lookup of
/// the minute holding it plus the few events inside that minute, however long the history is.
struct Rollup: Sendable, Equatable {
    let start: Int64
    let length: Int64
    var entries: Int64 = 0
    var exits: Int64 = 0
    /// Occupancy just before the row starts.
    var balanceBefore: Int64
    /// Lowest and highest occupancy within the row, relative to `balanceBefore`
    /// (the level carried in counts, so `low <= 0 <= high`).
    var low: Int64 = 0
    var high: Int64 = 0
    /// When the row first reached `low` and `high` (its start for an extreme that is the level carried in).
    var lowAt: Int64
    var highAt: Int64
    /// Person-seconds the row's events add until the row ends: the sum of each event's net times
    /// the time left. The row's whole area is `balanceBefore × length + area`, so an average over
    /// any span of whole rows needs no events (and the sum is the same in any arrival order).
    var area: Double = 0

    var end: Int64 { start + length }
    var net: Int64 { entries - exits }
    var balanceAfter: Int64 { balanceBefore + net }

    init(start: Int64, length: Int64 = RollupLevel.minute.length, balanceBefore: Int64) {
        self.start = start
        self.length = length
        self.balanceBefore = balanceBefore
        self.lowAt = start
        self.highAt = start
    }

    init(start: Int64, length: Int64, entries: Int64, exits: Int64, balanceBefore: Int64, low: Int64, high: Int64, lowAt: Int64, highAt: Int64, area: Double) {
        self.start = start
        self.length = length
        self.entries = entries
        self.exits = exits
        self.balanceBefore = balanceBefore
        self.low = low
        self.high = high
        self.lowAt = lowAt
        self.highAt = highAt
        self.area = area
    }

    /// Adds one event at `at` that happened after every event already in the row.
    mutating func apply(in inCount: Int64, out outCount: Int64, at: Int64) {
        entries += inCount
        exits += outCount
        if net < low { (low, lowAt) = (net, at) }
        if net > high { (high, highAt) = (net, at) }
        area += Double(inCount - outCount) * Double(end - at) / 1e6
    }

    /// Rolls events (sorted by time) into rows of `level`, the first starting from occupancy `inside`.
    static func rolling(_ events: [SensorEvent], from inside: Int64, level: RollupLevel = .minute) -> [Rollup] {
        var rows: [Rollup] = []
        var row: Rollup?
        for event in events {
            let start = level.start(of: event.ts.microseconds)
            if row?.start != start {
                if let finished = row { rows.append(finished) }
                row = Rollup(start: start, length: level.length, balanceBefore: row?.balanceAfter ?? inside)
            }
            row!.apply(in: event.inCount, out: event.outCount, at: event.ts.microseconds)
        }
        if let row { rows.append(row) }
        return rows
    }

    /// The row of `level` starting at `start`, made from its finer rows (in time order, all inside it).
    static func combining(_ rows: [Rollup], into level: RollupLevel, start: Int64) -> Rollup {
        var combined = Rollup(start: start, length: level.length, balanceBefore: rows.first?.balanceBefore ?? 0)
        for row in rows {
            let before = row.balanceBefore - combined.balanceBefore
            combined.entries += row.entries
            combined.exits += row.exits
            if before + row.low < combined.low { (combined.low, combined.lowAt) = (before + row.low, row.lowAt) }
            if before + row.high > combined.high { (combined.high, combined.highAt) = (before + row.high, row.highAt) }
            combined.area += row.area + Double(row.net) * Double(combined.end - row.end) / 1e6
        }
        return combined
    }
}
