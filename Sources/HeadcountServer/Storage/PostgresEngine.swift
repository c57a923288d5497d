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
/// - a connection is waited for at most `leaseTimeout`; a statement runs at most 30 s
///   (`statement_timeout`, answered with 503); an operation the server does not answer at all
///   is given up on 5 s later (see `Deadlines`);
/// - a failed connection marks the database down: every call then fails at once with
///   `DatabaseUnavailable` (503 with `Retry-After`) while a probe asks twice a second; its first
///   answer marks the database up again;
/// - at start, refused credentials or a missing database are a bad setting (exit 2), while an
///   unreachable server is waited for in the background with the server already listening, its
///   `/health` answering 503 until the database is reachable and migrated.
final class PostgresEngine: Database {
    let engine = DatabaseEngine.postgres
    let client: PostgresClient
    static let leaseTimeout: Duration = .seconds(2)
    static let connectTimeout: Duration = .seconds(3)
    let deadlines: Deadlines

    private enum State { case starting, up, down }
    private let state = Mutex((state: State.starting, since: ContinuousClock.now))
    /// Migrations still to run, when the server was unreachable at start.
    private let pendingStart = Mutex<(@Sendable () async throws -> Void)?>(nil)
    private let logger: Logger
    private let location: String
    /// Why the server could not be reached when the engine was opened, if it could not.
    private let unreachableAtOpen: String?

    /// Lets the start and the probe through while the database is not up for everyone else.
    @TaskLocal private static var bypassesGate = false

    /// Opens the pool after one connection has checked the credentials: one the server refuses
    /// is a `ConfigurationError`; a server that cannot be reached is waited for (see `start`).
    static func open(url: String, statementTimeout: Duration = .seconds(30), logger: Logger) async throws -> PostgresEngine {
        let server = try Server(url: url)
        let unreachable = try await server.checkCredentials(logger: logger)
        return PostgresEngine(server: server, unreachable: unreachable, statementTimeout: statementTimeout, logger: logger)
    }

    private init(server: Server, unreachable: String?, statementTimeout: Duration, logger: Logger) {
        var configuration = PostgresClient.Configuration(
            host: server.host, port: server.port, username: server.username, password: server.password, database: server.database, tls: .disable
        )
        configuration.options.maximumConnections = 16
        configuration.options.connectTimeout = Self.connectTimeout
        // The server ends a statement that runs too long, and a transaction left idle, itself.
        let milliseconds = statementTimeout.components.seconds * 1000 + statementTimeout.components.attoseconds / 1_000_000_000_000_000
        configuration.options.additionalStartupParameters = [
            ("statement_timeout", "\(milliseconds)"), ("idle_in_transaction_session_timeout", "\(milliseconds * 2)"),
        ]
        // The pool logs every failed connection attempt at info; this engine says when the database goes and comes back.
        var poolLogger = logger
        poolLogger.logLevel = max(logger.logLevel, .warning)
        self.client = PostgresClient(configuration: configuration, backgroundLogger: poolLogger)
        self.logger = logger
        self.location = "\(server.host):\(server.port)"
        self.unreachableAtOpen = unreachable
        // Past the statement timeout and a margin, the server is not answering at all.
        self.deadlines = Deadlines(overrun: statementTimeout + .seconds(5))
    }

    /// Where the server is and whom to connect as, from a `postgres://` URL.
    private struct Server {
        let host: String, port: Int, username: String, password: String?, database: String?

        init(url: String) throws {
            guard let components = URLComponents(string: url), let host = components.host else {
                throw ConfigurationError("--database '\(redacted(url))' is not a PostgreSQL URL; use postgres://user:pass@host:5432/db")
            }
            let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
            self.host = host
            self.port = components.port ?? 5432
            self.username = components.user?.removingPercentEncoding ?? "postgres"
            self.password = components.password?.removingPercentEncoding
            self.database = database.isEmpty ? nil : database
        }

        /// Connects once: throws a `ConfigurationError` when the server refuses the credentials,
        /// returns why it could not be reached when it could not.
        func checkCredentials(logger: Logger) async throws -> String? {
            var configuration = PostgresConnection.Configuration(
                host: host, port: port, username: username, password: password, database: database, tls: .disable
            )
            configuration.options.connectTimeout = .init(PostgresEngine.connectTimeout)
            do {
                let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
                try? await connection.close()
                return nil
            } catch {
                if let refusal = PostgresEngine.refusal(error) {
                    throw ConfigurationError("--database: PostgreSQL at \(host):\(port) refused: \(refusal); check the URL's user, password and database name")
                }
                return PostgresEngine.describe(error)
            }
        }
    }

    func start(migrating migrate: @escaping @Sendable () async throws -> Void, waitForServer: Bool) async throws {
        if let unreachable = unreachableAtOpen {
            guard !waitForServer else { throw DatabaseUnavailable(reason: "PostgreSQL at \(location) is unreachable (\(unreachable))") }
            logger.warning("PostgreSQL at \(location) is unreachable (\(unreachable)); answering 503 until it is")
            pendingStart.withLock { $0 = migrate }
            setState(.down)
            return
        }
        try await Self.$bypassesGate.withValue(true) { try await migrate() }
        setState(.up)
    }

