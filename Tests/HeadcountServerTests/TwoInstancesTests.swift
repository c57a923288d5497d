import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

@testable import HeadcountServer

/// A `headcount serve` process of the built binary, on its own port and data directory.
final class ServerProcess {
    let port: Int
    private let process = Process()
    private let directory: URL

    /// Starts the process and waits until `/health` answers 200, or, unless `healthy`, anything.
    init(database: String, healthy: Bool = true) async throws {
        let binary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/headcount")
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build the binary first: swift build")
        // Below Linux's ephemeral range (32768-60999), so no server of a `.live` test (port 0) and
        // no client socket can be on it; the process must still be running once /health answers.
        port = Int.random(in: 20_000...32_000)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("headcount-instance-\(UUID().uuidString)")
        process.executableURL = binary
        process.arguments = [
            "serve", "--port", "\(port)", "--database", database, "--data-dir", directory.path,
            "--admin-key", "test-admin-key-0123456789", "--log-level", "warning",
        ]
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: directory.appendingPathComponent("log").path, contents: nil)
        let log = try FileHandle(forWritingTo: directory.appendingPathComponent("log"))
        process.standardOutput = log
        process.standardError = log
        try process.run()
        for _ in 0..<200 {
            guard process.isRunning else { break }
            let status = (try? await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/health"), timeout: .seconds(1)))?.status
            if let status, status == .ok || !healthy, process.isRunning { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        await stop()
        throw InstanceDidNotStart(port: port)
    }

    /// A test that failed before stopping its server does not leave it running.
    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    struct InstanceDidNotStart: Error, CustomStringConvertible {
        let port: Int
        var description: String { "headcount did not start on port \(port) (taken?)" }
    }

    /// Stops the process without blocking a thread of the test's executor (there are only as
    /// many as cores): SIGTERM for a graceful stop, SIGKILL if it takes over 10 s. Returns how long
    /// it took and whether the process had ended by itself.
    @discardableResult
    func stop() async -> (elapsed: Duration, graceful: Bool) {
        let start = ContinuousClock.now
        process.terminate()
        while process.isRunning, ContinuousClock.now - start < .seconds(10) { try? await Task.sleep(for: .milliseconds(20)) }
        let graceful = !process.isRunning
        if !graceful { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
        return (ContinuousClock.now - start, graceful && process.terminationStatus == 0)
    }
}

/// Runs `body` with `count` instances on one database and stops them all however it ends.
func withInstances<T>(_ count: Int, database: String, _ body: ([ServerProcess]) async throws -> T) async throws -> T {
    var servers: [ServerProcess] = []
    do {
        for _ in 0..<count {
            // A random port may be taken: try another.
            var attempts = 0
            while true {
                do {
                    servers.append(try await ServerProcess(database: database))
                    break
                } catch is ServerProcess.InstanceDidNotStart where attempts < 3 {
                    attempts += 1
                }
            }
        }
        let result = try await body(servers)
        for server in servers { await server.stop() }
        return result
    } catch {
        for server in servers { await server.stop() }
        throw error
    }
}

/// Several stateless instances on one PostgreSQL: the guarantees hold across processes.
///
/// Runs only with `HEADCOUNT_TEST_INSTANCES=1` (`.ci/run` runs it on its own, after the rest):
/// while it ran alongside the other suites, `.live` apps of those suites were seen shutting their
/// PostgreSQL pool down mid-test and the run hung (in 2 of 3 runs; alone, or with the rest skipped,
/// it never did). The cause is not found yet; the guarantee it checks is still checked in CI.
@Suite("Two instances") struct TwoInstancesTests {
    static var enabled: Bool {
        ProcessInfo.processInfo.environment["HEADCOUNT_TEST_INSTANCES"] == "1" && Engine.available.contains(.postgres)
    }

    @Test(.enabled(if: enabled))
    func registrationsSpreadOverTwoInstancesNeverOverbook() async throws {
        guard let base = Engine.postgresURL else { throw MissingPostgres() }
        try await withInstances(2, database: try await createPostgresDatabase(base: base)) { servers in
            try await Self.race(servers[0].port, servers[1].port)
        }
    }

    /// A change made through one instance reaches a stream subscriber of the other within 1 s.
    @Test(.enabled(if: enabled))
    func changesReachSubscribersOfTheOtherInstance() async throws {
        guard let base = Engine.postgresURL else { throw MissingPostgres() }
        try await withInstances(2, database: try await createPostgresDatabase(base: base)) { servers in
            try await withParallelClient { http in
                let stream = try await SSEClient.connect(port: servers[1].port, path: "/api/stream?topics=sensors,rooms", using: http)
                for (index, server) in servers.enumerated() {
                    let body = ByteBuffer(string: jsonText(["sensor": "hall", "ts": "2024-05-01T10:00:0\(index)Z", "in_count": 2, "out": 0]))
                    #expect(try await send(.POST, port: server.port, "/api/webhook", body: body, using: http).status == 200)
                    let event = await stream.next(within: 1)
                    #expect(event?.type == "sensor.occupancy")
                    #expect(event?.data.contains("\"inside\":\((index + 1) * 2)") == true, "\(String(describing: event))")
                }
                stream.close()
            }
        }
    }

    /// 200 registrations for 50 seats, alternating between the servers on ports `aPort` and `bPort`;
    /// then 25 confirmed leave at once. `tag` keeps the users and the event apart from other runs'.
    static func race(_ aPort: Int, _ bPort: Int, tag: String = "") async throws {

        @Sendable func post(_ port: Int, _ path: String, _ body: String) async throws -> (UInt, String) {
            try await send(.POST, port: port, path, body: ByteBuffer(string: body))
        }
        let event = "shared\(tag)"
        for i in 0..<200 { _ = try await post(i % 2 == 0 ? aPort : bPort, "/users", jsonText(["userId": "u\(i)\(tag)", "name": "User \(i)"])) }
        _ = try await post(aPort, "/events", jsonText(EventsTests.event(event, capacity: 50, waitlist: true)))

        // 200 registrations at once, alternating between the instances.
        let responses = try await withThrowingTaskGroup(of: (UInt, String).self) { group in
            for i in 0..<200 {
                group.addTask { try await post(i % 2 == 0 ? aPort : bPort, "/events/\(event)/registrations", jsonText(["userId": "u\(i)\(tag)"])) }
            }
            return try await group.reduce(into: [(UInt, String)]()) { $0.append($1) }
        }
        let results = responses.map { ($0.0, (try? JSONSerialization.jsonObject(with: Data($0.1.utf8)) as? [String: Any]) ?? [:]) }
        #expect(results.allSatisfy { $0.0 == 201 })
        #expect(results.filter { $0.1["status"] as? String == "confirmed" }.count == 50)
        #expect(Set(results.compactMap { $0.1["position"] as? Int }) == Set(1...150))

        // 25 confirmed leave at once through both instances: exactly the 25 oldest waitlisted move up.
        let confirmed = results.filter { $0.1["status"] as? String == "confirmed" }.compactMap { $0.1["userId"] as? String }
        try await withThrowingTaskGroup(of: UInt.self) { group in
            for (i, user) in confirmed.prefix(25).enumerated() {
                group.addTask { try await send(.DELETE, port: i % 2 == 0 ? aPort : bPort, "/events/\(event)/registrations/\(user)").status }
            }
            for try await status in group { #expect(status == 200) }
        }
        let oldest = results.filter { ($0.1["position"] as? Int ?? .max) <= 25 }.compactMap { $0.1["userId"] as? String }
        let list = try await send(.GET, port: bPort, "/events/\(event)/registrations?status=confirmed")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(list.body.utf8)) as? [[String: Any]])
        #expect(rows.count == 50)
        #expect(Set(oldest).isSubset(of: Set(rows.compactMap { $0["userId"] as? String })))
    }
}
