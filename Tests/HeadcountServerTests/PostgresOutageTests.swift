import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import PostgresNIO
import SQLKit
import Synchronization
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

    /// Runs `body` with a cluster of its own, stopped and deleted however `body` ends.
    static func with(port: Int = freePort(), _ body: (ThrowawayPostgres) async throws -> Void) async throws {
        let postgres = ThrowawayPostgres(port: port)
        try await postgres.script()
        do {
            try await body(postgres)
        } catch {
            await postgres.stop()
            throw error
        }
        await postgres.stop()
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

    struct ScriptFailed: Error {
        let argument: String
        let status: Int32
    }
}

/// PostgreSQL going away, or not being there at start: answers stay fast and honest (503 with
/// `Retry-After`, never 500 or a hang), nothing acknowledged is lost, and the server recovers.
/// Before, `/health` took 15 s to say 503, writes hung 40 s and then answered 500, and a server
/// started without its database neither listened nor stopped on SIGTERM.
@Suite("Hardening: PostgreSQL outages", .enabled(if: Engine.available.contains(.postgres) && ThrowawayPostgres.installed))
struct PostgresOutageTests {
    /// One request, timed.
    static func timed(_ method: HTTPMethod, _ port: Int, _ path: String, _ body: String? = nil) async throws -> (
        status: UInt, body: String, headers: HTTPHeaders, elapsed: Duration
    ) {
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
        #expect(answer.elapsed < .seconds(4), "answered in \(answer.elapsed)")
    }

    @Test func anOutageIsAFast503AndTheServerRecovers() async throws {
        try await ThrowawayPostgres.with { postgres in try await Self.outage(postgres) }
    }

