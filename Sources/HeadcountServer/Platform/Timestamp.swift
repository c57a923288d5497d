import Foundation

/// An instant as whole microseconds since the Unix epoch, UTC: how every time is stored,
/// compared and sorted, identically on both database engines.
public struct Timestamp: Sendable, Hashable, Comparable, Codable {
    public var microseconds: Int64

    public init(microseconds: Int64) { self.microseconds = microseconds }

    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(microseconds: Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000)
    }

    public static func < (a: Timestamp, b: Timestamp) -> Bool { a.microseconds < b.microseconds }

    /// Every instant Headcount accepts or writes: years 0001 to 9999 in UTC, the years RFC 3339
    /// can write with four digits. Anything from outside is refused at the door, so no arithmetic
    /// on a stored instant can overflow and every instant written back parses again.
    public static let validMicroseconds: ClosedRange<Int64> = -62_135_596_800_000_000...253_402_300_799_999_999
    /// The same span in epoch milliseconds, the attendance family's unit.
    public static let validMilliseconds: ClosedRange<Int64> = -62_135_596_800_000...253_402_300_799_999

    /// The instant `milliseconds` after the epoch, or nil outside years 0001-9999.
    public init?(milliseconds: Int64) {
        guard Self.validMilliseconds.contains(milliseconds) else { return nil }
        self.microseconds = milliseconds * 1000
    }

    /// Parses RFC 3339: `2024-01-01T10:00:00Z`, `2024-01-01t10:00:00.5+02:00`, `2024-01-01 10:00:00Z`.
    /// Fractions beyond microseconds are truncated. Returns nil for anything else, and for instants
    /// outside years 0001-9999 in UTC (`9999-12-31T23:00:00-05:00` is one).
    public init?(rfc3339 text: String) {
        let b = Array(text.utf8)
        guard b.count >= 20 else { return nil }
        func digits(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var n = 0
            for i in from..<(from + count) {
                guard b[i] >= 48, b[i] <= 57 else { return nil }
                n = n * 10 + Int(b[i] - 48)
            }
            return n
        }
        guard let year = digits(0, 4), b[4] == UInt8(ascii: "-"), let month = digits(5, 2), b[7] == UInt8(ascii: "-"),
            let day = digits(8, 2), [UInt8(ascii: "T"), UInt8(ascii: "t"), UInt8(ascii: " ")].contains(b[10]),
            let hour = digits(11, 2), b[13] == UInt8(ascii: ":"), let minute = digits(14, 2), b[16] == UInt8(ascii: ":"),
            let second = digits(17, 2)
        else { return nil }
        guard year >= 1, (1...12).contains(month), day >= 1, day <= Self.daysIn(month: month, year: year),
            hour < 24, minute < 60, second < 60
        else { return nil }
        var i = 19
        var micros = 0
        if b[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 100_000
            let start = i
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                micros += Int(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
            guard i > start else { return nil }
        }
        guard i < b.count else { return nil }
        var offsetSeconds = 0
        switch b[i] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            guard i + 1 == b.count else { return nil }
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard i + 6 == b.count, let oh = digits(i + 1, 2), b[i + 3] == UInt8(ascii: ":"), let om = digits(i + 4, 2),
                oh < 24, om < 60
            else { return nil }
            offsetSeconds = (oh * 3600 + om * 60) * (b[i] == UInt8(ascii: "+") ? 1 : -1)
        default:
            return nil
        }
        let days = Self.daysFromCivil(year: year, month: month, day: day)
        let seconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second - offsetSeconds)
        let microseconds = seconds * 1_000_000 + Int64(micros)
        guard Self.validMicroseconds.contains(microseconds) else { return nil }
        self.microseconds = microseconds
    }

    /// RFC 3339 in UTC with `Z`; fractional seconds only when there are any. Written digit by
    /// digit: large answers (a presence lists thousands of instants) spent most of their time in
    /// `String(format:)`.
    public var rfc3339: String { rfc3339(offset: 0) }

    /// The same instant as the wall clock `offset` microseconds from UTC reads it, with that
    /// offset: `2024-03-31T03:00:00+02:00` (`Z` for none).
    func rfc3339(offset: Int64) -> String {
        let (date, seconds, micros) = Timestamp(microseconds: microseconds + offset).parts
        var text = Self.iso(date)
        text.reserveCapacity(text.count + 23)
        text.append(84)  // T
        Self.append(seconds / 3600, width: 2, to: &text)
        text.append(58)  // :
        Self.append(seconds / 60 % 60, width: 2, to: &text)
        text.append(58)
        Self.append(seconds % 60, width: 2, to: &text)
        if micros > 0 {
            var (fraction, width) = (micros, 6)
            while fraction % 10 == 0 { (fraction, width) = (fraction / 10, width - 1) }
            text.append(46)  // .
            Self.append(fraction, width: width, to: &text)
        }
        if offset == 0 {
            text.append(90)  // Z
        } else {
            let minutes = Int(abs(offset) / 60_000_000)
            text.append(offset < 0 ? 45 : 43)  // - or +
            Self.append(minutes / 60, width: 2, to: &text)
            text.append(58)
            Self.append(minutes % 60, width: 2, to: &text)
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The start of the `length`-microsecond slot (counted from the epoch) holding this instant;
    /// floored, so instants before 1970 work too.
    public func floored(to length: Int64) -> Int64 {
        let (q, r) = microseconds.quotientAndRemainder(dividingBy: length)
        return (r < 0 ? q - 1 : q) * length
    }

    /// The UTC day, `YYYY-MM-DD`.
    public var day: String { String(decoding: Self.iso(parts.date), as: UTF8.self) }

    /// The UTC time of day, `HH:MM:SS.ffffff`.
    public var timeOfDay: String {
        let (_, seconds, micros) = parts
        var text: [UInt8] = []
        for (value, width) in [(seconds / 3600, 2), (seconds / 60 % 60, 2), (seconds % 60, 2), (micros, 6)] {
            if !text.isEmpty { text.append(width == 6 ? 46 : 58) }
            Self.append(value, width: width, to: &text)
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// `YYYY-MM-DD` as UTF-8 (a year past 9999, which only arithmetic on a stored instant can
    /// reach, with all its digits).
    private static func iso(_ date: (year: Int, month: Int, day: Int)) -> [UInt8] {
        var text: [UInt8] = []
        if (0...9999).contains(date.year) { append(date.year, width: 4, to: &text) } else { text += Array(String(date.year).utf8) }
        text.append(45)  // -
        append(date.month, width: 2, to: &text)
        text.append(45)
        append(date.day, width: 2, to: &text)
        return text
    }

    /// `n` (0 ≤ n < 10^width) as `width` decimal digits.
    private static func append(_ n: Int, width: Int, to text: inout [UInt8]) {
        var divisor = 1
        for _ in 1..<width { divisor *= 10 }
        while divisor > 0 {
            text.append(UInt8(truncatingIfNeeded: 48 + n / divisor % 10))
            divisor /= 10
        }
    }

    private var parts: (date: (year: Int, month: Int, day: Int), seconds: Int, micros: Int) {
        let (secs, micros) = microseconds.quotientAndRemainder(dividingBy: 1_000_000)
        let adjustedSecs = micros < 0 ? secs - 1 : secs
        let adjustedMicros = micros < 0 ? micros + 1_000_000 : micros
        let (days, secondOfDay) = adjustedSecs.quotientAndRemainder(dividingBy: 86_400)
        let d = secondOfDay < 0 ? days - 1 : days
        let s = secondOfDay < 0 ? secondOfDay + 86_400 : secondOfDay
        let (y, m, dd) = Self.civilFromDays(Int(d))
        return ((y, m, dd), Int(s), Int(adjustedMicros))
    }

    /// Midnight UTC starting the day `YYYY-MM-DD`, or nil if it is not such a day.
    public init?(day text: String) {
        guard text.utf8.count == 10, let t = Timestamp(rfc3339: text + "T00:00:00Z") else { return nil }
        self = t
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    // Howard Hinnant's days_from_civil and civil_from_days.
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ z: Int) -> (Int, Int, Int) {
        let z = z + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp + (mp < 10 ? 3 : -9)
        return (m <= 2 ? y + 1 : y, m, d)
    }
}

/// An epoch-millisecond time, the attendance family's unit (as its original used).
func milliseconds(_ microseconds: Int64) -> Int64 { microseconds / 1000 }
