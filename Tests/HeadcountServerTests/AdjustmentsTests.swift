import Foundation
import HummingbirdTesting
import Logging
import Testing

@testable import HeadcountServer

/// Drift control: adjustments beside the raw events, and daily resets.
@Suite("Adjustments") struct AdjustmentsTests {
    static let admin = WorkersTests.admin

    /// A recount sets the count from its instant on; readings before it, late events before it and
    /// the raw events are left as they were; series and the raw CSV show it.
    @Test(arguments: Engine.available)
    func aRecountSetsTheCountFromItsInstantOn(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            func post(_ ts: String, in inCount: Int) async throws {
                #expect(try await client.post("/api/webhook", jsonText(["sensor": "door", "ts": ts, "in_count": inCount, "out": 0])).status == .ok)
            }
            func inside(_ at: String? = nil) async throws -> Int? {
                try await client.get("/api/sensors/door/occupancy" + (at.map { "?atInstant=\($0)" } ?? "")).object()["inside"] as? Int
            }
            try await post("2024-05-01T10:00:00Z", in: 10)
            let body = #"{"inside": 3, "at": "2024-05-01T10:30:00Z", "reason": "recount", "by": "Ada"}"#
            #expect(try await client.post("/api/sensors/door/adjustments", body).status == .unauthorized)
            let made = try await client.post("/api/sensors/door/adjustments", body, headers: Self.admin)
            #expect(made.status == .created)
            #expect(try made.object()["made_by"] as? String == "Ada" && made.object()["inside"] as? Int == 3)
            #expect(try await inside() == 3)
            #expect(try await inside("2024-05-01T10:15:00Z") == 10, "before the recount")
            #expect(try await inside("2024-05-01T10:45:00Z") == 3)

            try await post("2024-05-01T11:00:00Z", in: 2)
            #expect(try await inside() == 5)
            // A late event before the recount changes the past, not the count after it.
            try await post("2024-05-01T10:20:00Z", in: 4)
            #expect(try await inside() == 5)
            #expect(try await inside("2024-05-01T10:25:00Z") == 14)
            #expect(try await inside("2024-05-01T11:30:00Z") == 5)

            let series = try #require(
                try await client.get("/api/sensors/door/occupancy/series?from=2024-05-01T10:00:00Z&to=2024-05-01T12:00:00Z&bucket=1h").object()["series"]
                    as? [[String: Any]])
            #expect(series.map { $0["last"] as? Int } == [3, 5])
            #expect(series.first?["max"] as? Int == 14, "the raw peak before the recount")

            let csv = try await client.get("/api/sensors/door/events.csv").text.components(separatedBy: "\r\n").filter { !$0.isEmpty }
            #expect(csv.first == "ts,sensor,in_count,out_count,id,kind,inside,reason,by")
            #expect(csv.count == 5, "three events and the recount")
            #expect(csv[3] == "2024-05-01T10:30:00Z,door,,,,adjustment,3,recount,Ada", "in time order: \(csv)")
            #expect(csv[2].hasPrefix("2024-05-01T10:20:00Z,door,4,0,,event"))
            let listed = try await client.get("/api/sensors/door/adjustments").object()["adjustments"] as? [[String: Any]]
            #expect(listed?.count == 1 && listed?.first?["reason"] as? String == "recount")

            #expect(try await client.post("/api/sensors/ghost/adjustments", #"{"inside": 0}"#, headers: Self.admin).status == .notFound)
            #expect(try await client.post("/api/sensors/door/adjustments", #"{"inside": 0, "at": "2999-01-01T00:00:00Z"}"#, headers: Self.admin).status == .unprocessableContent)
            #expect(try await client.post("/api/sensors/door/adjustments", #"{"inside": 10000000}"#, headers: Self.admin).status == .unprocessableContent)
            #expect(try await client.get("/api/sensors/ghost/adjustments").status == .notFound)
        }
    }

    /// The latest reset instant in a zone, across both DST changes of 2024 in Paris.
    @Test func resetInstantsFollowTheLocalClock() {
        var settings = SensorSettings(sensor: "door")
        settings.resetTime = "03:00"
        settings.resetTimeZone = "Europe/Paris"
        let at = { (text: String) in Timestamp(rfc3339: text)!.microseconds }
        #expect(settings.lastReset(before: at("2024-01-15T12:00:00Z"))?.rfc3339 == "2024-01-15T02:00:00Z", "CET")
        #expect(settings.lastReset(before: at("2024-03-31T12:00:00Z"))?.rfc3339 == "2024-03-31T01:00:00Z", "the first CEST morning")
        #expect(settings.lastReset(before: at("2024-10-27T12:00:00Z"))?.rfc3339 == "2024-10-27T02:00:00Z", "back to CET")
        #expect(settings.lastReset(before: at("2024-01-15T01:00:00Z"))?.rfc3339 == "2024-01-14T02:00:00Z", "before today's: yesterday's")
    }

    /// A due daily reset brings the count to zero once, whichever round makes it.
    @Test(arguments: Engine.available)
    func dailyResetsAreMadeOnce(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withDatabase { database in
            let feed = ChangeFeed.unheard()
            let ingest = SensorIngest(database: database, feed: feed)
            _ = try await ingest.submit([SensorEvent(sensor: "door", ts: Timestamp.now(), inCount: 7, outCount: 0)])
            var settings = SensorSettings(sensor: "door")
            settings.resetTime = "03:00"
            settings.resetTimeZone = "UTC"
            try await settings.save(database: database)
            let watch = Watch(database: database, feed: feed, logger: Logger(label: "test"))
            let later = Timestamp.now().microseconds + 2 * 86_400_000_000
            try await watch.resets(now: later)
            try await watch.resets(now: later)
            let repository = SensorsRepository(database: database)
            let adjustments = try await repository.adjustments(sensor: "door", from: 0, to: Int64.max)
            #expect(adjustments.count == 1 && adjustments.first?.kind == "reset" && adjustments.first?.inside == 0)
            #expect(try await repository.inside(sensor: "door") == 0)
            _ = try await ingest.submit([SensorEvent(sensor: "door", ts: Timestamp(microseconds: later), inCount: 2, outCount: 0)])
            #expect(try await repository.inside(sensor: "door") == 2)
        }
    }
}
