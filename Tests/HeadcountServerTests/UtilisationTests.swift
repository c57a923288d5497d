import Foundation
import HummingbirdTesting
import SQLKit
import Testing

@testable import HeadcountServer

/// Utilisation reports from the hour and day rollups, checked against figures worked out by hand.
@Suite("Utilisation") struct UtilisationTests {
    static let admin = WorkersTests.admin

    static func post(_ client: any TestClientProtocol, _ sensor: String, _ ts: String, in inCount: Int = 0, out outCount: Int = 0) async throws {
        let body = jsonText(["sensor": sensor, "ts": ts, "in_count": inCount, "out": outCount])
        #expect(try await client.post("/api/webhook", body).status == .ok)
    }

    static func buckets(_ client: any TestClientProtocol, _ uri: String) async throws -> [[String: Any]] {
        let response = try await client.get(uri)
        #expect(response.status == .ok, "\(uri): \(response.text)")
        return try #require(try response.object()["buckets"] as? [[String: Any]])
    }

    /// A morning at one door, posted out of order (the late events rewrite the hour and day rows):
    /// 0 until 09:15, 4 until 09:45, 6 until 10:15, 1 until 11:30, then 0.
    @Test(arguments: Engine.available)
    func hourAndDayFiguresAreTimeWeighted(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            try await Self.post(client, "door", "2024-05-06T10:15:00Z", out: 5)
            try await Self.post(client, "door", "2024-05-06T11:30:00Z", out: 1)
            try await Self.post(client, "door", "2024-05-06T09:45:00Z", in: 2)
            try await Self.post(client, "door", "2024-05-06T09:15:00Z", in: 4)
            #expect(try await client.put("/api/sensors/door/settings", #"{"capacity": 10}"#, headers: Self.admin).status == .ok)

            let hours = try await Self.buckets(client, "/api/sensors/door/utilisation?from=2024-05-06T09:00:00Z&to=2024-05-06T12:00:00Z&bucket=1h")
            #expect(hours.map { $0["start"] as? String } == ["2024-05-06T09:00:00Z", "2024-05-06T10:00:00Z", "2024-05-06T11:00:00Z"])
            // 09-10: (4 × 30 min + 6 × 15 min) / 60 min; 10-11: (6 × 15 + 1 × 45) / 60; 11-12: 1 × 30 / 60.
            #expect(hours.map { $0["avg"] as? Double } == [3.5, 2.25, 0.5])
            #expect(hours.map { $0["min"] as? Int } == [0, 1, 0])
            #expect(hours.map { $0["peak"] as? Int } == [6, 6, 1])
            #expect(hours.map { $0["peak_at"] as? String } == ["2024-05-06T09:45:00Z", "2024-05-06T10:00:00Z", "2024-05-06T11:00:00Z"])
            #expect(hours.map { $0["avg_percent"] as? Double } == [35, 22.5, 5])
            #expect(hours.map { $0["peak_percent"] as? Double } == [60, 60, 10])

            // The UTC day: 22,500 person-seconds over 86,400 seconds.
            let days = try await Self.buckets(client, "/api/sensors/door/utilisation?from=2024-05-06T00:00:00Z&to=2024-05-07T00:00:00Z&bucket=1d")
            #expect(days.count == 1)
            #expect(days.first?["avg"] as? Double == 0.26 && days.first?["peak"] as? Int == 6)
            // The same day in New York (UTC-4) runs 04:00Z-04:00Z: read from hours, not UTC days.
            let local = try await Self.buckets(client, "/api/sensors/door/utilisation?from=2024-05-06T04:00:00Z&to=2024-05-07T04:00:00Z&bucket=1d&tz=America/New_York")
            #expect(local.map { $0["start"] as? String } == ["2024-05-06T00:00:00-04:00"])
            #expect(local.first?["avg"] as? Double == 0.26)
            #expect(try await client.get("/api/sensors/door/utilisation?tz=Etc/UTC").status == .ok, "what a browser in UTC says")

            #expect(try await client.get("/api/sensors/door/utilisation?bucket=5m").status == .badRequest)
            #expect(try await client.get("/api/sensors/door/utilisation?tz=Mars/Olympus").status == .badRequest)
            #expect(try await client.get("/api/sensors/door/utilisation?from=2000-01-01T00:00:00Z&to=2024-01-01T00:00:00Z&bucket=1h").status == .badRequest)
            #expect(try await client.get("/api/sensors/ghost/utilisation").status == .notFound)
        }
    }

    /// Local days are 23 and 25 hours long on the DST changes, and the heatmap's Sunday 02:00 has
    /// no sample in March and two in October (Europe/Paris, 2024).
    @Test(arguments: Engine.available)
    func localDaysFollowDaylightSavingTime(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            // 2 people from 12:00 to 23:00 local on the 23-hour day, 5 from 10:00 to 15:00 on the 25-hour one.
            try await Self.post(client, "hall", "2024-03-31T10:00:00Z", in: 2)
            try await Self.post(client, "hall", "2024-03-31T21:00:00Z", out: 2)
            try await Self.post(client, "hall", "2024-10-27T09:00:00Z", in: 5)
            try await Self.post(client, "hall", "2024-10-27T14:00:00Z", out: 5)
            let paris = "tz=Europe/Paris&bucket=1d"
            let spring = try await Self.buckets(client, "/api/sensors/hall/utilisation?from=2024-03-31T00:00:00%2B01:00&to=2024-04-01T00:00:00%2B02:00&\(paris)")
            #expect(spring.map { $0["start"] as? String } == ["2024-03-31T00:00:00+01:00"])
            #expect(spring.first?["end"] as? String == "2024-04-01T00:00:00+02:00")
            #expect(spring.first?["avg"] as? Double == 0.96, "22 person-hours over 23 hours")
            let autumn = try await Self.buckets(client, "/api/sensors/hall/utilisation?from=2024-10-27T00:00:00%2B02:00&to=2024-10-28T00:00:00%2B01:00&\(paris)")
            #expect(autumn.count == 1)
            #expect(autumn.first?["avg"] as? Double == 1, "25 person-hours over 25 hours")
            let hours = try await Self.buckets(
                client, "/api/sensors/hall/utilisation?from=2024-10-27T00:00:00%2B02:00&to=2024-10-28T00:00:00%2B01:00&tz=Europe/Paris&bucket=1h")
            #expect(hours.count == 25)
            #expect(hours.compactMap { $0["start"] as? String }.filter { $0.hasPrefix("2024-10-27T02:00:00") } == ["2024-10-27T02:00:00+02:00", "2024-10-27T02:00:00+01:00"])

            func cell(_ map: [String: Any], weekday: Int, hour: Int) -> [String: Any]? {
                (map["cells"] as? [[String: Any]])?.first { $0["weekday"] as? Int == weekday && $0["hour"] as? Int == hour }
            }
            let march = try await client.get("/api/sensors/hall/utilisation/heatmap?from=2024-03-25T00:00:00%2B01:00&to=2024-04-01T00:00:00%2B02:00&tz=Europe/Paris").object()
            #expect((march["cells"] as? [Any])?.count == 168)
            #expect(cell(march, weekday: 7, hour: 2)?["samples"] as? Int == 0, "02:00 did not happen")
            #expect(cell(march, weekday: 7, hour: 12)?["avg"] as? Double == 2)
            #expect(cell(march, weekday: 7, hour: 23)?["avg"] as? Double == 0)
            let october = try await client.get("/api/sensors/hall/utilisation/heatmap?from=2024-10-21T00:00:00%2B02:00&to=2024-10-28T00:00:00%2B01:00&tz=Europe/Paris").object()
            #expect(cell(october, weekday: 7, hour: 2)?["samples"] as? Int == 2, "02:00 happened twice")
            #expect(cell(october, weekday: 7, hour: 10)?["avg"] as? Double == 5)
            #expect(cell(october, weekday: 7, hour: 10)?["peak"] as? Int == 5)
            #expect(cell(october, weekday: 1, hour: 10)?["avg"] as? Double == 0)
            #expect(try await client.get("/api/sensors/hall/utilisation/heatmap?bucket=1d").status == .badRequest)
        }
    }

    /// Where a DST change skips midnight (Chile, 2024-09-08), that day starts at 01:00 and the
    /// next days at midnight again.
    @Test func daysStartWhereTheCalendarSays() throws {
        let zone = try #require(LocalTime("America/Santiago"))
        let (from, to) = (Timestamp(rfc3339: "2024-09-07T12:00:00-04:00")!.microseconds, Timestamp(rfc3339: "2024-09-10T00:00:00-03:00")!.microseconds)
        let days = try #require(zone.boundaries(from: from, to: to, unit: .day, limit: 10)).map(zone.rfc3339)
        #expect(days == ["2024-09-07T00:00:00-04:00", "2024-09-08T01:00:00-03:00", "2024-09-09T00:00:00-03:00", "2024-09-10T00:00:00-03:00"])
    }

    /// Days are stepped 24 hours at a time between offset changes: the same days as the
    /// calendar's, across zones with odd changes (half-hour DST, midnight skipped, a whole day
    /// skipped when Samoa crossed the date line in 2011, local mean time before 1900), in
    /// 1900-1915, 2010-2026 and 2036-2042 (past 32-bit time).
    @Test(arguments: ["Europe/Paris", "America/Santiago", "Australia/Lord_Howe", "Asia/Tehran", "Pacific/Apia", "America/Havana", "UTC"])
    func daysAreTheCalendarsDays(name: String) throws {
        let zone = try #require(LocalTime(name))
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = try #require(TimeZone(identifier: name))
        for (first, last) in [("1900", "1915"), ("2010", "2026"), ("2036", "2042")] {
            let (from, to) = (Timestamp(rfc3339: first + "-01-01T12:00:00Z")!.microseconds, Timestamp(rfc3339: last + "-01-01T00:00:00Z")!.microseconds)
            var expected: [Int64] = []
            var day = try #require(calendar.dateInterval(of: .day, for: Date(timeIntervalSince1970: Double(from) / 1e6)))
            expected.append(Int64((day.start.timeIntervalSince1970 * 1e6).rounded()))
            while expected.last! < to {
                expected.append(Int64((day.end.timeIntervalSince1970 * 1e6).rounded()))
                day = try #require(calendar.dateInterval(of: .day, for: day.end))
                try #require(day.end.timeIntervalSince1970 * 1e6 > Double(expected.last!), "the calendar moves on (\(day))")
            }
            #expect(zone.boundaries(from: from, to: to, unit: .day, limit: 10_000) == expected, "\(first)-\(last)")
        }
    }

    /// An event stamped after now (a sensor whose clock runs fast) does not lift the bucket in
    /// progress: 3 people from 10:00 until now, 10:30; 10 more "at 10:31".
    @Test func aBucketInProgressIgnoresEventsAfterNow() {
        let at = { (text: String) in Timestamp(rfc3339: text)!.microseconds }
        let events = [("2024-05-06T10:00:00Z", 3), ("2024-05-06T10:31:00Z", 10)].map {
            SensorEvent(sensor: "door", ts: Timestamp(microseconds: at($0.0)), inCount: Int64($0.1), outCount: 0)
        }
        let usage = Usage.fold(
            boundaries: [at("2024-05-06T10:00:00Z"), at("2024-05-06T11:00:00Z")], opening: 0, rows: Rollup.rolling(events, from: 0), now: at("2024-05-06T10:30:00Z"))
        #expect(usage.first??.average == 3 && usage.first??.peak == 3)
    }

    /// A floor with a door in and a door out: both move in the same hour, so the hour is read
    /// from minutes and the peak is exact. 3 in at 09:10, 1 out at 09:20, 2 in at 09:40.
    @Test(arguments: Engine.available)
    func aPlaceCountsItsDoorways(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            #expect(try await client.post("/api/places", #"{"id": "floor", "name": "Floor", "capacity": 8}"#, headers: Self.admin).status == .created)
            try await Self.post(client, "in", "2024-05-06T09:10:00Z", in: 3)
            try await Self.post(client, "out", "2024-05-06T09:20:00Z", in: 1)
            try await Self.post(client, "in", "2024-05-06T09:40:00Z", in: 2)
            #expect(try await client.put("/api/sensors/in/doorway", #"{"from": null, "to": "floor"}"#, headers: Self.admin).status == .ok)
            #expect(try await client.put("/api/sensors/out/doorway", #"{"from": "floor", "to": null}"#, headers: Self.admin).status == .ok)
            let hours = try await Self.buckets(client, "/api/places/floor/utilisation?from=2024-05-06T09:00:00Z&to=2024-05-06T11:00:00Z&bucket=1h")
            // 09-10: (3 × 10 + 2 × 20 + 4 × 20) / 60 minutes; then 4 all hour.
            #expect(hours.map { $0["avg"] as? Double } == [2.5, 4])
            #expect(hours.map { $0["peak"] as? Int } == [4, 4])
            #expect(hours.map { $0["min"] as? Int } == [0, 4])
            #expect(hours.first?["peak_at"] as? String == "2024-05-06T09:40:00Z")
            #expect(hours.first?["peak_percent"] as? Double == 50)
            let day = try await client.get("/api/places/floor/utilisation?from=2024-05-06T00:00:00Z&to=2024-05-07T00:00:00Z").object()
            #expect(day["place"] as? String == "floor" && day["tz"] as? String == "UTC")
            #expect((day["buckets"] as? [[String: Any]])?.first?["peak_at"] as? String == "2024-05-06T09:40:00Z")
            // The out door's lowest moment is the floor's: after 09:20 only.
            let leaving = try await Self.buckets(client, "/api/places/floor/utilisation?from=2024-05-06T09:20:00Z&to=2024-05-06T09:40:00Z&bucket=1h")
            #expect(leaving.first?["min"] as? Int == 0)
            // A capacity of zero has no percentages (schemathesis found the 0/0).
            #expect(try await client.put("/api/places/floor", #"{"capacity": 0}"#, headers: Self.admin).status == .ok)
            let unbounded = try await Self.buckets(client, "/api/places/floor/utilisation?from=2024-05-06T09:00:00Z&to=2024-05-06T10:00:00Z&bucket=1h")
            #expect(unbounded.first?["avg_percent"] is NSNull && unbounded.first?["peak_percent"] is NSNull)
            let cells = try await client.get("/api/places/floor/utilisation/heatmap?from=2024-05-06T00:00:00Z&to=2024-05-07T00:00:00Z").object()["cells"] as? [[String: Any]]
            #expect(cells?.allSatisfy { $0["avg_percent"] is NSNull } == true)
            #expect(try await client.get("/api/places/nowhere/utilisation").status == .notFound)
            #expect(try await client.get("/api/places/floor/utilisation/heatmap?from=2024-05-06T00:00:00Z&to=2024-05-13T00:00:00Z").status == .ok)
        }
    }

    /// With the privacy switch, a bucket that 1 to k-1 people made is withheld; empty buckets and
    /// busier ones are shown.
    @Test(arguments: Engine.available)
    func thePrivacySwitchWithholdsSmallFigures(engine: Engine) async throws {
        var environment = try await TestEnvironment.make(engine)
        environment.configuration.privacyK = 5
        try await environment.withApp { client in
            try await Self.post(client, "door", "2024-05-06T09:15:00Z", in: 6)
            try await Self.post(client, "door", "2024-05-06T10:15:00Z", out: 4)
            try await Self.post(client, "door", "2024-05-06T11:15:00Z", out: 2)
            let hours = try await Self.buckets(client, "/api/sensors/door/utilisation?from=2024-05-06T09:00:00Z&to=2024-05-06T13:00:00Z&bucket=1h")
            #expect(hours.map { $0["suppressed"] as? Bool } == [false, false, true, false])
            #expect(hours[2]["avg"] is NSNull && hours[2]["peak"] is NSNull)
            #expect(hours[3]["peak"] as? Int == 0)
        }
    }

    /// Rows stored before the hour and day rollups existed are rolled up by the migration into
    /// what ingest now writes (the instants of extremes to the minute).
    @Test(arguments: Engine.available)
    func theMigrationRollsUpHistory(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withDatabase { database in
            let ingest = SensorIngest(database: database, feed: ChangeFeed.unheard())
            var events: [SensorEvent] = []
            for i in 0..<300 {
                let ts = Timestamp(rfc3339: "2024-05-06T00:00:00Z")!.microseconds + Int64(i) * 517_000_000
                events.append(SensorEvent(sensor: i % 3 == 0 ? "a" : "b", ts: Timestamp(microseconds: ts), inCount: Int64(i % 5), outCount: Int64(i % 4)))
            }
            _ = try await ingest.submit(Array(events[100...]))
            _ = try await ingest.submit(Array(events[..<100]))
            let (from, to) = (Timestamp(rfc3339: "2024-05-05T00:00:00Z")!.microseconds, Timestamp(rfc3339: "2024-05-09T00:00:00Z")!.microseconds)
            func rows(_ level: RollupLevel) async throws -> [Rollup] {
                try await database.read { db in
                    try await SensorsRepository.rollups(sensor: "a", level: level, from: from, to: to, db: db).rows
                        + SensorsRepository.rollups(sensor: "b", level: level, from: from, to: to, db: db).rows
                }
            }
            let (hours, days) = (try await rows(.hour), try await rows(.day))
            #expect(hours.count > 24 && days.count == 2 * 2)

            let v14 = try #require(Migrations.all.first { $0.version == 14 })
            try await database.transaction { db in
                for statement in ["DROP TABLE sensor_hours", "DROP TABLE sensor_days"] + ["low_us", "high_us", "area"].map({ "ALTER TABLE sensor_minutes DROP COLUMN \($0)" }) {
                    try await db.raw(SQLQueryString(statement)).run()
                }
                for statement in v14.statements(database) { try await db.raw(SQLQueryString(statement)).run() }
            }
            for (level, ingested) in [(RollupLevel.hour, hours), (.day, days)] {
                let migrated = try await rows(level)
                #expect(migrated.count == ingested.count)
                for (m, i) in zip(migrated, ingested) {
                    #expect(m.start == i.start && m.entries == i.entries && m.exits == i.exits && m.balanceBefore == i.balanceBefore && m.low == i.low && m.high == i.high)
                    #expect(abs(m.area - i.area) < 1e-6 * max(1, abs(i.area)), "area \(m.area) against \(i.area)")
                    #expect(m.highAt == RollupLevel.minute.start(of: i.highAt) && m.lowAt == RollupLevel.minute.start(of: i.lowAt))
                }
            }
        }
    }

    /// Past hours are read from memory, and still follow what another instance writes: a late
    /// event there rewrites them, an event in time order finalises the hour that held the latest.
    /// 4 in at 09:15, 2 out at 12:30; then 1 out at 10:30 (late), 1 in at 14:10.
    @Test(arguments: Engine.available)
    func pastHoursHeldInMemoryFollowOtherInstances(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        let hours = "/api/sensors/door/utilisation?bucket=1h&from=2024-05-06T09:00:00Z"
        try await environment.withApp { reader in
            try await environment.withApp { writer in
                try await Self.post(writer, "door", "2024-05-06T09:15:00Z", in: 4)
                try await Self.post(writer, "door", "2024-05-06T12:30:00Z", out: 2)
                // Hours 09-11 are final (held from now on); 12 holds the latest event.
                #expect(try await Self.buckets(reader, hours + "&to=2024-05-06T13:00:00Z").map { $0["avg"] as? Double } == [3, 4, 4, 3])
                #expect(try await Self.buckets(reader, hours + "&to=2024-05-06T13:00:00Z").map { $0["avg"] as? Double } == [3, 4, 4, 3])

                try await Self.post(writer, "door", "2024-05-06T10:30:00Z", out: 1)
                #expect(try await Self.buckets(reader, hours + "&to=2024-05-06T13:00:00Z").map { $0["avg"] as? Double } == [3, 3.5, 3, 2])
                try await Self.post(writer, "door", "2024-05-06T14:10:00Z", in: 1)
                // 14:00-15:00: 1 × 10 min + 2 × 50 min.
                let after = try await Self.buckets(reader, hours + "&to=2024-05-06T15:00:00Z")
                #expect(after.map { $0["avg"] as? Double } == [3, 3.5, 3, 2, 1, 1.83])
                #expect(after.map { $0["peak"] as? Int } == [4, 4, 3, 3, 1, 2])
                // A report starting earlier reads further back; one starting later, from the middle.
                #expect(
                    try await Self.buckets(reader, "/api/sensors/door/utilisation?bucket=1h&from=2024-05-06T08:00:00Z&to=2024-05-06T10:00:00Z").map { $0["avg"] as? Double } == [
                        0, 3,
                    ])
                #expect(
                    try await Self.buckets(reader, "/api/sensors/door/utilisation?bucket=1h&from=2024-05-06T11:00:00Z&to=2024-05-06T12:00:00Z").map { $0["min"] as? Int } == [3])

                // UTC days are read from day rows: the 6th is final once the 7th has an event.
                // 4 × 1h15 + 3 × 2h + 1 × 1h40 + 2 × 9h50 = 32.33 person-hours over 24 hours.
                try await Self.post(writer, "door", "2024-05-07T08:00:00Z", out: 2)
                let day = "/api/sensors/door/utilisation?bucket=1d&from=2024-05-06T00:00:00Z&to=2024-05-07T00:00:00Z"
                for _ in 0..<2 {
                    let days = try await Self.buckets(reader, day)
                    #expect(days.map { $0["avg"] as? Double } == [1.35] && days.map { $0["peak"] as? Int } == [4])
                }
            }
        }
        // What is held is used: a row changed behind the server's back is not seen (in a report
        // reaching past the latest event, so not an answer held whole) until the sensor's past is revised.
        let report = "/api/sensors/door/utilisation?bucket=1h&from=2024-05-06T09:00:00Z&to=2024-05-08T00:00:00Z"
        try await environment.withApp { reader in
            #expect(try await Self.buckets(reader, report).first?["avg"] as? Double == 3)
            try await Self.expectHeldUntilRevised(reader, report, environment)
        }
    }

    /// A report over a settled period (before the sensor's latest event) is answered from memory,
    /// and still moves with what another instance writes: a late event, an adjustment, a capacity.
    /// A report reaching past the latest event is never kept. 4 in at 09:15, 2 out at 12:30.
    @Test(arguments: Engine.available)
    func settledReportsHeldInMemoryFollowOtherInstances(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        let settled = "/api/sensors/door/utilisation?bucket=1h&from=2024-05-06T09:00:00Z&to=2024-05-06T12:00:00Z"
        let heatmap = "/api/sensors/door/utilisation/heatmap?from=2024-05-06T09:00:00Z&to=2024-05-06T12:00:00Z"
        try await environment.withApp { reader in
            try await environment.withApp { writer in
                try await Self.post(writer, "door", "2024-05-06T09:15:00Z", in: 4)
                try await Self.post(writer, "door", "2024-05-06T12:30:00Z", out: 2)
                for _ in 0..<2 { #expect(try await Self.buckets(reader, settled).map { $0["avg"] as? Double } == [3, 4, 4]) }
                func mondayTen() async throws -> Double? {
                    let cells = try await reader.get(heatmap).object()["cells"] as? [[String: Any]]
                    return cells?.first { $0["weekday"] as? Int == 1 && $0["hour"] as? Int == 10 }?["avg"] as? Double
                }
                #expect(try await mondayTen() == 4)

                try await Self.post(writer, "door", "2024-05-06T10:30:00Z", out: 1)
                #expect(try await Self.buckets(reader, settled).map { $0["avg"] as? Double } == [3, 3.5, 3])
                #expect(try await mondayTen() == 3.5)
                let adjustment = jsonText(["inside": 5, "at": "2024-05-06T11:00:00Z"])
                #expect(try await writer.post("/api/sensors/door/adjustments", adjustment, headers: Self.admin).status == .created)
                #expect(try await Self.buckets(reader, settled).map { $0["avg"] as? Double } == [3, 3.5, 5])
                // The same instant again replaces it.
                let again = jsonText(["inside": 9, "at": "2024-05-06T11:00:00Z"])
                #expect(try await writer.post("/api/sensors/door/adjustments", again, headers: Self.admin).status == .created)
                #expect(try await Self.buckets(reader, settled).map { $0["avg"] as? Double } == [3, 3.5, 9])
                #expect(try await writer.put("/api/sensors/door/settings", #"{"capacity": 10}"#, headers: Self.admin).status == .ok)
                #expect(try await Self.buckets(reader, settled).map { $0["avg_percent"] as? Double } == [30, 35, 90])

                // Until 14:00 reaches past the latest event: an event in time order moves it
                // (7 inside since 12:30 with the adjustment to 9 at 11:00; 2 more at 13:30).
                let open = "/api/sensors/door/utilisation?bucket=1h&from=2024-05-06T13:00:00Z&to=2024-05-06T14:00:00Z"
                #expect(try await Self.buckets(reader, open).map { $0["avg"] as? Double } == [7])
                try await Self.post(writer, "door", "2024-05-06T13:30:00Z", in: 2)
                #expect(try await Self.buckets(reader, open).map { $0["avg"] as? Double } == [8])

                // What is held is used: a row changed behind the server's back is not seen until
                // the sensor's past is revised.
                try await Self.expectHeldUntilRevised(reader, settled, environment)
            }
        }
    }

    /// Adds 10 to door's 09:00 hour behind the server's back: `report`, whose first bucket averaged
    /// 3, still says 3 (what is held is used) until the sensor's `revisions` moves, then 13.
    static func expectHeldUntilRevised(_ reader: any TestClientProtocol, _ report: String, _ environment: TestEnvironment) async throws {
        let nine = Timestamp(rfc3339: "2024-05-06T09:00:00Z")!.microseconds
        try await environment.withDatabase { database in
            try await database.transaction { db in
                try await db.raw("UPDATE sensor_hours SET area = area + 36000 WHERE sensor = 'door' AND start_us = \(bind: nine)").run()
            }
        }
        #expect(try await Self.buckets(reader, report).first?["avg"] as? Double == 3, "held")
        try await environment.withDatabase { database in
            try await database.transaction { db in try await db.raw("UPDATE sensors SET revisions = revisions + 1").run() }
        }
        #expect(try await Self.buckets(reader, report).first?["avg"] as? Double == 13, "read again")
    }

    @Test func memoryKeepsTheRecentlyUsedWithinItsBudget() {
        let cache = MemoryCache<String, Int>(budget: 10)
        cache.store(1, for: "a", weight: 3)
        cache.store(2, for: "b", weight: 3)
        #expect(cache["a"] == 1)
        // 11 of 10: the least recently used go until a quarter of the budget is free.
        cache.store(3, for: "c", weight: 5)
        #expect(cache["a"] == 1 && cache["b"] == nil && cache["c"] == 3, "b was used least recently")
        cache.store(4, for: "a", weight: 2)
        #expect(cache["a"] == 4 && cache["c"] == 3, "a replaced, not added: 7 of 10")
        cache.store(5, for: "huge", weight: 11)
        #expect(cache["huge"] == nil && cache["a"] == 4 && cache["c"] == 3)
    }
}
