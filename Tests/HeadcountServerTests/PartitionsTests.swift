import Foundation
import HummingbirdTesting
import Logging
import SQLKit
import Testing

@testable import HeadcountServer

@Suite("Sensor event partitions (PostgreSQL)", .enabled(if: Engine.available.contains(.postgres)))
struct PartitionsTests {
    /// How many events each partition of `sensor_events` holds.
    static func placement(_ database: any Database) async throws -> [String: Int] {
        try await database.read { db in
            var rows: [String: Int] = [:]
            for row in try await db.raw("SELECT tableoid::regclass::text AS part, COUNT(*) AS n FROM sensor_events GROUP BY 1").all() {
                rows[try row.decode(column: "part", as: String.self)] = try row.decode(column: "n", as: Int.self)
            }
            return rows
        }
    }

    static func partitions(_ database: any Database) async throws -> Set<String> {
        try await database.read { db in Set(try await SensorPartitions.attached(db).map(\.name)) }
    }

    /// Midday on the `day`th of a month counted from January 1970.
    static func at(_ month: Int, day: Int64 = 10) -> String {
        Timestamp(microseconds: SensorPartitions.start(of: month) + (day - 1) * RollupLevel.day.length + 12 * RollupLevel.hour.length).rfc3339
    }

    static func webhook(_ ts: String, in count: Int, id: String? = nil) -> String {
        jsonText(["sensor": "door", "ts": ts, "in_count": count, "out": 0].merging(id.map { ["id": $0] } ?? [:]) { a, _ in a })
    }

    /// Events land in their month's partition, made when the month's first event comes, with the
    /// next month's ahead of it; events outside the window land in the default partition, and
    /// what the default held of a month moves into the month's partition when it is made. Counts
    /// span the partitions, and a resent id is still stored once.
    @Test func eventsLandInTheirMonths() async throws {
        let environment = try await TestEnvironment.make(.postgres)
        let now = SensorPartitions.month(of: Timestamp.now().microseconds)
        let name = SensorPartitions.name(of:)
        // Stored before its month had a partition (as by a server before partitions).
        try await environment.withDatabase { database in
            try await database.transaction { db in
                let ts = Timestamp(rfc3339: Self.at(now - 2))!.microseconds
                try await db.raw("INSERT INTO sensor_events (sensor, ts_us, in_count, out_count, received_us) VALUES ('legacy', \(bind: ts), 1, 0, 0)").run()
            }
            #expect(try await Self.placement(database) == ["sensor_events_default": 1])
            #expect(try await Self.partitions(database) == [name(now), name(now + 1)], "the migration makes this month's and the next")
        }
        try await environment.withApp { client in
            for (ts, count, id) in [(Self.at(now - 2), 2, "a"), (Self.at(now - 1), 3, nil), (Self.at(now, day: 1), 4, nil), ("1999-05-01T00:00:00Z", 5, nil)] {
                #expect(try await client.post("/api/webhook", Self.webhook(ts, in: count, id: id)).status == .ok)
            }
            #expect(try await client.post("/api/webhook", Self.webhook(Self.at(now - 2), in: 2, id: "a")).status == .ok, "a resend")
            #expect(try await client.get("/api/sensors/door/occupancy").object()["inside"] as? Int == 14)
            let before = try await client.get("/api/sensors/door/occupancy?atInstant=\(Self.at(now - 1, day: 20))").object()
            #expect(before["inside"] as? Int == 10, "1999's 5, and the two months before this one")
        }
        let (partitions, placement) = try await environment.withDatabase { database in
            (try await Self.partitions(database), try await Self.placement(database))
        }
        #expect(partitions == [name(now - 2), name(now - 1), name(now), name(now + 1)])
        #expect(placement == [name(now - 2): 2, name(now - 1): 1, name(now): 1, "sensor_events_default": 1], "the legacy row moved into its month; 1999 is outside the window")
    }

