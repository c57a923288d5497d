import Foundation
import Logging
import PostgresKit
import PostgresNIO
import SQLKit
import ServiceLifecycle
import Synchronization

/// PostgreSQL through a `PostgresClient` pool: the engine for several stateless instances.
///
/// An outage must neither hang the server nor be answered with 500s:
/// - a connection is waited for at most 2 s; a statement runs at most 30 s (the server's
///   `statement_timeout`, answered with 503); an operation the server stops answering is given
///   up on 5 s after that, and its connection closed (see `Deadlines`); a transaction given up on
///   before its commit rolls back;
/// - a failed connection or a missed deadline has a connection of its own, outside the pool,
///   check the server: only a server that is gone marks the database down (a busy pool, or one
///   broken or stuck session, refuses only its own request). While down, every call fails at
///   once with `DatabaseUnavailable` (503 with `Retry-After`) and a probe asks twice a second;
///   its first answer marks the database up again;
/// - at start, refused credentials or a missing database are a bad setting (exit 2), while an
///   unreachable server is waited for in the background with the server already listening, its
///   `/health` answering 503 until the database is reachable and migrated.
final class PostgresEngine: Database {
    let engine = DatabaseEngine.postgres
    let caches = Caches()
    let client: PostgresClient
    static let leaseTimeout: Duration = .seconds(2)

    private enum State { case starting, up, down }
    private let state = Mutex((state: State.starting, since: ContinuousClock.now))
    private let deadlines = Deadlines()
    /// Beyond the statement timeout and a margin, the server is not answering at all.
    private let overrun: Duration
    private let server: PostgresServer
    private let startupParameters: [(String, String)]
    private let logger: Logger
    /// Why the server could not be reached when the engine was opened, if it could not.
    private let unreachableAtOpen: String?
    /// Migrations still to run, when the server was unreachable at start.
    private let pendingStart = Mutex<(@Sendable () async throws -> Void)?>(nil)
    /// Whether a connection of its own is checking, after a lease timed out, that the server is there.
    private let checking = Atomic(false)
    private let hotRows = Mutex<Coalescer<SharedWrite>?>(nil)

    /// Lets the start and the probe through while the database is not up for everyone else.
    @TaskLocal private static var bypassesGate = false
    /// Migrations run without a statement timeout or an overrun: building an index may take long.
    @TaskLocal private static var migrating = false

    /// Opens the pool after one connection has checked the credentials: one the server refuses
    /// is a `ConfigurationError`; a server that cannot be reached is waited for (see `start`).
    static func open(url: String, statementTimeout: Duration = .seconds(30), logger: Logger) async throws -> PostgresEngine {
        let server = try PostgresServer(url: url)
        let unreachable = try await server.checkCredentials(startupParameters: startupParameters(statementTimeout), logger: logger)
        return PostgresEngine(server: server, unreachable: unreachable, statementTimeout: statementTimeout, logger: logger)
    }

    private init(server: PostgresServer, unreachable: String?, statementTimeout: Duration, logger: Logger) {
        var configuration = PostgresClient.Configuration(
            host: server.host, port: server.port, username: server.username, password: server.password, database: server.database, tls: .disable
        )
        configuration.options.maximumConnections = 16
        configuration.options.connectTimeout = PostgresServer.connectTimeout
        let startupParameters = Self.startupParameters(statementTimeout)
        configuration.options.additionalStartupParameters = startupParameters
        // The pool logs every failed connection attempt at info; this engine says when the database goes and comes back.
        var poolLogger = logger
        poolLogger.logLevel = max(logger.logLevel, .warning)
        self.client = PostgresClient(configuration: configuration, backgroundLogger: poolLogger)
        self.startupParameters = startupParameters
        self.server = server
        self.logger = logger
        self.unreachableAtOpen = unreachable
        self.overrun = statementTimeout + .seconds(5)
        hotRows.withLock {
            $0 = Coalescer { [weak self] _, batch in
                guard let self else { return batch.forEach { $0.fail(CancellationError()) } }
                do {
                    SharedWrite.succeed(try await self.transaction { db in try await SharedWrite.runEach(batch, db: db) })
                } catch {
                    batch.forEach { $0.fail(error) }
                }
            }
        }
    }

    /// The server itself ends a statement that runs too long, and a transaction left idle.
    static func startupParameters(_ statementTimeout: Duration) -> [(String, String)] {
        let milliseconds = statementTimeout.milliseconds
        return [("statement_timeout", "\(milliseconds)"), ("idle_in_transaction_session_timeout", "\(milliseconds * 2)")]
    }