    /// Why the server turned the connection away, when it is the URL's fault: wrong password or
    /// user, missing database, or a server that asks for a password the URL does not give.
    static func refusal(_ error: any Error) -> String? {
        guard let error = error as? PSQLError else { return nil }
        if error.code == .authMechanismRequiresPassword { return "it asks for a password and the URL has none" }
        guard error.code == .server, let sqlState = error.serverInfo?[.sqlState] else { return nil }
        // 28000 invalid authorization, 28P01 invalid password, 3D000 no such database, 42501 no permission to connect.
        guard ["28000", "28P01", "3D000", "42501"].contains(sqlState) else { return nil }
        return error.serverInfo?[.message] ?? sqlState
    }

    // MARK: Reads and transactions

    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await withConnection(leaseTimeout: Self.leaseTimeout) { connection in try await body(connection.sql(queryLogLevel: .trace)) }
    }

    func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await withConnection(leaseTimeout: Self.leaseTimeout) { connection in
            let db = connection.sql(queryLogLevel: .trace)
            try await db.raw("BEGIN").run()
            do {
                let result = try await body(db)
                try await db.raw("COMMIT").run()
                return result
            } catch {
                try? await db.raw("ROLLBACK").run()
                throw error
            }
        }
    }

    func isHealthy() async -> Bool {
        (try? await withConnection(leaseTimeout: .seconds(1)) { try await $0.sql().raw("SELECT 1 AS ok").run() }) != nil
    }

    /// Runs `body` on a pooled connection within the deadlines, and turns a database that is
    /// away into `DatabaseUnavailable` (marking it down when the connection failed).
    private func withConnection<T: Sendable>(leaseTimeout: Duration, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        if !Self.bypassesGate, let unavailable = gateClosed() { throw unavailable }
        let id = deadlines.begin(leaseTimeout: leaseTimeout)
        let answered = Once()
        return try await withCheckedThrowingContinuation { (caller: CheckedContinuation<T, any Error>) in
            // A task of its own, so that its caller can be answered while it still waits.
            let work = Task { [client, deadlines] in
                defer { deadlines.end(id) }
                do {
                    let value = try await client.withConnection { connection in
                        guard deadlines.leased(id) else { throw CancellationError() }
                        return try await body(connection)
                    }
                    if answered.take() { caller.resume(returning: value) }
                } catch {
                    if answered.take() { caller.resume(throwing: self.unavailable(error) ?? error) }
                }
            }
            deadlines.attach(id) { outcome in
                guard answered.take() else { return }
                // Withdraws a lease still waiting; a running operation ends on its own.
                work.cancel()
                let reason = switch outcome {
                case .leaseTimedOut: "no connection to PostgreSQL within \(leaseTimeout)"
                case .overran: "PostgreSQL did not answer within \(self.deadlines.overrun)"
                }
                self.setState(.down, cause: reason)
                caller.resume(throwing: DatabaseUnavailable(reason: reason))
            }
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
        if new == .down, old.state == .up { logger.error("PostgreSQL at \(location) is unavailable: \(cause ?? "no answer"); answering 503 until it answers") }
        if new == .up, old.state == .down { logger.notice("PostgreSQL at \(location) answers again after \(ContinuousClock.now - old.since)") }
    }

    /// The error as `DatabaseUnavailable` when it says the database, not the request, is at
    /// fault: a failed connection (which also marks the database down), or a statement cancelled
    /// by the server's `statement_timeout`.
    private func unavailable(_ error: any Error) -> DatabaseUnavailable? {
        guard let error = error as? PSQLError else { return nil }
        switch error.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
            setState(.down, cause: Self.describe(error))
            return DatabaseUnavailable(reason: Self.describe(error))
        case .server:
            guard let sqlState = error.serverInfo?[.sqlState] else { return nil }
            if sqlState == "57014" { return DatabaseUnavailable(reason: "PostgreSQL cancelled a statement that ran too long") }
            // Classes 08 (connection exception), 53 (insufficient resources), 57 (operator intervention: shutting down).
            guard ["08", "53", "57"].contains(String(sqlState.prefix(2))) else { return nil }
            setState(.down, cause: Self.describe(error))
            return DatabaseUnavailable(reason: Self.describe(error))
        default:
            return nil
        }
    }

    fileprivate static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        return error.serverInfo?[.message] ?? error.underlying.map { "\($0)" } ?? "\(error.code)"
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
                        try await migrate()
                        pendingStart.withLock { $0 = nil }
                    } catch {
                        logger.error("could not migrate PostgreSQL at \(location): \(error)")
                        return
                    }
                }
                setState(.up)
            }
        }
    }

    func close() async {}
}
