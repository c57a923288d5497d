import Foundation
import Hummingbird

/// Wall-clock time in an IANA time zone, for reports: the boundaries of local hours, days and
/// ISO weeks between two instants (a DST day is 23 or 25 hours long, a repeated hour is two
/// buckets), and instants written with their local offset.
struct LocalTime: Sendable {
    enum Unit: String, Sendable, CaseIterable {
        case hour = "1h"
        case day = "1d"
        case week = "1w"
    }

    let name: String
    private let zone: TimeZone
    private let calendar: Calendar
    /// The offset of a zone that never changes it (UTC): no need to ask the zone.
    private let fixedOffset: Int64?

    /// Nil for a name that is not a known IANA zone (`Etc/…` names too: browsers say `Etc/UTC`).
    init?(_ name: String) {
        guard PlacesController.timeZones.contains(name) || name.hasPrefix("Etc/"), let zone = TimeZone(identifier: name) else { return nil }
        self.name = name
        self.zone = zone
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        calendar.firstWeekday = 2  // ISO weeks start on Monday
        calendar.minimumDaysInFirstWeek = 4
        self.calendar = calendar
        let changes = zone.nextDaylightSavingTimeTransition(after: Date(timeIntervalSince1970: -62_135_596_800)) != nil
        fixedOffset = changes ? nil : Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: 0))) * 1_000_000
    }

    /// The zone's offset from UTC at `instant`, in microseconds.
    func offset(at instant: Int64) -> Int64 {
        fixedOffset ?? Int64(zone.secondsFromGMT(for: Self.date(instant))) * 1_000_000
    }

    /// The local date (`2024-03-31`) at `instant`.
    func day(at instant: Int64) -> String { Timestamp(microseconds: instant + offset(at: instant)).day }

    /// The zone's offset at each of `instants`, asking the zone only where it changes. They must
    /// be in time order (an offset is reused until the next change after the first asked).
    func offsets(_ instants: [Int64]) -> [Int64] {
        var (offset, until) = (Int64(0), Int64.min)
        return instants.map { instant in
            if instant >= until {
                offset = self.offset(at: instant)
                until = nextChange(after: instant)
            }
            return offset
        }
    }

    /// The local hour and ISO weekday (1 = Monday … 7 = Sunday) of instants in time order.
    func clocks(_ instants: [Int64]) -> [(hour: Int, weekday: Int)] { zip(instants, offsets(instants)).map { clock($0, offset: $1) } }

    private func clock(_ instant: Int64, offset: Int64) -> (hour: Int, weekday: Int) {
        let local = instant + offset
        let days = Int(Timestamp(microseconds: local).floored(to: 86_400_000_000) / 86_400_000_000)
        let weekday = ((days + 3) % 7 + 7) % 7 + 1  // 1970-01-01 was a Thursday
        return (Int((local - Int64(days) * 86_400_000_000) / 3_600_000_000), weekday)
    }

    /// RFC 3339 with the local offset: `2024-03-31T03:00:00+02:00`.
    func rfc3339(_ instant: Int64) -> String { rfc3339(instant, offset: offset(at: instant)) }

    /// The same for instants in time order.
    func rfc3339(_ instants: [Int64]) -> [String] { zip(instants, offsets(instants)).map { rfc3339($0, offset: $1) } }

    private func rfc3339(_ instant: Int64, offset: Int64) -> String { Timestamp(microseconds: instant).rfc3339(offset: offset) }

    /// The first instant after `instant` at which the offset changes.
    private func nextChange(after instant: Int64) -> Int64 {
        fixedOffset != nil ? Int64.max : zone.nextDaylightSavingTimeTransition(after: Self.date(instant)).map(Self.microseconds) ?? Int64.max
    }

    /// The boundaries of the local units covering [from, to): the start of the unit holding `from`,
    /// each next start, and the first start at or after `to`. Nil past `limit` units.
    func boundaries(from: Int64, to: Int64, unit: Unit, limit: Int) -> [Int64]? {
        var bounds: [Int64] = []
        switch unit {
        case .hour:
            // Between offset changes, local hours are UTC hours shifted by the offset's minutes.
            var start = from
            while bounds.last.map({ $0 < to }) ?? true {
                let offset = offset(at: start)
                let segmentEnd = nextChange(after: start)
                var b = Timestamp(microseconds: start + offset).floored(to: 3_600_000_000) - offset
                if !bounds.isEmpty, b < start { b += 3_600_000_000 }
                while b < segmentEnd, bounds.last.map({ $0 < to }) ?? true {
                    if bounds.last.map({ b > $0 }) ?? true { bounds.append(b) }
                    b += 3_600_000_000
                    if bounds.count > limit + 1 { return nil }
                }
                start = segmentEnd
            }
        case .day, .week:
            // Each unit ends where the calendar says, not a day's clock time later: where a DST
            // change skips midnight (America/Santiago), that day starts at 01:00 and the next at 00:00.
            let component: Calendar.Component = unit == .day ? .day : .weekOfYear
            guard let first = calendar.dateInterval(of: component, for: Self.date(from)) else { return nil }
            var (end, offset, change) = (Self.microseconds(first.end), Int64(0), Int64.min)
            bounds.append(Self.microseconds(first.start))
            while bounds.last! < to {
                bounds.append(end)
                if bounds.count > limit + 1 { return nil }
                // A day from a local midnight with no offset change in it is 24 hours: only the
                // others need the calendar.
                if change <= end { (offset, change) = (self.offset(at: end), nextChange(after: end)) }
                let midnight = Timestamp(microseconds: end + offset).floored(to: 86_400_000_000) == end + offset
                if unit == .day, midnight, end + 86_400_000_000 < change {
                    end += 86_400_000_000
                } else {
                    guard let next = calendar.dateInterval(of: component, for: Self.date(end)) else { return nil }
                    end = Self.microseconds(next.end)
                }
            }
        }
        return bounds
    }

    private static func date(_ instant: Int64) -> Date { Date(timeIntervalSince1970: Double(instant) / 1_000_000) }
    private static func microseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1_000_000).rounded()) }
}