    /// A database from before partitions keeps its events and their ids: each lands in its
    /// month's partition (within the window), ids still refuse a resend, and new events are
    /// numbered after the old ones.
    @Test func theMigrationPartitionsWhatIsStored() async throws {
        let environment = try await TestEnvironment.make(.postgres)
        let now = SensorPartitions.month(of: Timestamp.now().microseconds)
        let name = SensorPartitions.name(of:)
        try await environment.withDatabase { database in
            try await database.transaction { db in
                for statement in [
                    "DROP TABLE sensor_events", "DROP TABLE sensor_event_ids", "DROP SEQUENCE sensor_event_seq", "DELETE FROM headcount_migrations WHERE version >= 18",
                ] {
                    try await db.raw(SQLQueryString(statement)).run()
                }
                try await db.raw(
                    """
                    CREATE TABLE sensor_events (seq BIGSERIAL PRIMARY KEY, sensor TEXT NOT NULL, ts_us BIGINT NOT NULL, in_count BIGINT NOT NULL,
                        out_count BIGINT NOT NULL, event_id TEXT, received_us BIGINT NOT NULL, UNIQUE (sensor, event_id))
                    """
                ).run()
                for (ts, id) in [(Self.at(now - 3), "a"), (Self.at(now - 1), nil), ("1999-05-01T00:00:00Z", nil)] {
                    let us = Timestamp(rfc3339: ts)!.microseconds
                    try await db.raw("INSERT INTO sensor_events (sensor, ts_us, in_count, out_count, event_id, received_us) VALUES ('door', \(bind: us), 1, 0, \(bind: id), 0)")
                        .run()
                }
            }
            try await Migrations.run(on: database, logger: Logger(label: "test"))
            #expect(try await Self.placement(database) == [name(now - 3): 1, name(now - 1): 1, "sensor_events_default": 1])
            #expect(try await Self.partitions(database) == [name(now - 3), name(now - 1), name(now), name(now + 1)])
        }
        let statuses = try await environment.withApp { client in
            [
                try await client.post("/api/webhook", Self.webhook(Self.at(now - 3), in: 1, id: "a")).status,
                try await client.post("/api/webhook", Self.webhook(Self.at(now), in: 1, id: "b")).status,
            ]
        }
        #expect(statuses == [.ok, .ok])
        try await environment.withDatabase { database in
            let rows = try await database.read { db in
                try await db.raw("SELECT seq, event_id FROM sensor_events ORDER BY seq").all().map {
                    (try $0.decode(column: "seq", as: Int.self), try $0.decode(column: "event_id", as: String?.self))
                }
            }
            #expect(rows.map(\.1) == ["a", nil, nil, "b"], "the resent a is not stored again; b comes after the three")
        }
    }
    /// A month past the kept days goes whole (its partition dropped), but for the events of its
    /// adjusted minute, which stay (in the default partition) so the adjustment's offset is still
    /// worked out exactly; counts do not move, and the ids of the dropped events are forgotten.
    @Test func aMonthPastTheKeptDaysGoesWhole() async throws {
        let environment = try await TestEnvironment.make(.postgres)
        let now = SensorPartitions.month(of: Timestamp.now().microseconds)
        let day = SensorPartitions.start(of: now - 3) + 9 * RollupLevel.day.length + 10 * RollupLevel.hour.length
        @Sendable func at(_ minutes: Int64, _ seconds: Int64) -> String { Timestamp(microseconds: day + (minutes * 60 + seconds) * 1_000_000).rfc3339 }
        let paths = ["/api/sensors/door/occupancy", "/api/sensors/door/occupancy?atInstant=\(at(0, 35))", "/api/sensors/door/occupancy?atInstant=\(at(6, 0))"]
        let before = try await environment.withApp { client in
            for (ts, count, id) in [(at(0, 10), 3, "a"), (at(0, 40), 1, "b"), (at(5, 0), -1, "c")] {
                let body = jsonText(["sensor": "door", "ts": ts, "in_count": max(count, 0), "out": max(-count, 0), "id": id])
                #expect(try await client.post("/api/webhook", body).status == .ok)
            }
            let adjusted = try await client.post("/api/sensors/door/adjustments", jsonText(["inside": 10, "at": at(0, 30)]), headers: RetentionTests.admin)
            #expect(adjusted.status == .created)
            var answers: [String] = []
            for path in paths { answers.append(try await client.get(path).text) }
            return answers
        }
        let name = SensorPartitions.name(of: now - 3)
        let (swept, again, partitions, placement, ids) = try await environment.withDatabase { database in
            let retention = SensorRetention(keep: SensorKeep(events: 30), database: database, logger: Logger(label: "test"))
            let swept = try await retention.sweep()
            let again = try await retention.sweep()
            let ids = try await database.read { db in
                try await db.raw("SELECT event_id FROM sensor_event_ids ORDER BY event_id").all().map { try $0.decode(column: "event_id", as: String.self) }
            }
            return (swept, again, try await Self.partitions(database), try await Self.placement(database), ids)
        }
        #expect(swept == .init(events: 1) && again == .init(), "the 10:05 event; the adjusted minute keeps its two")
        #expect(!partitions.contains(name))
        #expect(placement == ["sensor_events_default": 2])
        #expect(ids.isEmpty)
        let after = try await environment.withApp { client in
            var answers: [String] = []
            for path in paths { answers.append(try await client.get(path).text) }
            return answers
        }
        #expect(after == before)
    }
}
