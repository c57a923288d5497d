import SQLKit
import Synchronization

/// A request waiting for a batch to answer it: taken by its batch at most once, or withdrawn by a
/// caller who leaves while it still waits (then nothing of it is done); answered once, by whoever
/// answers first (its own failure, its batch's, or its caller leaving).
final class Waiting<Answer: Sendable>: Sendable {
    private let reply = Reply<Answer>()
    private let queued = Atomic(true)

    /// Takes it for a batch; false when its caller withdrew it.
    func take() -> Bool { queued.exchange(false, ordering: .acquiringAndReleasing) }

    func answer(_ result: Result<Answer, any Error>) { reply.deliver(result) }

    /// Its answer. A caller who leaves while it is still queued withdraws it; one already taken is
    /// answered when its batch ends.
    func wait() async throws -> Answer {
        try await withTaskCancellationHandler {
            try await reply.wait()
        } onCancel: {
            if take() { answer(.failure(CancellationError())) }
        }
    }
}

/// Writes that share one transaction, each inside its own savepoint: a write that fails rolls back
/// alone, the others commit together, and nobody hears "done" before that commit is durable.
/// SQLite runs every write this way (`GroupCommit`); PostgreSQL runs writes to one hot row this
/// way (`Coalescer`).
final class SharedWrite: Sendable {
    private let run: @Sendable (any SQLDatabase) async throws -> Void
    private let take: @Sendable () -> Bool
    private let succeed: @Sendable () -> Void
    private let failure: @Sendable (any Error) -> Void

    private init(
        run: @escaping @Sendable (any SQLDatabase) async throws -> Void, take: @escaping @Sendable () -> Bool, succeed: @escaping @Sendable () -> Void,
        fail: @escaping @Sendable (any Error) -> Void
    ) {
        (self.run, self.take, self.succeed, self.failure) = (run, take, succeed, fail)
    }

    /// Hands `submit` a write of `body`, and returns its result once that write's transaction
    /// commits, after `committed` ran with it (see `Waiting` for a caller who leaves).
    static func awaiting<T: Sendable>(
        _ body: @escaping @Sendable (any SQLDatabase) async throws -> T, committed: @escaping @Sendable (T) -> Void = { _ in },
        submit: (SharedWrite) -> Void
    ) async throws -> T {
        let result = Mutex<T?>(nil)
        let waiting = Waiting<T>()
        submit(
            SharedWrite(
                run: { db in
                    let value = try await body(db)
                    result.withLock { $0 = value }
                },
                take: { waiting.take() },
                succeed: {
                    let value = result.withLock { $0! }
                    committed(value)
                    waiting.answer(.success(value))
                },
                fail: { waiting.answer(.failure($0)) }
            ))
        return try await waiting.wait()
    }

    /// Answers it with `error`, unless it was answered already.
    func fail(_ error: any Error) {
        failure(error)
    }

    /// Runs `batch` in the open transaction of `db`, each write in its own savepoint (one alone
    /// needs none: its failure fails the transaction), and answers those that failed. Returns those
    /// that ran, for `succeed` once the transaction commits. Throws when the transaction cannot be
    /// trusted; the caller then rolls back and fails the batch.
    static func runEach(_ batch: [SharedWrite], db: any SQLDatabase) async throws -> [SharedWrite] {
        let batch = batch.filter { $0.take() }
        guard batch.count > 1 else {
            for write in batch { try await write.run(db) }
            return batch
        }
        var done: [SharedWrite] = []
        for write in batch {
            try await db.raw("SAVEPOINT job").run()
            do {
                try await write.run(db)
                try await db.raw("RELEASE job").run()
                done.append(write)
            } catch {
                try await db.raw("ROLLBACK TO job").run()
                try await db.raw("RELEASE job").run()
                write.fail(error)
            }
        }
        return done
    }

    /// Answers the writes that ran, in their order, once their transaction committed.
    static func succeed(_ done: [SharedWrite]) {
        // A write that ran was taken, so only its batch answers it; those that failed alone are not here.
        for write in done { write.succeed() }
    }
}

/// SQLite's writer with group commit. SQLite allows one writer at a time and each commit waits for
/// its fsync, so rather than one transaction per request, the writes waiting when the writer gets
/// free run together in one transaction (see `SharedWrite`).
final class GroupCommit: Sendable {
    /// The most writes one transaction takes, so that none waits behind an endless batch.
    private static let maxBatch = 256
    private let db: any SQLDatabase
    private let batcher = Mutex<Batcher<SharedWrite>?>(nil)

    /// Batches run on `writer`, the thread of `db`'s connection.
    init(db: any SQLDatabase, writer: any TaskExecutor) {
        self.db = db
        batcher.withLock {
            $0 = Batcher(on: writer, maxWeight: Self.maxBatch) { [weak self] batch in
                guard let self else { return batch.forEach { $0.fail(CancellationError()) } }
                await self.commit(batch)
            }
        }
    }

    func submit(_ write: SharedWrite) {
        batcher.withLock { $0 }?.send(write)
    }

    /// Waits until no write is queued or running.
    func drain() async {
        await batcher.withLock { $0 }?.idle()
    }

    private func commit(_ batch: [SharedWrite]) async {
        do {
            try await db.raw("BEGIN IMMEDIATE").run()
            let done: [SharedWrite]
            do {
                done = try await SharedWrite.runEach(batch, db: db)
                try await db.raw("COMMIT").run()
            } catch {
                try? await db.raw("ROLLBACK").run()
                throw error
            }
            SharedWrite.succeed(done)
        } catch {
            // Those already answered (their own failure) keep their answer.
            batch.forEach { $0.fail(error) }
        }
    }
}
