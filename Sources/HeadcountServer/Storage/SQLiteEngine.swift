import Foundation
import Logging
import NIOCore
import NIOPosix
import SQLKit
import SQLiteKit
import ServiceLifecycle
import Synchronization

/// SQLite in WAL mode: all writes through one connection on its own thread, batched by
/// `GroupCommit`; reads spread over a few more connections (WAL readers never block the writer,
/// nor it them).
final class SQLiteEngine: Database {
    let engine = DatabaseEngine.sqlite
    private let writerThread: WriterThread
    private let writer: SQLiteConnection
    private let readers: [SQLiteConnection]
    private let writes: GroupCommit
    private let nextReader = Atomic<Int>(0)
    var writerExecutor: (any TaskExecutor)? { writerThread }

    private init(writerThread: WriterThread, writer: SQLiteConnection, readers: [SQLiteConnection]) {
        self.writerThread = writerThread
        self.writer = writer
        self.readers = readers
        self.writes = GroupCommit(db: writer.sql(queryLogLevel: .trace))
    }

    static func open(path: String, readerCount: Int = 3, logger: Logger) async throws -> SQLiteEngine {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let writerThread = WriterThread()
        let writer = try await SQLiteConnection.open(storage: .file(path: path), threadPool: writerThread.pool, logger: logger, on: MultiThreadedEventLoopGroup.singleton.any())
        for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=5000", "PRAGMA foreign_keys=ON"] {
            _ = try await writer.sql().raw(SQLQueryString(pragma)).all()
        }
        var readers: [SQLiteConnection] = []
        for _ in 0..<readerCount {
            let reader = try await SQLiteConnection.open(storage: .file(path: path), logger: logger)
            _ = try await reader.sql().raw("PRAGMA busy_timeout=5000").all()
            readers.append(reader)
        }
        return SQLiteEngine(writerThread: writerThread, writer: writer, readers: readers)
    }

    func read<T: Sendable>(_ body: @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        let index = nextReader.add(1, ordering: .relaxed).newValue
        return try await body(readers[index % readers.count].sql(queryLogLevel: .trace))
    }

    func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        let result = Mutex<T?>(nil)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job = GroupCommit.Job(
                run: { db in
                    let value = try await body(db)
                    result.withLock { $0 = value }
                },
                succeed: { continuation.resume(returning: result.withLock { $0! }) },
                fail: { continuation.resume(throwing: $0) }
            )
            Task(executorPreference: writerThread) { [writes] in await writes.submit(job) }
        }
    }

    func run() async throws {
        try? await gracefulShutdown()
        await close()
    }

    func close() async {
        // Let queued writes finish first.
        await writes.drain()
        for connection in readers + [writer] {
            // The future-returning close: the async one gives up when the task is cancelled.
            let closed: EventLoopFuture<Void> = connection.close()
            try? await closed.get()
        }
        await writerThread.shutdown()
    }
}
