import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import Testing

@testable import HeadcountServer

@Suite("Sensor event retention") struct RetentionTests {
    static let admin: HTTPFields = [.authorization: "Bearer test-admin-key-0123456789"]

    /// Three days ago a sensor counted in three minutes and was adjusted in a fourth; an hour ago
    /// once more. Keeping one day drops the old minutes' events whole, but the adjusted minute's:
    /// counts now, series and instants between events answer as before, an instant inside a dropped
    /// minute answers with the count at its start, and nothing older than the kept days gets in.
    @Test(arguments: Engine.available)
    func oldEventsGoInWholeMinutesAndCountsStay(engine: Engine) async throws {
        var environment = try await TestEnvironment.make(engine)
        let day = RollupLevel.day.start(of: Timestamp.now().microseconds) - 3 * RollupLevel.day.length
        @Sendable func at(_ minutes: Int64, _ seconds: Int64 = 0) -> String {
            Timestamp(microseconds: day + 10 * RollupLevel.hour.length + minutes * 60_000_000 + seconds * 1_000_000).rfc3339
        }
        let old = jsonText([
            "events": [
                ["sensor": "door", "ts": at(0, 10), "in_count": 3, "out": 0], ["sensor": "door", "ts": at(0, 50), "in_count": 2, "out": 0],
                ["sensor": "door", "ts": at(5, 20), "in_count": 0, "out": 1], ["sensor": "door", "ts": at(7, 10), "in_count": 1, "out": 0],
                ["sensor": "door", "ts": at(7, 50), "in_count": 1, "out": 0], ["sensor": "door", "ts": at(9, 0), "in_count": 0, "out": 2],
            ]
        ])
        let recent = Timestamp(microseconds: Timestamp.now().microseconds - RollupLevel.hour.length).rfc3339
        let instants = [at(0, 30), at(3), at(7, 30), at(7, 55), at(20)]
        let series = "/api/sensors/door/occupancy/series?bucket=1h&from=\(at(-600))&to=\(at(600))"
        let before = try await environment.withApp { client in
            #expect(try await client.post("/api/webhook/batch", old).status == .ok)
            let adjusted = try await client.post("/api/sensors/door/adjustments", jsonText(["inside": 10, "at": at(7, 30)]), headers: Self.admin)
            #expect(adjusted.status == .created)
            #expect(try await client.post("/api/webhook", jsonText(["sensor": "door", "ts": recent, "in_count": 1, "out": 0])).status == .ok)
            return try await Self.answers(client, instants, series)
        }
        // 3 at minute 0:30, 5 after it; the adjustment makes 5 raw at 7:30 read 10 (offset +5) from then on.
        #expect(before.inside == [3, 5, 10, 11, 9].map(Int64.init))

        environment.configuration.keepSensorEventsDays = 1
        let dropped = try await environment.withDatabase { database in
            let retention = SensorRetention(days: 1, database: database, logger: Logger(label: "test"))
            // A chunk of one event: every chunk a minute, and minute 0 more than a chunk.
            let first = try await retention.sweep(chunk: 1)
            return (first, try await retention.sweep(chunk: 1))
        }
        #expect(dropped.0 == 4 && dropped.1 == 0, "the adjusted minute keeps its 2 events; a second sweep finds nothing")

        try await environment.withApp { client in
            let after = try await Self.answers(client, instants, series)
            // Minute 0 lost its events: its 30th second answers with the count at the minute's start.
            #expect(after.inside == [0, 5, 10, 11, 9].map(Int64.init))
            #expect(after.now == before.now && after.series == before.series)
            let rows = try await client.get("/api/sensors/door/events.csv?to=\(at(600))").text.split(whereSeparator: \.isNewline).dropFirst()
            #expect(rows.filter { $0.hasSuffix(",event,,,") }.map { $0.prefix(16) } == [at(7).prefix(16), at(7).prefix(16)], "\(rows)")
            #expect(rows.count == 3, "the adjustment's row, and the two events of its minute")

            // Nothing older than the kept days gets in, and a refused batch stores none of it.
            let single = try await client.post("/api/webhook", jsonText(["sensor": "door", "ts": at(30), "in_count": 1, "out": 0]))
            #expect(single.status == .badRequest && (single.text.contains("older than the 1 days")))
            let batch = try await client.post(
                "/api/webhook/batch",
                jsonText(["events": [["sensor": "door", "ts": recent, "in_count": 5, "out": 0], ["sensor": "door", "ts": at(30), "in_count": 1, "out": 0]]]))
            #expect(batch.status == .badRequest && (batch.text.contains("events[1]: ts is older")))
            let adjustment = try await client.post("/api/sensors/door/adjustments", jsonText(["inside": 4, "at": at(8)]), headers: Self.admin)
            #expect(adjustment.status == .unprocessableContent)
            #expect(try await Self.answers(client, instants, series).now == before.now)
        }
    }

    static func answers(_ client: any TestClientProtocol, _ instants: [String], _ series: String) async throws -> (inside: [Int64], now: Int64, series: String) {
        var inside: [Int64] = []
        for instant in instants {
            inside.append(Int64(try await client.get("/api/sensors/door/occupancy?atInstant=\(instant)").object()["inside"] as? Int ?? -1))
        }
        let now = Int64(try await client.get("/api/sensors/door/occupancy").object()["inside"] as? Int ?? -1)
        return (inside, now, try await client.get(series).text)
    }
}
