import Foundation
import HummingbirdTesting
import Logging
import Testing

@testable import HeadcountServer

@Suite("Alerts") struct AlertsTests {
    static let admin = WorkersTests.admin

    /// A count wobbling at the line raises one alert: it clears only 5 % of the capacity below.
    @Test func hysteresis() {
        let thresholds = Thresholds(capacity: 100, warnPercent: 80, criticalPercent: 100)
        var active = false, raised = 0
        for count: Int64 in [70, 79, 80, 79, 80, 78, 76, 75, 80, 74, 79, 80] {
            let now = thresholds.active(.warn, count: count, now: active)
            if now && !active { raised += 1 }
            active = now
        }
        #expect(raised == 2, "at the first 80, and again after falling to 74")
        #expect(thresholds.level(.critical) == 100 && thresholds.margin == 5)
        #expect(Thresholds(capacity: 10, warnPercent: 80, criticalPercent: 100).margin == 1, "at least one person")
    }

    static func post(_ client: some TestClientProtocol, _ sensor: String, in inCount: Int, out: Int, second: Int) async throws {
        let ts = String(format: "2024-05-01T10:%02d:%02dZ", second / 60, second % 60)
        #expect(try await client.post("/api/webhook", jsonText(["sensor": sensor, "ts": ts, "in_count": inCount, "out": out])).status == .ok)
    }

    static func alerts(_ client: some TestClientProtocol, active: Bool = false) async throws -> [[String: Any]] {
        try #require(try await client.get("/api/alerts" + (active ? "?active=true" : "")).object()["alerts"] as? [[String: Any]])
    }

    /// A sensor's thresholds, through HTTP: warn at 80 %, critical at 100 %, each raised once
    /// however the count wobbles, cleared when it falls back; a negative count alerts too.
    @Test(arguments: Engine.available)
    func sensorThresholds(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let settings = try await client.put("/api/sensors/door/settings", #"{"capacity": 10}"#, headers: Self.admin)
            #expect(settings.status == .ok)
            #expect(try settings.object()["warn_percent"] as? Int == 80)
            #expect(try await client.put("/api/sensors/door/settings", #"{"capacity": 10}"#).status == .unauthorized)
            #expect(try await client.put("/api/sensors/door/settings", #"{"warn_percent": 90, "critical_percent": 50}"#, headers: Self.admin).status == .unprocessableContent)

            try await Self.post(client, "door", in: 8, out: 0, second: 0)
            for (second, (inCount, out)) in [(1, 0), (0, 1), (1, 0), (0, 1), (1, 0)].enumerated() {
                try await Self.post(client, "door", in: inCount, out: out, second: second + 1)  // 9, 8, 9, 8, 9
            }
            var alerts = try await Self.alerts(client)
            #expect(alerts.map { $0["kind"] as? String } == ["warn"], "one warning for the wobble")
            #expect(alerts.first?["threshold"] as? Int == 8 && alerts.first?["value"] as? Int == 8)
            try await Self.post(client, "door", in: 1, out: 0, second: 10)  // 10
            alerts = try await Self.alerts(client, active: true)
            #expect(Set(alerts.compactMap { $0["kind"] as? String }) == ["warn", "critical"])
            try await Self.post(client, "door", in: 0, out: 4, second: 11)  // 6
            #expect(try await Self.alerts(client, active: true).isEmpty)
            #expect(try await Self.alerts(client).count == 2)

            // Below zero, then back.
            try await Self.post(client, "lobby", in: 0, out: 2, second: 12)
            let negative = try #require(try await Self.alerts(client, active: true).first)
            #expect(negative["kind"] as? String == "negative" && negative["subject_id"] as? String == "lobby" && negative["value"] as? Int == -2)
            let id = try #require(negative["id"] as? Int)
            let acked = try await client.put("/api/alerts/\(id)/ack", #"{"by": "ops"}"#, headers: Self.admin).object()
            #expect(acked["acked_by"] as? String == "ops" && acked["acked_at"] is String)
            #expect(try await client.put("/api/alerts/\(id)/ack", "{}").status == .unauthorized)
            #expect(try await client.put("/api/alerts/999999/ack", "{}", headers: Self.admin).status == .notFound)
            try await Self.post(client, "lobby", in: 3, out: 0, second: 13)
            #expect(try await Self.alerts(client, active: true).isEmpty)
            #expect(try await client.get("/api/alerts?active=maybe").status == .badRequest)
        }
    }

    /// A sensor that stops posting goes silent (the watcher's clock is the test's), and posting
    /// clears it; a place whose doorways bring it to 80 % of its capacity warns.
    @Test(arguments: Engine.available)
    func silenceAndPlaces(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withDatabase { database in
            let feed = ChangeFeed.unheard()
            let watch = Watch(database: database, feed: feed, logger: Logger(label: "test"))
            let ingest = SensorIngest(database: database, feed: feed)
            var settings = SensorSettings(sensor: "door")
            settings.silentAfterMinutes = 5
            try await settings.save(database: database)
            func post(_ inCount: Int64) async throws {
                _ = try await ingest.submit([SensorEvent(sensor: "door", ts: Timestamp.now(), inCount: inCount, outCount: 0, id: nil)])
            }
            func active() async throws -> [String] {
                try await database.read { db in
                    try await db.raw("SELECT kind, subject_id FROM alerts WHERE cleared_us IS NULL ORDER BY kind").all()
                        .map { "\(try $0.decode(column: "kind", as: String.self)) \(try $0.decode(column: "subject_id", as: String.self))" }
                }
            }
            try await post(1)
            let now = Timestamp.now().microseconds
            try await watch.round(now: now + 4 * 60_000_000)
            #expect(try await active().isEmpty, "4 minutes is not 5")
            try await watch.round(now: now + 6 * 60_000_000)
            try await watch.round(now: now + 7 * 60_000_000)
            #expect(try await active() == ["silent door"], "raised once")
            try await post(1)
            #expect(try await active().isEmpty, "a post clears it")

            let places = PlacesRepository(database: database, feed: feed)
            _ = try await places.create(.init(id: "hall", name: "Hall", parentID: nil, timeZone: "UTC", capacity: 10, staleAfterMinutes: 960))
            try await places.setDoorway(Doorway(sensor: "door", from: nil, to: "hall"))
            try await post(6)  // 8 inside
            try await watch.round(now: Timestamp.now().microseconds)
            #expect(try await active() == ["warn hall"])
            try await watch.round(now: Timestamp.now().microseconds)
            #expect(try await active() == ["warn hall"], "once")
        }
    }
}