    func start(migrating migrate: @escaping @Sendable () async throws -> Void, waitForServer: Bool) async throws {
        if let unreachable = unreachableAtOpen {
            guard !waitForServer else { throw DatabaseUnavailable(reason: "PostgreSQL at \(server.location) is unreachable (\(unreachable))") }
            logger.warning("PostgreSQL at \(server.location) is unreachable (\(unreachable)); answering 503 until it is")
            pendingStart.withLock { $0 = migrate }
            setState(.down)
            return
        }
        try await Self.$bypassesGate.withValue(true) { try await Self.$migrating.withValue(true) { try await migrate() } }
        setState(.up)
    }

    // MARK: Reads and transactions

    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await withConnection(leaseTimeout: Self.leaseTimeout, overrun: overrun) { connection, _ in
            try await body(connection.sql(queryLogLevel: .trace))
        }
    }

    func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        let migrating = Self.migrating
        return try await withConnection(leaseTimeout: Self.leaseTimeout, overrun: migrating ? nil : overrun) { connection, mayCommit in
            let db = connection.sql(queryLogLevel: .trace)
            try await db.raw("BEGIN").run()
            do {
                if migrating { try await db.raw("SET LOCAL statement_timeout = 0").run() }
                let result = try await body(db)
                // A caller told 503 (or gone) must find nothing done.
                guard mayCommit() else { throw CancellationError() }
                try await db.raw("COMMIT").run()
                return result
            } catch {
                try? await db.raw("ROLLBACK").run()
                throw error
            }
        }
    }

    func transaction<T: Sendable>(
        sharing key: String?, _ body: @escaping @Sendable (any SQLDatabase) async throws -> T, committed: @escaping @Sendable (T) -> Void
    ) async throws -> T {
        guard let key else {
            let result = try await transaction(body)
            committed(result)
            return result
        }
        if let unavailable = gateClosed() { throw unavailable }
        guard let hotRows = hotRows.withLock({ $0 }) else { throw CancellationError() }
        let write: @Sendable (any SQLDatabase) async throws -> T = { db in
            do {
                return try await body(db)
            } catch {
                // Answered on its own, within its savepoint: the database's fault is still a 503.
                throw self.unavailable(error) ?? error
            }
        }
        return try await SharedWrite.awaiting(write, committed: committed) { hotRows.submit($0, key: key) }
    }

    /// Within about 2 s: a connection within 0.9 s, an answer within 0.9 s more.
    func isHealthy() async -> Bool {
        (try? await withConnection(leaseTimeout: .milliseconds(900), overrun: .milliseconds(900)) { connection, _ in
            try await connection.sql().raw("SELECT 1 AS ok").run()
        }) != nil
    }

    /// Runs `body` on a pooled connection within the deadlines, and turns a database that is away
    /// into `DatabaseUnavailable`. `body` is given `mayCommit`: whether its caller still waits for
    /// it (from then on, a missed deadline leaves the outcome unknown).
    private func withConnection<T: Sendable>(
        leaseTimeout: Duration, overrun: Duration?, _ body: @escaping @Sendable (PostgresConnection, _ mayCommit: @escaping @Sendable () -> Bool) async throws -> T
    ) async throws -> T {
        if !Self.bypassesGate, let unavailable = gateClosed() { throw unavailable }
        let id = deadlines.begin(leaseTimeout: leaseTimeout, overrun: overrun)
        let reply = Reply<T>()
        // A task of its own, so that its caller can be answered while it still waits.
        let work = Task { [client, deadlines] in
            defer { deadlines.end(id) }
            do {
                let value = try await client.withConnection { connection in
                    guard deadlines.leased(id, close: { let _: EventLoopFuture<Void> = connection.close() }) else { throw CancellationError() }
                    return try await withTaskExecutorPreference(LoopExecutor(connection.eventLoop)) {
                        try await body(connection) { deadlines.commit(id) }
                    }
                }
                reply.deliver(.success(value))
            } catch {
                // An operation given up on has been answered, and its connection closed on purpose.
                if !reply.delivered { reply.deliver(.failure(self.unavailable(error) ?? error)) }
            }
        }
        deadlines.attach(id) { outcome in
            // Withdraws a lease still waiting; a running transaction rolls back instead of committing.
            work.cancel()
            let reason =
                switch outcome {
                case .leaseTimedOut: "no connection to PostgreSQL within \(leaseTimeout)"
                case .overran: "PostgreSQL did not answer within \(overrun ?? .zero)"
                case .overranCommitting: "PostgreSQL did not confirm a commit within \(overrun ?? .zero): its outcome is unknown"
                }
            self.checkServer()
            reply.deliver(.failure(DatabaseUnavailable(reason: reason)))
        }
        // Shutting down cancels the caller, who then stops waiting, whatever the database does.
        return try await withTaskCancellationHandler {
            try await reply.wait()
        } onCancel: {
            deadlines.end(id)
            work.cancel()
            reply.deliver(.failure(CancellationError()))
        }
    }

    // MARK: Up and down

    private func gateClosed() -> DatabaseUnavailable? {
        switch state.withLock({ $0.state }) {
        case .up: nil
        case .starting: DatabaseUnavailable(reason: "PostgreSQL is not ready yet")
        case .down: DatabaseUnavailable(reason: "PostgreSQL is unavailable")
        }
    }

    private func setState(_ new: State, cause: String? = nil) {
        let old = state.withLock { current -> (state: State, since: ContinuousClock.Instant) in
            defer { if current.state != new { current = (new, .now) } }
            return current
        }
        guard old.state != new else { return }
        if new == .down, old.state == .up { logger.error("PostgreSQL at \(server.location) is unavailable: \(cause ?? "no answer"); answering 503 until it answers") }
        if new == .up, old.state == .down { logger.notice("PostgreSQL at \(server.location) answers again after \(ContinuousClock.now - old.since)") }
    }

    /// A lease or an answer waited too long: the pool is busy or one session is stuck, or the
    /// server is gone. A connection of its own, outside the pool, tells which; only a server that
    /// is gone marks the database down.
    private func checkServer() {
        guard checking.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        Task {
            defer { checking.store(false, ordering: .relaxed) }
            let unreachable: String?
            do { unreachable = try await server.checkCredentials(startupParameters: startupParameters, logger: logger) } catch { unreachable = "\(error)" }
            if let unreachable { setState(.down, cause: unreachable) }
        }
    }

    /// The error as `DatabaseUnavailable` when it says the database, not the request, is at
    /// fault: a failed connection (then a connection of its own finds whether the server is gone,
    /// or only this session), a statement cancelled by the server's `statement_timeout`, or the
    /// pool refusing (shut down, or no connection could be made for a minute).
    private func unavailable(_ error: any Error) -> DatabaseUnavailable? {
        // postgres-nio 1.33 throws its pool's own error type, which it does not export.
        if String(reflecting: type(of: error)).hasSuffix(".ConnectionPoolError") {
            checkServer()
            return DatabaseUnavailable(reason: "PostgreSQL's connection pool refused: \(error)")
        }
        guard let error = error as? PSQLError else { return nil }
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
            checkServer()
            return DatabaseUnavailable(reason: PostgresServer.describe(error))
        case .server:
            guard let sqlState = error.serverInfo?[.sqlState] else { return nil }
            if sqlState == "57014" { return DatabaseUnavailable(reason: "PostgreSQL cancelled a statement that ran too long") }
            // Classes 08 (connection exception), 53 (insufficient resources), 57 (operator intervention: shutting down).
            guard ["08", "53", "57"].contains(String(sqlState.prefix(2))) else { return nil }
            checkServer()
            return DatabaseUnavailable(reason: PostgresServer.describe(error))
        default:
            return nil
        }
    }

    // MARK: Lifetime

    func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.client.run() }
            group.addTask { try? await cancelWhenGracefulShutdown { try await self.watch() } }
            group.addTask {
                try? await cancelWhenGracefulShutdown {
                    while true {
                        try await Task.sleep(for: .milliseconds(100))
                        self.deadlines.sweep()
                    }
                }
            }
        }
    }

    /// While the database is down (or was unreachable at start), asks twice a second whether it
    /// answers; at the first answer, runs what start left pending and marks it up.
    private func watch() async throws {
        while true {
            try await Task.sleep(for: .milliseconds(500))
            guard state.withLock({ $0.state }) == .down else { continue }
            await Self.$bypassesGate.withValue(true) {
                guard await isHealthy() else { return }
                if let migrate = pendingStart.withLock({ $0 }) {
                    do {
                        try await Self.$migrating.withValue(true) { try await migrate() }
                        pendingStart.withLock { $0 = nil }
                    } catch {
                        logger.error("could not migrate PostgreSQL at \(server.location): \(error)")
                        return
                    }
                }
                setState(.up)
            }
        }
    }

    func close() async {}
}
