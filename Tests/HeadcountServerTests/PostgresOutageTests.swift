import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PostgresNIO
import SQLKit
import Testing
@testable import HeadcountServer

/// A PostgreSQL cluster of a test's own (`scripts/dev-postgres` on a port of its own), which the
/// test may stop and start again: the shared test server must stay up for everyone else.
/// Runs a program to its end and returns its exit status, without blocking a thread. Not with
/// Foundation's `Process`: it never sees a script end whose daemon (here PostgreSQL) lives on.
func runToCompletion(_ path: String, _ arguments: [String], environment: [String: String]) async throws -> Int32 {
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, path, &actions, nil, argv, envp)
    guard spawned == 0 else { throw POSIXError(POSIXErrorCode(rawValue: spawned) ?? .EIO) }
    var status: Int32 = 0
    while waitpid(pid, &status, WNOHANG) == 0 { try await Task.sleep(for: .milliseconds(50)) }
    return (status >> 8) & 0xFF
}

struct ThrowawayPostgres {
    let port: Int
    var url: String { "postgres://postgres:headcount@127.0.0.1:\(port)/postgres" }

    static var installed: Bool {
        (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql"))?.isEmpty == false
    }

    /// A free port below Linux's ephemeral range, apart from the instances' (20,000-32,000).
    static func freePort() -> Int { Int.random(in: 10_000...19_999) }

    static func start(port: Int = freePort()) async throws -> ThrowawayPostgres {
        let postgres = ThrowawayPostgres(port: port)
        try await postgres.script()
        return postgres
    }

    func pause() async throws { try await script("pause") }
    func resume() async throws { try await script("resume") }
    func stop() async { try? await script("stop") }

    private func script(_ argument: String? = nil) async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let environment = ProcessInfo.processInfo.environment.merging(["PGPORT": "\(port)", "PG_FSYNC": "off"]) { $1 }
        let status = try await runToCompletion(root.appendingPathComponent("scripts/dev-postgres").path, argument.map { [$0] } ?? [], environment: environment)
        guard status == 0 else { throw ScriptFailed(argument: argument ?? "start", status: status) }
    }

    struct ScriptFailed: Error { let argument: String; let status: Int32 }
}

