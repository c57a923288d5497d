import SQLKit
import Synchronization

/// SQLite's writer with group commit. SQLite allows one writer at a time and each commit waits for
/// its fsync, so rather than one transaction per request, the writes waiting when the writer gets
/// free are run together in one transaction, each inside its own savepoint: a write that fails rolls
/// back alone, the others commit together, and nobody hears "done" before that commit is durable.
final class GroupCommit: Sendable {
    struct Job: Sendable {
        /// Runs the caller's body; its result is kept by the closure until `succeed`.
        let run: @Sendable (any SQLDatabase) async throws -> Void
        let succeed: @Sendable () -> Void
        let fail: @Sendable (any Error) -> Void
    }

    /// The most writes one transaction takes, so that none waits behind an endless batch.
    private static let maxBatch = 256
    private let db: any SQLDatabase
    private let batcher = Mutex<Batcher<Job>?>(nil)

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

    func submit(_ job: Job) {
        batcher.withLock { $0 }?.send(job)
    }

    /// Waits until no write is queued or running.
    func drain() async {
        await batcher.withLock { $0 }?.idle()
    }

    private func commit(_ batch: [Job]) async {
        do {
            try await db.raw("BEGIN IMMEDIATE").run()
        } catch {
            batch.forEach { $0.fail(error) }
            return
        }
        // A write alone in its transaction needs no savepoint: its failure rolls back the lot.
        guard batch.count > 1 else {
            do {
                try await batch[0].run(db)
            } catch {
                try? await db.raw("ROLLBACK").run()
                batch[0].fail(error)
                return
            }
            await finish(batch)
            return
        }
        var done: [Job] = []
        for (index, job) in batch.enumerated() {
            do {
                try await db.raw("SAVEPOINT job").run()
                do {
                    try await job.run(db)
                    try await db.raw("RELEASE job").run()
                    done.append(job)
                } catch {
                    try await db.raw("ROLLBACK TO job").run()
                    try await db.raw("RELEASE job").run()
                    job.fail(error)
                }
            } catch {
                // The savepoint itself failed: the transaction cannot be trusted; fail everyone in it.
                try? await db.raw("ROLLBACK").run()
                (done + batch[index...]).forEach { $0.fail(error) }
                return
            }
        }
        await finish(done)
    }

    /// Commits, then answers the jobs that ran.
    private func finish(_ done: [Job]) async {
        do {
            try await db.raw("COMMIT").run()
            done.forEach { $0.succeed() }
        } catch {
            try? await db.raw("ROLLBACK").run()
            done.forEach { $0.fail(error) }
        }
    }
}
