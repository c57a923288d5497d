import Logging
import SQLKit

public enum DatabaseEngine: String, Sendable {
    case sqlite, postgres
}

/// One interface over both engines. Every query is written once with SQLKit's `SQLQueryString`,
/// which binds parameters in each dialect's own way.
public protocol Database: Sendable {
    var engine: DatabaseEngine { get }

    /// Runs `body` on a connection for reading.
    func read<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T

    /// Runs `body` in one transaction: `BEGIN IMMEDIATE` on SQLite, `BEGIN` on PostgreSQL,
    /// `COMMIT` when it returns and `ROLLBACK` when it throws.
    func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T

    /// Where a task that does nothing but issue transactions back to back is best run: SQLite's
    /// writer thread; nil (no preference) on PostgreSQL.
    var writerExecutor: (any TaskExecutor)? { get }

    /// Keeps the engine's connections alive until graceful shutdown, then closes them.
    func run() async throws

    /// Closes the connections of an engine that will not `run()` (its application failed to build).
    func close() async
}

extension Database {
    var writerExecutor: (any TaskExecutor)? { nil }

    /// Whether the database answers a trivial query.
    public func isHealthy() async -> Bool {
        (try? await read { db in try await db.raw("SELECT 1 AS ok").first() }) != nil
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
    case .postgres(let url): try PostgresEngine(url: url, logger: logger)
    }
}
