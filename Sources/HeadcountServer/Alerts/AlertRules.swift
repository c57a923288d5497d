/// When an alert rises and when it clears: a threshold with hysteresis, so that a count wobbling
/// at the line raises one alert, not fifty.
enum AlertKind: String, Sendable, CaseIterable {
    /// At or above `warn_percent` of the capacity (default 80 %).
    case warn
    /// At or above `critical_percent` of the capacity (default 100 %).
    case critical
    /// Nothing posted for `silent_after_minutes`.
    case silent
    /// The count went below zero (a sensor missed entries, or needs a reset).
    case negative
}

/// A subject's thresholds: its capacity and the percentages of it that warn and are critical.
struct Thresholds: Sendable, Equatable {
    let capacity: Int64
    let warnPercent: Int64
    let criticalPercent: Int64

    /// The count at which `kind` rises; nil for the kinds without one.
    func level(_ kind: AlertKind) -> Int64? {
        switch kind {
        case .warn: capacity * warnPercent / 100
        case .critical: capacity * criticalPercent / 100
        case .silent, .negative: nil
        }
    }

    /// How far below its level a count must fall to clear: 5 % of the capacity, at least one person.
    var margin: Int64 { max(1, capacity * 5 / 100) }

    /// Whether an alert of `kind` should be active at `count`, given whether it is now.
    func active(_ kind: AlertKind, count: Int64, now active: Bool) -> Bool {
        guard let level = level(kind) else { return active }
        return active ? count >= level - margin : count >= level
    }
}
