import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SQLKit
import Testing

@testable import HeadcountServer

@Suite("Platform") struct PlatformTests {
    @Test func unknownRoutesAre404AndWrongMethods405AsJSON() async throws {
        try await TestEnvironment.make(.sqlite).withApp { client in
            let missing = try await client.get("/no/such/route")
            #expect(missing.status == .notFound)
            #expect(missing.headers[.contentType]?.hasPrefix("application/json") == true)
            #expect(try missing.errorMessage().contains("/no/such/route"))

            let wrong = try await client.execute(uri: "/people/register", method: .get)
            #expect(wrong.status == .methodNotAllowed)
            #expect(wrong.headers[.allow] == "POST")
            _ = try wrong.errorMessage()
            let wrongNamed = try await client.delete("/rooms/lab/people/status")
            #expect(wrongNamed.status == .methodNotAllowed)
            let wrongCSV = try await client.execute(uri: "/people/logs/2024-01-01.csv", method: .post)
            #expect(wrongCSV.status == .methodNotAllowed)
        }
    }

    @Test func bodiesOverTheLimitAre413AndChangeNothing() async throws {
        let environment = try await TestEnvironment.make(.sqlite)
        let big = jsonText(["name": String(repeating: "x", count: 2 << 20)])
        try await environment.withApp { client in
            let response = try await client.post("/people/register", big)
            #expect(response.status == .contentTooLarge)
            _ = try response.errorMessage()
        }
        // Without Content-Length (chunked), the limit holds while reading.
        try await environment.withApp(.live) { client in
            let port = try #require(client.port)
            try await withParallelClient { http in
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/people/register")
                request.method = .POST
                let chunks = stride(from: 0, to: big.utf8.count, by: 65_536).map { ByteBuffer(bytes: Array(big.utf8)[$0..<min($0 + 65_536, big.utf8.count)]) }
                request.body = .stream(chunks.async, length: .unknown)
                let response = try await http.execute(request, timeout: .seconds(30))
                #expect(response.status == .payloadTooLarge)
                let body = try await response.body.collect(upTo: 1 << 20)
                #expect(String(buffer: body).contains("larger than"))
            }
            #expect(try await client.get("/people/status").object()["count"] as? Int == 0)
        }
    }

    @Test func requestIDsAreEchoedOrGenerated() async throws {
        try await TestEnvironment.make(.sqlite).withApp { client in
            let echoed = try await client.get("/health", headers: [.init("X-Request-Id")!: "abc-123"])
            #expect(echoed.headers[.init("X-Request-Id")!] == "abc-123")
            let generated = try await client.get("/health")
            let id = try #require(generated.headers[.init("X-Request-Id")!])
            #expect(id.count == 24)
            let other = try await client.get("/no-route")
            #expect(other.headers[.init("X-Request-Id")!] != id)
        }
    }

    @Test func corsAllowsAnyOrigin() async throws {
        try await TestEnvironment.make(.sqlite).withApp { client in
            let response = try await client.get("/people/status", headers: [.origin: "https://example.org"])
            #expect(response.headers[.accessControlAllowOrigin] == "*")
            let preflight = try await client.execute(
                uri: "/people/register", method: .options,
                headers: [
                    .origin: "https://example.org", .accessControlRequestMethod: "POST",
                ])
            #expect(preflight.status == .noContent || preflight.status == .ok)
            #expect(preflight.headers[.accessControlAllowMethods]?.contains("POST") == true)
        }
    }

