import Testing

@testable import HeadcountServer

@Suite("Timestamp") struct TimestampTests {
    @Test(arguments: [
        ("2018-11-14T13:34:49Z", Int64(1_542_202_489_000_000)),
        ("2018-11-14T14:34:49+01:00", 1_542_202_489_000_000),
        ("2018-11-14t13:34:49.5z", 1_542_202_489_500_000),
        ("2018-11-14 13:34:49.123456789Z", 1_542_202_489_123_456),
        ("2018-11-14T08:34:49.000001-05:00", 1_542_202_489_000_001),
        ("1969-12-31T23:59:59Z", -1_000_000),
        ("2024-02-29T00:00:00Z", 1_709_164_800_000_000),
        // The first and last instants RFC 3339 can write with four-digit years.
        ("0001-01-01T00:00:00Z", -62_135_596_800_000_000), ("9999-12-31T23:59:59.999999Z", 253_402_300_799_999_999),
        ("0001-01-01T00:59:00+00:59", -62_135_596_800_000_000),
    ])
    func parsesRFC3339(text: String, micros: Int64) {
        #expect(Timestamp(rfc3339: text)?.microseconds == micros)
    }

    @Test(arguments: [
        "", "2018-11-14", "2018-11-14T13:34:49", "2018-11-14T13:34:49+0100", "2023-02-29T00:00:00Z",
        "2018-13-14T13:34:49Z", "2018-11-14T24:00:00Z", "2018-11-14T13:34:49.Z", "2018-11-14T13:34:49Zjunk", "１９７０-01-01T00:00:00Z",
        // Outside years 0001-9999 once in UTC: they could not be written back as RFC 3339.
        "0000-12-31T23:00:00Z", "0001-01-01T00:00:00+00:01", "9999-12-31T23:00:00-05:00", "9999-12-31T23:59:59.999999-00:01",
    ])
    func rejectsTheRest(text: String) {
        #expect(Timestamp(rfc3339: text) == nil)
    }

    @Test func formatsUTCWithZ() {
        #expect(Timestamp(microseconds: 1_542_202_489_000_000).rfc3339 == "2018-11-14T13:34:49Z")
        #expect(Timestamp(microseconds: 1_542_202_489_250_000).rfc3339 == "2018-11-14T13:34:49.25Z")
        #expect(Timestamp(microseconds: -1).rfc3339 == "1969-12-31T23:59:59.999999Z")
        #expect(Timestamp(microseconds: 1_542_202_489_000_042).timeOfDay == "13:34:49.000042")
        #expect(Timestamp(microseconds: 1_542_202_489_000_042).day == "2018-11-14")
        #expect(Timestamp(day: "2018-11-14")?.microseconds == 1_542_153_600_000_000)
        #expect(Timestamp(day: "2018-11-31") == nil)
        #expect(Timestamp(day: "0000-01-01") == nil)
        #expect(Timestamp(microseconds: Timestamp.validMicroseconds.lowerBound).rfc3339 == "0001-01-01T00:00:00Z")
        #expect(Timestamp(microseconds: Timestamp.validMicroseconds.upperBound).rfc3339 == "9999-12-31T23:59:59.999999Z")
        #expect(Timestamp(milliseconds: Timestamp.validMilliseconds.upperBound)?.rfc3339 == "9999-12-31T23:59:59.999Z")
        #expect(Timestamp(milliseconds: Timestamp.validMilliseconds.upperBound + 1) == nil)
        #expect(Timestamp(milliseconds: Int64.min) == nil)
    }
}
