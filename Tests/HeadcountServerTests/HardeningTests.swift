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
                (
                    [
                        AttendanceTests.record(1, employee: "e", at: -9_223_372_036_854_745_000, device: "tab-1"),
                        AttendanceTests.record(2, employee: "e", at: now, device: "tab-1"),
                    ], "records[0].timestamp"
                ),
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
            let audit = try await client.post(
                "/api/audit/sync", jsonText(["audits": [["local_id": 1, "action": "x", "timestamp": Int64.max]]]),
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
                for path in [
                    "/api/sensors/door/occupancy?atInstant=", "/sensors/door/occupancy?atInstant=", "/api/sensors/door/occupancy/series?from=",
                    "/api/sensors/door/occupancy/series?to=", "/api/sensors/door/events.csv?from=", "/people/status?at=", "/rooms/lab/people/status?at=",
                ] {
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

/// What a connection may and may not do.
@Suite("Hardening: connections") struct ConnectionHardeningTests {
    /// NIO's parser refuses these before any route sees them; the answer used to be an empty 400.
    @Test(arguments: [
        ("bad Content-Length", "POST /api/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"),
        ("two Content-Lengths", "POST /api/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
        ("Content-Length with Transfer-Encoding", "POST /api/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("a 100 KB header", "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 100_000))\r\n\r\n"),
        ("2,000 headers", "GET /health HTTP/1.1\r\nHost: x\r\n" + (0..<2000).map { "X-H\($0): 1\r\n" }.joined() + "\r\n"),
    ])
    func unparsableRequestsGetTheJSONErrorBody(situation: String, request: String) async throws {
        try await TestEnvironment.make(.sqlite).withApp(.live) { client in
            let (text, closedAfter) = try await rawExchange(port: try #require(client.port), [(.zero, request)], timeout: .seconds(5))
            #expect(text.hasPrefix("HTTP/1.1 400 "), "\(text)")
            #expect(text.lowercased().contains("content-type: application/json"))
            let body = try #require(text.split(separator: "\r\n\r\n", maxSplits: 1).last)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: String])
            #expect(object["error"]?.hasPrefix("malformed HTTP request") == true && object["detail"] == object["error"])
            #expect(closedAfter != nil, "the connection is closed after the answer")
        }
    }

    @Test func http10ClosesAfterItsAnswerUnlessKeptAlive() async throws {
        try await TestEnvironment.make(.sqlite).withApp(.live) { client in
            let port = try #require(client.port)
            let (text, closedAfter) = try await rawExchange(port: port, [(.zero, "GET /health HTTP/1.0\r\n\r\n")], timeout: .seconds(10))
            #expect(text.hasPrefix("HTTP/1.1 200 ") && text.contains("Connection: close\r\n") && text.hasSuffix(#"{"status":"healthy"}"#))
            #expect(try #require(closedAfter) < .seconds(5))
            let kept = try await rawExchange(port: port, [(.zero, "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")], timeout: .seconds(1))
            #expect(kept.text.contains("Connection: keep-alive\r\n") && kept.closedAfter == nil)
        }
    }

    /// A client trickling header lines held a connection for as long as it liked.
    @Test func aRequestHeadMustArriveWithinTheHeaderTimeout() async throws {
        var environment = try await TestEnvironment.make(.sqlite)
        environment.configuration.headerTimeout = .milliseconds(500)
        try await environment.withApp(.live) { client in
            let trickle =
                [(after: Duration.zero, bytes: "GET /health HTTP/1.1\r\nHost: x\r\n")]
                + (0..<20).map { (after: Duration.milliseconds(200), bytes: "X-Slow-\($0): 1\r\n") }
            let (text, closedAfter) = try await rawExchange(port: try #require(client.port), trickle, timeout: .seconds(2))
            #expect(text.isEmpty)
            let closed = try #require(closedAfter, "closed while still trickling")
            #expect(closed < .seconds(3), "20 lines would have taken 4 s")
            // A head that arrives in time is answered.
            let prompt = try await rawExchange(port: try #require(client.port), [(.zero, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")], timeout: .seconds(2))
            #expect(prompt.text.hasPrefix("HTTP/1.1 200 "))
        }
    }

    /// A body trickling in a byte at a time held its connection and handler for as long as it liked.
    @Test func aRequestBodyMustArriveWithinTheBodyTimeout() async throws {
        var environment = try await TestEnvironment.make(.sqlite)
        environment.configuration.bodyTimeout = .milliseconds(500)
        try await environment.withApp(.live) { client in
            let trickle =
                [(after: Duration.zero, bytes: "POST /api/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")]
                + (0..<20).map { _ in (after: Duration.milliseconds(200), bytes: " ") }
            let (text, closedAfter) = try await rawExchange(port: try #require(client.port), trickle, timeout: .seconds(2))
            let closed = try #require(closedAfter, "closed while the body still trickled")
            #expect(closed < .seconds(3), "20 bytes would have taken 4 s")
            #expect(!text.hasPrefix("HTTP/1.1 200"))
        }
    }

    @Test func idleConnectionsAreClosed() async throws {
        var environment = try await TestEnvironment.make(.sqlite)
        environment.configuration.idleTimeout = .seconds(1)
        try await environment.withApp(.live) { client in
            let (text, closedAfter) = try await rawExchange(port: try #require(client.port), [(.zero, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")], timeout: .seconds(10))
            #expect(text.hasPrefix("HTTP/1.1 200 "))
            let closed = try #require(closedAfter)
            #expect(closed >= .seconds(1) && closed < .seconds(8))
        }
    }

    /// The larger body limit of worker forms is the route's, however its path is spelled; a
    /// trailing slash used to get the 1 MiB JSON limit.
    @Test func uploadLimitsFollowTheRouteNotTheSpelling() async throws {
        try await TestEnvironment.make(.sqlite).withApp { client in
            let image = WorkersTests.jpeg(1_500_000)
            for (index, path) in ["/api/workers/", "//api/workers"].enumerated() {
                let body = WorkersTests.form([WorkersTests.person(document: "DOC-\(index)", email: "a\(index)@example.com"), WorkersTests.image(image)])
                let response = try await client.execute(uri: path, method: .post, headers: WorkersTests.formHeaders, body: body)
                #expect(response.status == .created, "\(path): \(response.text)")
            }
            // The JSON routes keep theirs.
            #expect(try await client.post("/people/register/", jsonText(["name": String(repeating: "x", count: 2 << 20)])).status == .contentTooLarge)
        }
    }

    /// A JPEG header followed by HTML was served as image/jpeg with nothing to stop a browser
    /// sniffing it; and admin routes allowed any origin.
    @Test func servedObjectsCannotActAsPagesAndAdminRoutesAreSameOrigin() async throws {
        try await TestEnvironment.make(.sqlite).withApp { client in
            let html = WorkersTests.jpeg(10) + Array("<html><script>alert(1)</script></html>".utf8)
            let created = try await WorkersTests.upload(client, [WorkersTests.person(), WorkersTests.image(html)])
            let url = try #require((try created.object()["image_urls"] as? [String])?.first)
            let image = try await client.get(url, headers: [.adminToken: WorkersTests.adminKey])
            #expect(image.headers[.contentType] == "image/jpeg")
            #expect(image.headers[.init("X-Content-Type-Options")!] == "nosniff")
            #expect(image.headers[.contentSecurityPolicy]?.contains("default-src 'none'") == true)
            _ = try await client.post("/people/register", jsonText(["name": "Ada"]))
            let day = Timestamp.now().day
            let log = try await client.get("/people/logs/\(day).csv")
            #expect(log.headers[.init("X-Content-Type-Options")!] == "nosniff" && log.headers[.contentSecurityPolicy] != nil)
            #expect(try await client.get("/dashboard").headers[.contentSecurityPolicy] == nil, "Headcount's own pages run their scripts")

            let origin: HTTPFields = [.origin: "https://evil.example", .accessControlRequestMethod: "GET", .accessControlRequestHeaders: "X-Admin-Token"]
            for path in ["/api/workers", "/api/admin/devices", "/api/devices/status", "/api/attendance/sync", "/api/timestamps"] {
                let preflight = try await client.execute(uri: path, method: .options, headers: origin)
                #expect(preflight.headers[.accessControlAllowOrigin] == nil, "\(path)")
                let answer = try await client.get(path, headers: [.origin: "https://evil.example", .adminToken: WorkersTests.adminKey])
                #expect(answer.headers[.accessControlAllowOrigin] == nil, "\(path)")
            }
            let publicPreflight = try await client.execute(uri: "/people/register", method: .options, headers: origin)
            #expect(publicPreflight.headers[.accessControlAllowOrigin] == "*")
            #expect(publicPreflight.headers[.accessControlAllowHeaders]?.contains("X-Admin-Token") == false)
            // The stream's attendance topic takes the admin key too.
            let stream = try await client.execute(uri: "/api/stream?topics=attendance", method: .options, headers: origin)
            #expect(stream.headers[.accessControlAllowOrigin] == nil)
            let refused = try await client.get("/api/admin/devices?tenant_id=A", headers: [.origin: "https://evil.example", .adminToken: WorkersTests.adminKey])
            #expect(refused.headers[.vary] == "Origin", "a cache must not serve one origin's answer to another")
            // An early 413 carries the same headers as every answer.
            let tooLarge = try await client.post("/people/register", jsonText(["name": String(repeating: "x", count: 2 << 20)]))
            #expect(tooLarge.status == .contentTooLarge && tooLarge.headers[.init("X-Content-Type-Options")!] == "nosniff")
        }
        // An operator can name the origins of an admin front end.
        var environment = try await TestEnvironment.make(.sqlite)
        environment.configuration.corsOrigins = [try CORSPolicy.origin("HTTPS://Admin.Example:443")]
        try await environment.withApp { client in
            let preflight = try await client.execute(
                uri: "/api/workers", method: .options,
                headers: [
                    .origin: "https://admin.example", .accessControlRequestMethod: "GET", .accessControlRequestHeaders: "X-Admin-Token",
                ])
            #expect(preflight.headers[.accessControlAllowOrigin] == "https://admin.example")
            #expect(preflight.headers[.accessControlAllowHeaders]?.contains("X-Admin-Token") == true)
            #expect(preflight.headers[.vary] == "Origin")
            let other = try await client.execute(uri: "/api/workers", method: .options, headers: [.origin: "https://evil.example", .accessControlRequestMethod: "GET"])
            #expect(other.headers[.accessControlAllowOrigin] == nil)
        }
    }
}
