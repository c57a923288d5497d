import Foundation
import Logging
import NIOCore
import NIOPosix
import SQLKit
import SQLiteKit
import ServiceLifecycle
import Synchronization

/// SQLite in WAL mode: all writes through one connection on its own thread (`SQLiteWriter`),
/// batched by `GroupCommit`; reads spread over a few SQLiteNIO connections (WAL readers never
/// block the writer, nor it them).
final class SQLiteEngine: Database {
    let engine = DatabaseEngine.sqlite
    let caches = Caches()
    private let writerThread: WriterThread
    private let writer: SQLiteWriter
    private let readers: [SQLiteConnection]
    private let writes: GroupCommit
    private let nextReader = Atomic<Int>(0)
    var writerExecutor: (any TaskExecutor)? { writerThread }

    private init(writerThread: WriterThread, writer: SQLiteWriter, readers: [SQLiteConnection]) {
        self.writerThread = writerThread
        self.writer = writer
        self.readers = readers
        self.writes = GroupCommit(db: writer, writer: writerThread)
    }

    /// Opens (or creates) the file. A path SQLite cannot use is a bad setting: one line, exit 2.
    static func open(path: String, readerCount: Int = 3, logger: Logger) async throws -> SQLiteEngine {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try prepareWritableDirectory(directory, setting: "--database")
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ConfigurationError("--database '\(path)' is a directory; give a SQLite file in it, e.g. --database \(path)/headcount.sqlite")
        }
        let writerThread = WriterThread()
        var writer: SQLiteWriter?
        var readers: [SQLiteConnection] = []
        do {
            let opened = try SQLiteWriter(path: path, logger: logger, eventLoop: MultiThreadedEventLoopGroup.singleton.any())
            writer = opened
            // The first statement reads the file: a file that is not a database fails here. Statement
            // and savepoint journals stay in memory: in a temporary file, their writes were a tenth
            // of the writer's time in a batch of syncs (`perf`).
            for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=5000", "PRAGMA foreign_keys=ON", "PRAGMA temp_store=MEMORY"] {
                try await opened.raw(SQLQueryString(pragma)).run()
            }
            for _ in 0..<readerCount {
                let reader = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
                readers.append(reader)
                _ = try await reader.sql().raw("PRAGMA busy_timeout=5000").all()
            }
        } catch {
            writer?.close()
            for connection in readers { try? await (connection.close() as EventLoopFuture<Void>).get() }
            await writerThread.shutdown()
            let reason = (error as? SQLiteError).map { "\($0.message)" } ?? "\(error)"
            throw ConfigurationError(
                """
                --database '\(path)': SQLite cannot use it (\(reason.split(whereSeparator: \.isNewline).joined(separator: " "))); \
                give a SQLite file this user can read and write, or a new path
                """)
        }
        return SQLiteEngine(writerThread: writerThread, writer: writer!, readers: readers)
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        let index = nextReader.add(1, ordering: .relaxed).newValue
        return try await Self.unavailableOnTransientErrors { try await body(readers[index % readers.count].sql(queryLogLevel: .trace)) }
    }

    func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        try await transaction(sharing: nil, body) { _ in }
    }

    func transaction<T: Sendable>(
        sharing key: String?, _ body: @escaping @Sendable (any SQLDatabase) async throws -> T, committed: @escaping @Sendable (T) -> Void
    ) async throws -> T {
        try await Self.unavailableOnTransientErrors { try await SharedWrite.awaiting(body, committed: committed, submit: writes.submit) }
    }

    /// A full disk, a failing device or a lock held past the busy timeout is no fault of the
    /// request: it is refused with 503 rather than 500.
    private static func unavailableOnTransientErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SQLiteError where [.full, .ioError, .busy, .locked, .busyTimeout, .noMemory].contains(error.reason) {
            throw DatabaseUnavailable(reason: "SQLite: \(error.message)")
        } catch let error as SQLiteFailure where error.isTransient {
            throw DatabaseUnavailable(reason: "SQLite: \(error.message)")
        }
    }

    func run() async throws {
        try? await gracefulShutdown()
        await close()
    }

    func close() async {
        // Let queued writes finish first.
        await writes.drain()
        for connection in readers {
            // The future-returning close: the async one gives up when the task is cancelled.
            let closed: EventLoopFuture<Void> = connection.close()
            try? await closed.get()
        }
        writer.close()
        await writerThread.shutdown()
    }
}