/// PostgreSQL going away, or not being there at start: answers stay fast and honest (503 with
/// `Retry-After`, never 500 or a hang), nothing acknowledged is lost, and the server recovers.
/// Before, `/health` took 15 s to say 503, writes hung 40 s and then answered 500, and a server
/// started without its database neither listened nor stopped on SIGTERM.
@Suite("Hardening: PostgreSQL outages", .enabled(if: Engine.available.contains(.postgres) && ThrowawayPostgres.installed))
struct PostgresOutageTests {
    /// One request, timed.
    static func timed(_ method: HTTPMethod, _ port: Int, _ path: String, _ body: String? = nil) async throws -> (status: UInt, body: String, headers: HTTPHeaders, elapsed: Duration) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let start = ContinuousClock.now
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
        return (response.status.code, text, response.headers, ContinuousClock.now - start)
    }

    static func register(_ port: Int, _ name: String) async throws -> (status: UInt, body: String, headers: HTTPHeaders, elapsed: Duration) {
        try await timed(.POST, port, "/people/register", jsonText(["name": name]))
    }

    /// Waits (up to `limit`) until `/health` answers 200; how long that took.
    static func untilHealthy(_ port: Int, within limit: Duration) async throws -> Duration? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < limit {
            if (try? await timed(.GET, port, "/health"))?.status == 200 { return ContinuousClock.now - start }
            try await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    static func expectUnavailable(_ answer: (status: UInt, body: String, headers: HTTPHeaders, elapsed: Duration)) {
        #expect(answer.status == 503, "\(answer.body)")
        #expect(answer.headers.first(name: "Retry-After") == "2")
        #expect(answer.body.contains(#""error":"database unavailable"#))
        #expect(answer.elapsed < .seconds(3), "answered in \(answer.elapsed)")
    }

    @Test func anOutageIsAFast503AndTheServerRecovers() async throws {
        let postgres = try await ThrowawayPostgres.start()
        defer { Task { await postgres.stop() } }
        let server = try await ServerProcess(database: postgres.url)
        let port = server.port
        let before = (0..<20).map { "before-\($0)" }
        for name in before { #expect(try await Self.register(port, name).status == 200) }

        try await postgres.pause()
        let health = try await Self.timed(.GET, port, "/health")
        #expect(health.status == 503 && health.elapsed < .seconds(2), "\(health.status) after \(health.elapsed)")
        for n in 0..<10 { Self.expectUnavailable(try await Self.register(port, "during-\(n)")) }
        Self.expectUnavailable(try await Self.timed(.POST, port, "/api/webhook", jsonText(["sensor": "s", "ts": "2024-01-01T00:00:00Z", "in_count": 1, "out": 0])))
        let metrics = try await Self.timed(.GET, port, "/metrics")
        #expect(metrics.status == 200 && metrics.body.contains("headcount_database_up 0"))

        try await postgres.resume()
        let recovered = try #require(try await Self.untilHealthy(port, within: .seconds(30)), "healthy again once PostgreSQL is back")
        print("recovered \(recovered) after PostgreSQL came back")
        #expect(try await Self.register(port, "after").status == 200)
        let status = try await Self.timed(.GET, port, "/people/status")
        let occupants = try #require(try JSONSerialization.jsonObject(with: Data(status.body.utf8)) as? [String: Any])["occupants"] as? [String]
        #expect(occupants == before + ["after"], "every acknowledged write kept, none refused stored")
        let stopped = await server.stop()
        #expect(stopped.graceful)
    }

    @Test func anUnreachableServerAtStartIsWaitedForWhileListening() async throws {
        let pgPort = ThrowawayPostgres.freePort()
        let server = try await ServerProcess(database: "postgres://postgres:headcount@127.0.0.1:\(pgPort)/postgres", healthy: false)
        let health = try await Self.timed(.GET, server.port, "/health")
        #expect(health.status == 503 && health.elapsed < .seconds(2))
        Self.expectUnavailable(try await Self.register(server.port, "early"))

        let postgres = try await ThrowawayPostgres.start(port: pgPort)
        defer { Task { await postgres.stop() } }
        #expect(try await Self.untilHealthy(server.port, within: .seconds(30)) != nil, "migrated and healthy once PostgreSQL is there")
        #expect(try await Self.register(server.port, "late").status == 200)
        #expect(await server.stop().graceful)
    }

    @Test func sigtermEndsTheServerWhileItsDatabaseIsUnreachable() async throws {
        let server = try await ServerProcess(database: "postgres://postgres:headcount@127.0.0.1:\(ThrowawayPostgres.freePort())/postgres", healthy: false)
        _ = try? await Self.register(server.port, "waiting")
        let stopped = await server.stop()
        #expect(stopped.graceful && stopped.elapsed < .seconds(10), "stopped in \(stopped.elapsed)")
    }

    /// A statement stuck behind a lock is cancelled by the server at the statement timeout (its
    /// transaction rolled back), and a caller that cannot get a connection is given up on at the
    /// lease deadline; both are told the database is unavailable, later callers at once, until a
    /// probe finds it answering again.
    @Test func deadlinesBoundEveryOperation() async throws {
        let url = try await createPostgresDatabase(base: try #require(Engine.postgresURL))
        let engine = try await PostgresEngine.open(url: url, statementTimeout: .seconds(4), logger: Logger(label: "test"))
        let components = try #require(URLComponents(string: url))
        let holder = try await PostgresConnection.connect(configuration: .init(
            host: "127.0.0.1", port: components.port!, username: "postgres", password: components.password, database: String(components.path.dropFirst()), tls: .disable
        ), id: 1, logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await engine.run() }
            defer { group.cancelAll() }
            try await engine.start(migrating: { try await engine.transaction { try await $0.raw("CREATE TABLE scratch (n BIGINT)").run() } }, waitForServer: true)
            _ = try await holder.query("BEGIN").get()
            _ = try await holder.query("LOCK TABLE scratch IN ACCESS EXCLUSIVE MODE").get()

            // 16 transactions (every pooled connection) wait on the lock; a 17th waits for a
            // connection; an 18th comes once the 17th has been given up on.
            let start = ContinuousClock.now
            let outcomes = await withTaskGroup(of: (Int, String, Duration).self) { writers in
                for n in 0..<18 {
                    writers.addTask {
                        if n == 16 { try? await Task.sleep(for: .milliseconds(500)) }
                        if n == 17 { try? await Task.sleep(for: .milliseconds(3200)) }
                        let started = ContinuousClock.now
                        do {
                            try await engine.transaction { try await $0.raw("INSERT INTO scratch (n) VALUES (\(bind: n))").run() }
                            return (n, "stored", ContinuousClock.now - started)
                        } catch let error as DatabaseUnavailable {
                            return (n, error.reason, ContinuousClock.now - started)
                        } catch {
                            return (n, "\(error)", ContinuousClock.now - started)
                        }
                    }
                }
                return await writers.reduce(into: [(Int, String, Duration)]()) { $0.append($1) }
            }
            #expect(ContinuousClock.now - start < .seconds(6))
            for (n, reason, elapsed) in outcomes.sorted(by: { $0.0 < $1.0 }) {
                switch n {
                case 16:
                    #expect(reason.hasPrefix("no connection to PostgreSQL within"), "\(n): \(reason)")
                    #expect(elapsed >= .seconds(2) && elapsed < .seconds(3), "\(n): \(elapsed)")
                case 17:
                    #expect(reason == "PostgreSQL is unavailable", "refused at once while down: \(reason)")
                    #expect(elapsed < .milliseconds(100), "\(n): \(elapsed)")
                default:
                    #expect(reason == "PostgreSQL cancelled a statement that ran too long", "\(n): \(reason)")
                    #expect(elapsed >= .seconds(4) && elapsed < .seconds(5), "\(n): \(elapsed)")
                }
            }
            _ = try await holder.query("ROLLBACK").get()
            var back: Duration?
            let released = ContinuousClock.now
            while back == nil, ContinuousClock.now - released < .seconds(10) {
                if (try? await engine.read { try await $0.raw("SELECT 1 AS one").run() }) != nil { back = ContinuousClock.now - released }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(back != nil, "up again once connections answer")
            let stored = try await engine.read { try await $0.raw("SELECT COUNT(*) AS n FROM scratch").first()!.decode(column: "n", as: Int.self) }
            #expect(stored == 0, "every cancelled transaction was rolled back")
        }
        try await holder.close()
    }

    /// A wrong password or user, or a missing database, is a bad setting: one line, exit code 2.
    @Test(arguments: [("password", "password authentication failed"), ("user", "password authentication failed"), ("database", "does not exist")])
    func refusedCredentialsAreABadSetting(wrong: String, expected: String) async throws {
        let base = try #require(Engine.postgresURL)
        var url = try #require(URLComponents(string: base))
        switch wrong {
        case "password": url.password = "not-the-password"
        case "user": url.user = "nobody"
        default: url.path = "/no_such_database"
        }
        let (status, output) = try ConfigurationTests().runBinary(["serve", "--database", url.string!, "--admin-key", "test-admin-key-0123456789", "--port", "1"])
        #expect(status == 2)
        #expect(output.hasPrefix("headcount: --database: PostgreSQL at ") && output.contains(expected) && !output.contains("not-the-password"), "\(output)")
        #expect(output.filter { $0 == "\n" }.count == 1)
    }
}