    static func outage(_ postgres: ThrowawayPostgres) async throws {
        let server = try await ServerProcess(database: postgres.url)
        let port = server.port
        let before = (0..<20).map { "before-\($0)" }
        for name in before { #expect(try await Self.register(port, name).status == 200) }

        try await postgres.pause()
        let health = try await Self.timed(.GET, port, "/health")
        #expect(health.status == 503 && health.elapsed < .seconds(3), "\(health.status) after \(health.elapsed)")
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

        try await ThrowawayPostgres.with(port: pgPort) { (_: ThrowawayPostgres) async throws in
            #expect(try await Self.untilHealthy(server.port, within: .seconds(30)) != nil, "migrated and healthy once PostgreSQL is there")
            #expect(try await Self.register(server.port, "late").status == 200)
        }
        #expect(await server.stop().graceful)
    }

    @Test func sigtermEndsTheServerWhileItsDatabaseIsUnreachable() async throws {
        let server = try await ServerProcess(database: "postgres://postgres:headcount@127.0.0.1:\(ThrowawayPostgres.freePort())/postgres", healthy: false)
        _ = try? await Self.register(server.port, "waiting")
        let stopped = await server.stop()
        #expect(stopped.graceful && stopped.elapsed < .seconds(10), "stopped in \(stopped.elapsed)")
    }

    /// An engine on a fresh database of the shared test server, with a table `scratch`, and a
    /// connection of the test's own to the same database.
    static func withEngine(statementTimeout: Duration, _ body: (PostgresEngine, PostgresConnection) async throws -> Void) async throws {
        let url = try await createPostgresDatabase(base: try #require(Engine.postgresURL))
        let engine = try await PostgresEngine.open(url: url, statementTimeout: statementTimeout, logger: Logger(label: "test"))
        let components = try #require(URLComponents(string: url))
        let own = try await PostgresConnection.connect(
            configuration: .init(
                host: "127.0.0.1", port: components.port!, username: "postgres", password: components.password, database: String(components.path.dropFirst()), tls: .disable
            ), id: 1, logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await engine.run() }
            defer { group.cancelAll() }
            try await engine.start(migrating: { try await engine.transaction { try await $0.raw("CREATE TABLE scratch (n BIGINT)").run() } }, waitForServer: true)
            try await body(engine, own)
        }
        try await own.close()
    }

    /// Inserts `n` into `scratch`: "stored", or why not, and how long it took.
    static func insert(_ n: Int, _ engine: PostgresEngine) async -> (outcome: String, elapsed: Duration) {
        let started = ContinuousClock.now
        do {
            try await engine.transaction { try await $0.raw("INSERT INTO scratch (n) VALUES (\(bind: n))").run() }
            return ("stored", ContinuousClock.now - started)
        } catch let error as DatabaseUnavailable {
            return (error.reason, ContinuousClock.now - started)
        } catch {
            return ("\(error)", ContinuousClock.now - started)
        }
    }

    static func stored(_ engine: PostgresEngine) async throws -> Int {
        try await engine.read { try await $0.raw("SELECT COUNT(*) AS n FROM scratch").first()!.decode(column: "n", as: Int.self) }
    }

    /// Statements stuck behind a lock are cancelled by the server at the statement timeout (their
    /// transactions rolled back) and a caller that gets no connection is given up on at the lease
    /// deadline, each told 503; a pool that is only busy does not count as an outage.
    @Test func aBusyPoolRefusesOnlyWhatItCannotServe() async throws {
        try await Self.withEngine(statementTimeout: .seconds(4)) { engine, holder in
            _ = try await holder.query("BEGIN").get()
            _ = try await holder.query("LOCK TABLE scratch IN ACCESS EXCLUSIVE MODE").get()
            // 16 transactions (every pooled connection) wait on the lock; a 17th waits for a
            // connection; an 18th, after the 17th was refused, is not refused at once.
            let outcomes = await withTaskGroup(of: (Int, String, Duration).self) { writers in
                for n in 0..<18 {
                    writers.addTask {
                        if n == 16 { try? await Task.sleep(for: .milliseconds(500)) }
                        if n == 17 {
                            try? await Task.sleep(for: .milliseconds(3000))
                            let started = ContinuousClock.now
                            let read = (try? await engine.read { try await $0.raw("SELECT 1 AS one").run() }) != nil
                            return (n, read ? "read" : "refused", ContinuousClock.now - started)
                        }
                        let (outcome, elapsed) = await Self.insert(n, engine)
                        return (n, outcome, elapsed)
                    }
                }
                return await writers.reduce(into: [(Int, String, Duration)]()) { $0.append($1) }
            }
            for (n, outcome, elapsed) in outcomes.sorted(by: { $0.0 < $1.0 }) {
                switch n {
                case 16:
                    #expect(outcome.hasPrefix("no connection to PostgreSQL within"), "\(n): \(outcome)")
                    #expect(elapsed >= .seconds(2) && elapsed < .seconds(4), "\(n): \(elapsed)")
                case 17:
                    #expect(outcome == "read", "the database was not marked down")
                default:
                    #expect(outcome == "PostgreSQL cancelled a statement that ran too long", "\(n): \(outcome)")
                    #expect(elapsed >= .seconds(4) && elapsed < .seconds(8), "\(n): \(elapsed)")
                }
            }
            _ = try await holder.query("ROLLBACK").get()
            #expect(try await Self.stored(engine) == 0, "every cancelled transaction rolled back")
        }
    }

    /// A server process that stops answering mid-transaction (SIGSTOP: its statement timeout
    /// cannot fire either) is given up on after the timeout and its margin, and its caller told
    /// 503; the rest of the server still answers, so other callers are served; when the process
    /// answers again, the transaction rolls back rather than commit what its caller was told had
    /// failed.
    @Test(.enabled(if: getuid() == 0, "stopping PostgreSQL's process takes root"))
    func aServerThatStopsAnsweringIsGivenUp() async throws {
        try await Self.withEngine(statementTimeout: .seconds(1)) { engine, own in
            let backend = Mutex<Int32?>(nil)
            let frozen = Task {
                let started = ContinuousClock.now
                do {
                    try await engine.transaction { db in
                        let pid = try await db.raw("SELECT pg_backend_pid() AS pid").first()!.decode(column: "pid", as: Int32.self)
                        backend.withLock { $0 = pid }
                        kill(pid, SIGSTOP)
                        try await db.raw("INSERT INTO scratch (n) VALUES (1)").run()
                    }
                    return ("stored", ContinuousClock.now - started)
                } catch let error as DatabaseUnavailable {
                    return (error.reason, ContinuousClock.now - started)
                }
            }
            let (outcome, elapsed) = try await frozen.value
            #expect(outcome.hasPrefix("PostgreSQL did not answer within"), "\(outcome)")
            #expect(elapsed >= .seconds(6) && elapsed < .seconds(12), "\(elapsed)")
            // One stuck session is not an outage.
            try await Task.sleep(for: .milliseconds(500))
            await #expect(throws: Never.self) { try await engine.read { try await $0.raw("SELECT 1 AS one").run() } }

            kill(try #require(backend.withLock { $0 }), SIGCONT)
            try await Task.sleep(for: .seconds(1))
            let rows = try await own.query("SELECT COUNT(*) FROM scratch").get().rows.first?.decode(Int.self)
            #expect(rows == 0, "the transaction given up on did not commit")
        }
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
