import SQLKit
import Synchronization

/// Writes that share one transaction, each inside its own savepoint: a write that fails rolls back
/// alone, the others commit together, and nobody hears "done" before that commit is durable.
/// SQLite runs every write this way (`GroupCommit`); PostgreSQL runs writes to one hot row this
/// way (`Coalescer`).
final class SharedWrite: Sendable {
    private let run: @Sendable (any SQLDatabase) async throws -> Void
    private let succeed: @Sendable () -> Void
    private let failure: @Sendable (any Error) -> Void
    /// Queued, running, or answered. A write is answered once: whoever answers it first, its own
    /// failure or its batch's; a queued write whose caller went away is answered without running.
    private let state = Atomic<UInt8>(SharedWrite.queued)
    private static let (queued, running, answered): (UInt8, UInt8, UInt8) = (0, 1, 2)

    private init(
        run: @escaping @Sendable (any SQLDatabase) async throws -> Void, succeed: @escaping @Sendable () -> Void,
        fail: @escaping @Sendable (any Error) -> Void
    ) {
        (self.run, self.succeed, self.failure) = (run, succeed, fail)
    }

    /// Hands `submit` a write of `body`, and returns its result once that write's transaction
    /// commits, after `committed` ran with it. A caller cancelled while its write still waits
    /// withdraws it (nothing is done); one already running is answered when its transaction ends.
    static func awaiting<T: Sendable>(
        _ body: @escaping @Sendable (any SQLDatabase) async throws -> T, committed: @escaping @Sendable (T) -> Void = { _ in },
        submit: (SharedWrite) -> Void
    ) async throws -> T {
        let result = Mutex<T?>(nil)
        let reply = Reply<T>()
        let write = SharedWrite(
            run: { db in
                let value = try await body(db)
                result.withLock { $0 = value }
            },
            succeed: {
                let value = result.withLock { $0! }
                committed(value)
                reply.deliver(.success(value))
            },
            fail: { reply.deliver(.failure($0)) }
        )
        submit(write)
        return try await withTaskCancellationHandler {
            try await reply.wait()
        } onCancel: {
            if write.state.compareExchange(expected: queued, desired: answered, ordering: .acquiringAndReleasing).exchanged { write.failure(CancellationError()) }
        }
    }

    func fail(_ error: any Error) {
        if answer() { failure(error) }
    }

    private func answer() -> Bool {
        state.exchange(Self.answered, ordering: .acquiringAndReleasing) != Self.answered
    }

    /// Runs `batch` in the open transaction of `db`, each write in its own savepoint (one alone
    /// needs none: its failure fails the transaction), and answers those that failed. Returns those
    /// that ran, for `succeed` once the transaction commits. Throws when the transaction cannot be
    /// trusted; the caller then rolls back and fails the batch.
    static func runEach(_ batch: [SharedWrite], db: any SQLDatabase) async throws -> [SharedWrite] {
        let batch = batch.filter { $0.state.compareExchange(expected: queued, desired: running, ordering: .acquiringAndReleasing).exchanged }
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
        for write in done where write.answer() { write.succeed() }
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
