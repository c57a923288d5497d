import Logging
import SQLKit

public enum DatabaseEngine: String, Sendable {
    case sqlite, postgres
}

/// One interface over both engines. Every query is written once with SQLKit's `SQLQueryString`,
/// which binds parameters in each dialect's own way.
public protocol Database: Sendable {
    var engine: DatabaseEngine { get }

    /// What this instance keeps in memory of this database's rows.
    var caches: Caches { get }

    /// Runs `body` on a connection for reading.
    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T

    /// Runs `body` in one transaction: `BEGIN IMMEDIATE` on SQLite, `BEGIN` on PostgreSQL,
    /// `COMMIT` when it returns and `ROLLBACK` when it throws.
    func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T

    /// A transaction whose body, given a `key`, begins by locking one hot parent row named by it
    /// (such as `event:<id>`): other writes to the same key waiting at the time may share it, each
    /// in its own savepoint (`SharedWrite`); on SQLite every write shares its transaction anyway.
    /// `committed` runs after the commit and before the caller hears of it, in commit order among
    /// the writes that shared a transaction (so that what they publish keeps that order).
    func transaction<T: Sendable>(
        sharing key: String?, _ body: @escaping @Sendable (any SQLDatabase) async throws -> T, committed: @escaping @Sendable (T) -> Void
    ) async throws -> T

    /// Where a task that does nothing but issue transactions back to back is best run: SQLite's
    /// writer thread; nil (no preference) on PostgreSQL. Used through `writeBatcher`.
    var writerExecutor: (any TaskExecutor)? { get }

    /// Makes the database ready: checks it can be reached with the configured credentials (a
    /// refusal is a `ConfigurationError`), then runs `migrate`. On PostgreSQL, a server that cannot
    /// be reached is waited for in the background unless `waitForServer` (then it throws
    /// `DatabaseUnavailable`); until it is ready every call throws `DatabaseUnavailable`.
    func start(migrating migrate: @escaping @Sendable () async throws -> Void, waitForServer: Bool) async throws

    /// Whether the database answers a trivial query now, within about a second.
    func isHealthy() async -> Bool

    /// Keeps the engine's connections alive until graceful shutdown, then closes them.
    func run() async throws

    /// Closes the connections of an engine that will not `run()` (its application failed to build).
    func close() async
}

/// The database cannot serve a request now: PostgreSQL is unreachable or not yet ready, or SQLite
/// is out of space or locked. Answered with 503 and `Retry-After`; the request was not carried out
/// (or, if the connection broke while committing, its outcome is unknown: it was never acknowledged).
public struct DatabaseUnavailable: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}

extension Database {
    var writerExecutor: (any TaskExecutor)? { nil }

    func transaction<T: Sendable>(
        sharing key: String?, _ body: @escaping @Sendable (any SQLDatabase) async throws -> T, committed: @escaping @Sendable (T) -> Void
    ) async throws -> T {
        let result = try await transaction(body)
        committed(result)
        return result
    }

    func start(migrating migrate: @escaping @Sendable () async throws -> Void, waitForServer: Bool) async throws {
        try await migrate()
    }

    func isHealthy() async -> Bool {
        (try? await read { db in try await db.raw("SELECT 1 AS ok").first() }) != nil
    }

    /// A batcher for code that does nothing but issue transactions back to back: its batches run
    /// where this database's transactions are cheapest to issue (SQLite's writer thread).
    func writeBatcher<Item: Sendable>(
        maxWeight: Int, weight: @escaping @Sendable (Item) -> Int, handle: @escaping @Sendable ([Item]) async -> Void
    ) -> Batcher<Item> {
        Batcher(on: writerExecutor, maxWeight: maxWeight, weight: weight, handle: handle)
    }

    /// Column type of an auto-incrementing 64-bit primary key.
    var serialPrimaryKey: String {
        engine == .sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT" : "BIGSERIAL PRIMARY KEY"
    }
}

/// Opens the database a location names.
public func openDatabase(_ location: DatabaseLocation, logger: Logger) async throws -> any Database {
    switch location {
    case .sqlite(let path): try await SQLiteEngine.open(path: path, logger: logger)
    case .postgres(let url): try await PostgresEngine.open(url: url, logger: logger)
    }
}

extension SQLDatabase {
    /// Runs statements none of which reads what another writes (each changes rows the others do
    /// not look at): on PostgreSQL as one statement, each but the last a data-modifying `WITH`
    /// part (one round trip instead of one each, which is what a write to a hot row waits on);
    /// on SQLite, in the same process, one after another.
    func runTogether(_ statements: [SQLQueryString]) async throws {
        guard statements.count > 1, dialect.name == "postgresql" else {
            for statement in statements { try await raw(statement).run() }
            return
        }
        let parts = statements.dropLast().enumerated().map { "s\(literal: $0.offset) AS (\($0.element))" as SQLQueryString }
        try await raw("WITH \(parts.joined(separator: ", ")) \(statements.last!)").run()
    }
}