    @Test(arguments: Engine.available)
    func healthAndInfo(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let health = try await client.get("/health")
            #expect(health.status == .ok)
            #expect(try health.object() as NSDictionary == ["status": "healthy"])
            let info = try await client.get("/").object()
            #expect(info["name"] as? String == "Headcount")
            let links = try #require(info["links"] as? [String: String])
            #expect(links["docs"] == "/docs" && links["openapi"] == "/openapi.json" && links["dashboard"] == "/dashboard")
        }
    }

    /// A database that does not answer: health says so with 503, and a write is a 500 that
    /// names the request id and nothing of the cause.
    @Test func databaseFailuresAre503OnHealthAnd500JSONElsewhere() async throws {
        let environment = try await TestEnvironment.make(.sqlite)
        let services = AppServices(
            database: BrokenDatabase(), objectStore: try FileObjectStore(root: environment.objectRoot.path),
            adminKey: "test-admin-key-0123456789", secretKey: "test-secret-key-0123456789", logger: Logger(label: "test")
        )
        let app = Application(router: try buildRouter(services, configuration: environment.configuration))
        try await app.test(.router) { client in
            let health = try await client.get("/health")
            #expect(health.status == .serviceUnavailable)
            let failed = try await client.post("/people/register", #"{"name": "Ada"}"#, headers: [.init("X-Request-Id")!: "req-42"])
            #expect(failed.status == .internalServerError)
            let message = try failed.errorMessage()
            #expect(message == "internal error (request id req-42)")
            #expect(!failed.text.contains("secret"))
        }
    }

    @Test func metricsCountRequestsPerRoute() async throws {
        try await TestEnvironment.make(.sqlite).withApp { client in
            _ = try await client.get("/people/status")
            _ = try await client.get("/people/status")
            let metrics = try await client.get("/metrics")
            #expect(metrics.status == .ok)
            #expect(metrics.headers[.contentType]?.hasPrefix("text/plain") == true)
            let lines = metrics.text.split(separator: "\n")
            #expect(lines.contains { $0.hasPrefix("hb_requests") && $0.contains("http_route=\"/people/status\"") })
            #expect(lines.contains { $0.hasPrefix("http_server_request_duration_bucket") && $0.contains("/people/status") })
        }
    }

    /// People inside per room, occupancy per sensor and seats per event, as of the scrape.
    @Test(arguments: Engine.available)
    func metricsCarryDomainGauges(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            _ = try await client.post("/people/register", #"{"name": "Ada"}"#)
            _ = try await client.post("/rooms/lab/people/register", #"{"name": "Bo"}"#)
            _ = try await client.post("/rooms/lab/people/unregister", #"{"name": "Bo"}"#)
            _ = try await client.post("/api/webhook", #"{"sensor": "door \"east\"", "ts": "2024-01-01T10:00:00Z", "in_count": 5, "out": 2}"#)
            _ = try await client.post("/events", jsonText(EventsTests.event("gala", capacity: 1, waitlist: true)))
            try await EventsTests.users(client, 3)
            for i in 0..<3 { _ = try await client.post("/events/gala/registrations", jsonText(["userId": "u\(i)"])) }

            let lines = Set(try await client.get("/metrics").text.split(separator: "\n").map(String.init))
            for expected in [
                #"headcount_room_people_inside{room="main"} 1"#,
                #"headcount_room_people_inside{room="lab"} 0"#,
                #"headcount_sensor_occupancy{sensor="door \"east\""} 3"#,
                #"headcount_event_registrations{event="gala",status="confirmed"} 1"#,
                #"headcount_event_registrations{event="gala",status="waitlisted"} 2"#,
                #"headcount_event_capacity{event="gala"} 1"#,
                "# TYPE headcount_sensor_occupancy gauge",
            ] {
                #expect(lines.contains(expected), "\(expected)")
            }
            _ = try await client.delete("/events/gala")
            #expect(!(try await client.get("/metrics").text.contains(#"event="gala""#)))
        }
    }

    @Test func docsAreServedOffline() async throws {
        try await TestEnvironment.make(.sqlite).withApp { client in
            let page = try await client.get("/docs")
            #expect(page.headers[.contentType]?.hasPrefix("text/html") == true)
            #expect(page.text.contains("/docs/swagger-ui-bundle.js") && !page.text.contains("https://"))
            let bundle = try await client.get("/docs/swagger-ui-bundle.js")
            #expect(bundle.status == .ok && bundle.body.readableBytes > 1_000_000)
            #expect(try await client.get("/docs/swagger-ui.css").status == .ok)
            #expect(try await client.get("/docs/nothing.js").status == .notFound)
            let document = try await client.get("/openapi.json").object()
            #expect(document["openapi"] as? String == "3.1.0")
        }
    }
}

/// A database whose every query fails, as one does when its server is gone.
struct BrokenDatabase: HeadcountServer.Database {
    struct Down: Error, CustomStringConvertible {
        var description: String { "connection refused (secret internals)" }
    }

    let engine = DatabaseEngine.sqlite
    let caches = Caches()
    func read<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T { throw Down() }
    func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T { throw Down() }
    func run() async throws {}
    func close() async {}
}
