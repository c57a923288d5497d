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

        let keep = SensorKeep(events: 1)
        environment.configuration.keepSensor = keep
        let dropped = try await environment.withDatabase { database in
            let retention = SensorRetention(keep: keep, database: database, logger: Logger(label: "test"))
            // A chunk of one event: every chunk a minute, and minute 0 more than a chunk.
            let first = try await retention.sweep(chunk: 1)
            return (first, try await retention.sweep(chunk: 1))
        }
        #expect(dropped.0 == .init(events: 4) && dropped.1 == .init(), "the adjusted minute keeps its 2 events; a second sweep finds nothing")

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

    /// Six days ago a sensor counted in two hours and was adjusted; three days ago in one hour.
    /// Keeping events and minutes a day and hours three (rollups go in whole days, a day behind)
    /// drops three days ago's minutes (but the newest, which carries the count on) and six days
    /// ago's hours (but the newest), and keeps the adjusted day's minutes. Day series stay exact;
    /// an instant answers from the finest level kept there (the count at its hour's or day's
    /// start); a report that needs dropped rows is a 422 naming the setting, also on a running
    /// instance that held the answer from before another one swept.
    @Test(arguments: Engine.available)
    func oldRollupsGoAndAnswersComeFromWhatIsKept(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        let today = RollupLevel.day.start(of: Timestamp.now().microseconds)
        @Sendable func at(_ daysAgo: Int64, _ hours: Int64, _ minutes: Int64, _ seconds: Int64 = 0) -> String {
            Timestamp(microseconds: today - daysAgo * RollupLevel.day.length + ((hours * 60 + minutes) * 60 + seconds) * 1_000_000).rfc3339
        }
        let old = jsonText([
            "events": [
                ["sensor": "door", "ts": at(6, 10, 0, 10), "in_count": 3, "out": 0], ["sensor": "door", "ts": at(6, 10, 5, 20), "in_count": 0, "out": 1],
                ["sensor": "door", "ts": at(6, 12, 30), "in_count": 2, "out": 0], ["sensor": "door", "ts": at(3, 10, 0, 10), "in_count": 1, "out": 0],
                ["sensor": "door", "ts": at(3, 10, 20), "in_count": 1, "out": 0], ["sensor": "door", "ts": at(3, 10, 40), "in_count": 0, "out": 1],
            ]
        ])
        let instants = [at(6, 10, 6), at(6, 10, 8), at(3, 10, 30), at(2, 0, 0)]
        let days = "/api/sensors/door/occupancy/series?bucket=1d&from=\(at(7, 0, 0))&to=\(at(0, 0, 0))"
        let hoursThreeDaysAgo = "/api/sensors/door/occupancy/series?bucket=1h&from=\(at(3, 0, 0))&to=\(at(2, 0, 0))"
        let minutesThreeDaysAgo = "/api/sensors/door/occupancy/series?bucket=5m&from=\(at(3, 10, 0))&to=\(at(3, 11, 0))"
        let hoursSixDaysAgo = "/api/sensors/door/utilisation?bucket=1h&from=\(at(6, 0, 0))&to=\(at(5, 0, 0))"
        try await environment.withApp { client in
            #expect(try await client.post("/api/webhook/batch", old).status == .ok)
            let adjusted = try await client.post("/api/sensors/door/adjustments", jsonText(["inside": 10, "at": at(6, 10, 7, 30)]), headers: Self.admin)
            #expect(adjusted.status == .created)
            var before: [String] = []
            for path in [days, hoursThreeDaysAgo, minutesThreeDaysAgo, hoursSixDaysAgo] {
                let response = try await client.get(path)
                #expect(response.status == .ok, "\(path): \(response.text)")
                before.append(response.text)
            }
            let answered = try await Self.answers(client, instants, days)
            // 2 raw at 10:06 six days ago; the adjustment makes it 10 (offset +8) from 10:07:30 on.
            #expect(answered.inside == [2, 10, 14, 13].map(Int64.init))

            // Another instance sweeps; its first sweep is stopped (a shutdown) while it waits between
            // marking and deleting, so the next has to finish the work.
            let swept = try await environment.withDatabase { database in
                let retention = SensorRetention(keep: SensorKeep(events: 1, minutes: 1, hours: 3), database: database, logger: Logger(label: "test"))
                let stopped = Task { try await retention.sweep(chunk: 1, settle: .seconds(60)) }
                for _ in 0..<600 {
                    let marked = try await database.read { db in
                        try await db.raw("SELECT hours_from_us FROM sensors WHERE sensor = 'door'").first()?.decode(column: "hours_from_us", as: Int64?.self)
                    }
                    if marked != nil { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                stopped.cancel()
                if case .success = await stopped.result { Issue.record("the stopped sweep finished") }
                let first = try await retention.sweep(chunk: 1, settle: .zero)
                let events = try await database.read { db in try await db.raw("SELECT COUNT(*) AS n FROM sensor_events").first()?.decode(column: "n", as: Int.self) }
                return (first, try await retention.sweep(chunk: 1, settle: .zero), events)
            }
            // (On PostgreSQL the stopped sweep may already have dropped a past month's partition whole.)
            #expect(swept.0.minutes == 2 && swept.0.hours == 1, "three days ago's 10:00 and 10:20 minutes, six days ago's 10:00 hour")
            #expect(swept.2 == 0, "every event was older than the kept day")
            #expect(swept.1 == .init())

            let after = try await Self.answers(client, instants, days)
            // Six days ago only days are whole (its instants read the day's start: 0); three days
            // ago hours are (10:00: 4 raw, +8 since six days ago).
            #expect(after.inside == [0, 0, 12, 13].map(Int64.init))
            #expect(after.now == answered.now && after.series == answered.series, "the day series, with its adjusted day, is unchanged")
            #expect(try await client.get(hoursThreeDaysAgo).text == before[1])
            for (path, setting) in [(minutesThreeDaysAgo, "--keep-sensor-minutes"), (hoursSixDaysAgo, "--keep-sensor-hours")] {
                let response = try await client.get(path)
                #expect(response.status == .unprocessableContent && response.text.contains(setting), "\(path): \(response.text)")
            }

            // Two days on, a sweep starts where the last ended: six days ago's last hour, kept then
            // to carry the count, goes now that three days ago's does; the adjusted day stays.
            let later = try await environment.withDatabase { database in
                try await SensorRetention(keep: SensorKeep(events: 1, minutes: 1, hours: 3), database: database, logger: Logger(label: "test"))
                    .sweep(now: Timestamp.now().microseconds + 2 * RollupLevel.day.length, chunk: 1, settle: .zero)
            }
            #expect(later == .init(hours: 1))
            #expect(try await client.get(days).text == answered.series)
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
