import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing
@testable import HeadcountServer

/// The reproductions of the hardening review, each as it was sent: every one used to crash, stall
/// or mislead the server.
@Suite("Hardening") struct HardeningTests {
    static let admin = AttendanceTests.admin

    /// An integer from outside that once reached arithmetic unchecked: `Int64.min` as a record's
    /// time trapped the process (`RecordsRepository.swift:93`), and so did two records of one
    /// employee at `-9223372036854745000` and now (`:109`).
    @Test(arguments: Engine.available)
    func overflowingTimesAre422NotACrash(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let token = try await AttendanceTests.device(client, "tab-1")
            let now = Timestamp.now().microseconds / 1000
            let bodies: [([[String: Any]], String)] = [
                ([["local_id": 1, "employee_id": "e", "type": "ENTRY", "timestamp": Int64.min, "device_id": "tab-1"]], "records[0].timestamp"),
                ([AttendanceTests.record(1, employee: "e", at: -9_223_372_036_854_745_000, device: "tab-1"),
                  AttendanceTests.record(2, employee: "e", at: now, device: "tab-1")], "records[0].timestamp"),
                ([AttendanceTests.record(1, at: Int64.max, device: "tab-1")], "records[0].timestamp"),
                ([AttendanceTests.record(1, at: now, device: "tab-1").merging(["created_at": Int64.min]) { $1 }], "records[0].created_at"),
                ([AttendanceTests.record(1, at: now, device: "tab-1"), AttendanceTests.record(2, at: -62_135_596_800_001, device: "tab-1")], "records[1].timestamp"),
            ]
            for (records, field) in bodies {
                let response = try await AttendanceTests.sync(client, token, records)
                #expect(response.status == .unprocessableContent, "\(records)")
                let fields = try #require(try response.object()["fields"] as? [[String: Any]])
                #expect(fields.first?["field"] as? String == field)
                #expect(try response.errorMessage().contains("years 0001-9999"))
            }
            let audit = try await client.post("/api/audit/sync", jsonText(["audits": [["local_id": 1, "action": "x", "timestamp": Int64.max]]]),
                                              headers: AttendanceTests.bearer(token))
            #expect(audit.status == .unprocessableContent)
            let code = try await client.post("/api/admin/activation-codes", jsonText(["tenant_id": "ACME", "expires_at": Int64.max]), headers: Self.admin)
            #expect(code.status == .unprocessableContent)
            for query in ["since=-1", "since=99999999999999999999", "limit=9223372036854775807", "limit=0"] {
                #expect(try await client.get("/api/attendance/updates?\(query)", headers: AttendanceTests.bearer(token)).status == .badRequest, "\(query)")
            }
            // The server is alive and nothing was stored.
            #expect(try await client.get("/health").status == .ok)
            let updates = try await client.get("/api/attendance/updates?since=0", headers: AttendanceTests.bearer(token)).object()
            #expect((updates["updates"] as? [Any])?.isEmpty == true)
            let boundary = try await AttendanceTests.sync(client, token, [AttendanceTests.record(1, at: -62_135_596_800_000, device: "tab-1")])
            #expect(boundary.status == .ok)
            let csv = try await client.get("/api/admin/attendance.csv?tenant_id=ACME", headers: Self.admin).text
            #expect(csv.contains(",0001-01-01T00:00:00Z,"))
        }
    }

    /// Instants outside years 0001-9999 were accepted, then written as `-001-12-31T23:00:00Z` or
    /// `10000-01-01T04:59:59Z`, which no client (Headcount included) parses back.
    @Test(arguments: Engine.available)
    func instantsOutsideYears1To9999AreRefused(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            _ = try await client.post("/api/webhook", jsonText(["sensor": "door", "ts": "2024-01-01T10:00:00Z", "in_count": 1, "out": 0]))
            for bad in ["0000-12-31T23:00:00Z", "9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00"] {
                let encoded = bad.replacingOccurrences(of: "+", with: "%2B")
                #expect(try await client.post("/api/webhook", jsonText(["sensor": "door", "ts": bad, "in_count": 1, "out": 0])).status == .badRequest)
                #expect(try await client.post("/api/webhook/batch", jsonText(["events": [["sensor": "door", "ts": bad, "in_count": 1, "out": 0]]])).status == .badRequest)
                for path in ["/api/sensors/door/occupancy?atInstant=", "/sensors/door/occupancy?atInstant=", "/api/sensors/door/occupancy/series?from=",
                             "/api/sensors/door/occupancy/series?to=", "/api/sensors/door/events.csv?from=", "/people/status?at=", "/rooms/lab/people/status?at="] {
                    #expect(try await client.get(path + encoded).status == .badRequest, "\(path)\(bad)")
                }
                let reservation = ["device_id": "d1", "start_time": bad, "end_time": "2024-01-01T10:00:00Z", "credential": "c"]
                #expect(try await client.post("/set-reservation", jsonText(reservation)).status == .badRequest)
                #expect(try await client.post("/api/reservations", jsonText(reservation)).status == .badRequest)
                let late = ["device_id": "d1", "start_time": "2024-01-01T10:00:00Z", "end_time": bad, "credential": "c"]
                #expect(try await client.post("/set-reservation", jsonText(late)).status == .badRequest)
                let event: [String: Any] = ["title": "t", "description": "d", "date": bad, "location": "l", "capacity": 1, "organizer": "o"]
                #expect(try await client.post("/events", jsonText(event)).status == .unprocessableContent)
            }
            #expect(try await client.get("/people/logs/0000-01-01.csv").status == .badRequest)
            #expect(try await client.get("/api/sensors/door/occupancy").object()["inside"] as? Int == 1)
            #expect(try await client.get("/get-reservation?device_id=d1").status == .notFound)
            #expect(try await client.get("/events").text == "[]")
        }
    }
}