/// The span and buckets of a report: `from`, `to` (default: the week before now), `bucket` and `tz`.
struct ReportPeriod: Sendable {
    static let maxBuckets = 5000
    /// A heatmap's answer is 168 cells however long its period: it may span three years of hours.
    static let maxHeatmapHours = 3 * 8784

    let zone: LocalTime
    let unit: LocalTime.Unit
    /// Bucket boundaries in UTC microseconds: the first at or before `from`, the last at or after `to`.
    let boundaries: [Int64]

    var from: String { zone.rfc3339(boundaries.first!) }
    var to: String { zone.rfc3339(boundaries.last!) }
}

extension Request {
    /// The report period of this request's query; `zone` is the time zone when `tz` is absent.
    func reportPeriod(
        defaultUnit: LocalTime.Unit, units: [LocalTime.Unit] = LocalTime.Unit.allCases, zone: String = "UTC", limit: Int = ReportPeriod.maxBuckets
    ) throws -> ReportPeriod {
        let (from, to) = try SensorsController.range(self, defaultSpan: 7 * RollupLevel.day.length)
        let unitText = uri.queryParameters["bucket"].map(String.init) ?? defaultUnit.rawValue
        guard let unit = LocalTime.Unit(rawValue: unitText), units.contains(unit) else {
            throw APIError.badRequest("bucket must be one of \(units.map(\.rawValue).joined(separator: ", "))")
        }
        let name = try text("tz", length: 1...64) ?? zone
        guard let local = LocalTime(name) else { throw APIError.badRequest("tz must be an IANA time zone, e.g. Europe/Paris or UTC") }
        guard let boundaries = local.boundaries(from: from, to: to, unit: unit, limit: limit) else {
            throw APIError.badRequest("at most \(limit) buckets: narrow from/to or use a larger bucket")
        }
        return ReportPeriod(zone: local, unit: unit, boundaries: boundaries)
    }
}
