import Testing

@testable import HeadcountServer

/// The pure rules under the routes, checked without a server: the minute rollups and the series
/// folded from them (sensors), and one attendance record's checks.
@Suite("Rules") struct RulesTests {
    static let t0 = Timestamp(rfc3339: "2024-03-01T10:00:00Z")!.microseconds
    static func event(_ seconds: Int64, in inCount: Int64, out outCount: Int64) -> SensorEvent {
        SensorEvent(sensor: "door", ts: Timestamp(microseconds: t0 + seconds * 1_000_000), inCount: inCount, outCount: outCount)
    }

    @Test func rollupsCarryTheLevelAndItsExtremes() {
        let rows = Rollup.rolling(
            [Self.event(5, in: 3, out: 0), Self.event(20, in: 0, out: 5), Self.event(50, in: 1, out: 0), Self.event(130, in: 2, out: 1)],
            from: 10
        )
        #expect(rows.count == 2, "minutes 10:00 and 10:02")
        // Area: each event's net times the seconds left in its minute (3×55 − 5×40 + 1×10).
        let minute = RollupLevel.minute.length
        #expect(
            rows[0]
                == Rollup(
                    start: Self.t0, length: minute, entries: 4, exits: 5, balanceBefore: 10, low: -2, high: 3, lowAt: Self.t0 + 20_000_000, highAt: Self.t0 + 5_000_000, area: -25))
        #expect(rows[0].balanceAfter == 9)
        #expect(
            rows[1]
                == Rollup(
                    start: Self.t0 + 2 * minute, length: minute, entries: 2, exits: 1, balanceBefore: 9, low: 0, high: 1, lowAt: Self.t0 + 120_000_000,
                    highAt: Self.t0 + 130_000_000, area: 50),
            "one event moves the level once")
        #expect(RollupLevel.minute.start(of: Self.t0 + 59_999_999) == Self.t0)
        #expect(Rollup.rolling([], from: 4).isEmpty)
    }

    @Test func anHourCombinedFromItsMinutesEqualsTheHourRolledFromEvents() {
        let events = [Self.event(5, in: 3, out: 0), Self.event(20, in: 0, out: 5), Self.event(50, in: 1, out: 0), Self.event(130, in: 2, out: 1)]
        let hour = Rollup.combining(Rollup.rolling(events, from: 10), into: .hour, start: Self.t0)
        // By hand: 3×3595 − 5×3580 + 1×3550 + 1×3470 person-seconds until 11:00.
        #expect(
            hour
                == Rollup(
                    start: Self.t0, length: RollupLevel.hour.length, entries: 6, exits: 6, balanceBefore: 10, low: -2, high: 3, lowAt: Self.t0 + 20_000_000,
                    highAt: Self.t0 + 5_000_000, area: -95))
        #expect(Rollup.rolling(events, from: 10, level: .hour) == [hour])
    }

    @Test func aSeriesFoldsMinutesIntoBucketsAndCarriesTheLevelThroughQuietOnes() {
        let minutes = Rollup.rolling([Self.event(5, in: 3, out: 0), Self.event(20, in: 0, out: 5), Self.event(11 * 60, in: 4, out: 0)], from: 10)
        let points = SeriesPoint.fold(from: Self.t0, to: Self.t0 + 15 * RollupLevel.minute.length, bucket: .fiveMinutes, opening: 10, rows: minutes)
        #expect(points.count == 3)
        #expect(points[0] == SeriesPoint(start: "2024-03-01T10:00:00Z", end: "2024-03-01T10:05:00Z", entries: 3, exits: 5, min: 8, max: 13, last: 8))
        #expect(points[1] == SeriesPoint(start: "2024-03-01T10:05:00Z", end: "2024-03-01T10:10:00Z", entries: 0, exits: 0, min: 8, max: 8, last: 8))
        #expect(points[2] == SeriesPoint(start: "2024-03-01T10:10:00Z", end: "2024-03-01T10:15:00Z", entries: 4, exits: 0, min: 8, max: 12, last: 12))
        // An hour bucket holds all three minutes.
        let hour = SeriesPoint.fold(from: Self.t0, to: Self.t0 + RollupLevel.hour.length, bucket: .hour, opening: 10, rows: minutes)
        #expect(hour.map(\.last) == [12])
        #expect(hour.map(\.min) == [8])
        #expect(hour.map(\.max) == [13])
    }

    static func record(_ fields: [String: JSONValue]) throws -> SyncRecord {
        var body: [String: JSONValue] = [
            "local_id": .int(1), "employee_id": .string("e-1"), "type": .string("ENTRY"), "timestamp": .int(1_700_000_000_000), "device_id": .string("d-1"),
        ]
        body.merge(fields) { $1 }
        return try SyncRecord(json: .object(body), index: 3)
    }

    @Test func aRecordsStructureIsA422NamingTheField() throws {
        let cases: [([String: JSONValue], String)] = [
            (["employee_id": .string("")], "records[3].employee_id"),
            (["employee_id": .string("a\u{1}b")], "records[3].employee_id"),
            (["device_id": .string(String(repeating: "d", count: 101))], "records[3].device_id"),
            (["timestamp": .int(Int64.min)], "records[3].timestamp"),
            (["timestamp": .string("now")], "records[3].timestamp"),
            (["confidence": .double(1.5)], "records[3].confidence"),
            (["liveness_passed": .string("yes")], "records[3].liveness_passed"),
            (["local_id": .string("1")], "records[3].local_id"),
        ]
        for (fields, field) in cases {
            let error = try #require(throws: APIError.self) { try Self.record(fields) }
            #expect(error.status == .unprocessableContent)
            #expect(error.fields?.map(\.field) == [field], "\(fields)")
        }
        #expect(try Self.record(["confidence": .int(1), "created_at": .null]).confidence == 1)
    }

    @Test func aRecordsOwnRulesAreJudgedAgainstItsDeviceAndTheClock() throws {
        let now: Int64 = 1_700_000_000_000
        #expect(try Self.record([:]).problem(device: "d-1", nowMs: now) == nil)
        #expect(try Self.record([:]).problem(device: "d-2", nowMs: now)?.code == "DEVICE_ID_MISMATCH")
        #expect(try Self.record(["type": .string("LUNCH")]).problem(device: "d-1", nowMs: now)?.code == "INVALID_TYPE")
        let late = now + SyncRecord.maxFutureMs
        #expect(try Self.record(["timestamp": .int(late)]).problem(device: "d-1", nowMs: now) == nil, "5 minutes ahead is allowed")
        #expect(try Self.record(["timestamp": .int(late + 1)]).problem(device: "d-1", nowMs: now)?.code == "FUTURE_TIMESTAMP")
    }
}
