/// A sensor's events summed over one UTC minute, with the occupancy carried into it.
///
/// `balanceBefore` is a prefix sum: every earlier event's net, kept up to date on write (a late
/// event shifts the minutes after it). So the occupancy at any instant is one indexed lookup of
/// the minute holding it plus the few events inside that minute, however long the history is.
struct MinuteRollup: Sendable, Equatable {
    static let length: Int64 = 60_000_000

    let minute: Int64
    var entries: Int64 = 0
    var exits: Int64 = 0
    /// Occupancy just before the minute starts.
    var balanceBefore: Int64
    /// Lowest and highest occupancy within the minute, relative to `balanceBefore`
    /// (the level carried in counts, so `low <= 0 <= high`).
    var low: Int64 = 0
    var high: Int64 = 0

    var balanceAfter: Int64 { balanceBefore + entries - exits }

    init(minute: Int64, balanceBefore: Int64) {
        self.minute = minute
        self.balanceBefore = balanceBefore
    }

    init(minute: Int64, entries: Int64, exits: Int64, balanceBefore: Int64, low: Int64, high: Int64) {
        self.minute = minute
        self.entries = entries
        self.exits = exits
        self.balanceBefore = balanceBefore
        self.low = low
        self.high = high
    }

    /// The start of the minute holding `instant`.
    static func minute(of instant: Timestamp) -> Int64 { instant.floored(to: length) }

    /// Adds one event that happened after every event already in the minute.
    mutating func apply(in inCount: Int64, out outCount: Int64) {
        entries += inCount
        exits += outCount
        low = Swift.min(low, entries - exits)
        high = Swift.max(high, entries - exits)
    }

    /// Rolls events (sorted by time) into minutes, the first starting from occupancy `inside`.
    static func rolling(_ events: [SensorEvent], from inside: Int64) -> [MinuteRollup] {
        var rows: [MinuteRollup] = []
        var row: MinuteRollup?
        for event in events {
            let minute = minute(of: event.ts)
            if row?.minute != minute {
                if let finished = row { rows.append(finished) }
                row = MinuteRollup(minute: minute, balanceBefore: row?.balanceAfter ?? inside)
            }
            row!.apply(in: event.inCount, out: event.outCount)
        }
        if let row { rows.append(row) }
        return rows
    }
}
