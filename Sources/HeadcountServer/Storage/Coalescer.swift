import DequeModule
import Synchronization

/// Writes to one hot row, gathered. Writes that change one parent row (an event's registrations,
/// a room's actions, a tenant's syncs) each lock it first, so on their own they queue on that
/// lock, each holding it for its round trips and its commit. Here, writes to the same key that
/// arrive while one of its batches runs wait, and go together in the next: one transaction, one
/// lock wait and one commit for the lot. PostgreSQL's shared writes (`SharedWrite`) run each in its
/// own savepoint; a `RowBatcher`'s are decided together, a few statements for the whole batch.
/// Every batch still takes the row's lock, so instances still exclude each other.
/// Not a `Batcher` per key: a key leaves the map as soon as its queue empties, so the many keys
/// that are written once (an event's, a room's) cost nothing afterwards.
final class Coalescer<Item: Sendable>: Sendable {
    /// The most writes one transaction takes, so that none waits behind an endless batch.
    let maxBatch: Int
    /// The keys with a batch running, and the writes waiting for the next one.
    private let queues = Mutex<[String: Deque<Item>]>([:])
    private let commit: @Sendable (_ key: String, [Item]) async -> Void

    /// `commit` runs a batch of `key` in one transaction and answers each of its writes.
    init(maxBatch: Int = 64, commit: @escaping @Sendable (_ key: String, [Item]) async -> Void) {
        self.maxBatch = maxBatch
        self.commit = commit
    }

    func submit(_ write: Item, key: String) {
        let lead = queues.withLock { queues in
            guard queues[key] == nil else {
                queues[key]!.append(write)
                return false
            }
            queues[key] = [write]
            return true
        }
        if lead { Task { while let batch = next(key) { await commit(key, batch) } } }
    }

    /// The next batch of `key`, or nil (the key then leaves the map) when none waits.
    private func next(_ key: String) -> [Item]? {
        queues.withLock { queues in
            guard let waiting = queues[key]?.count, waiting > 0 else {
                queues[key] = nil
                return nil
            }
            let take = min(waiting, maxBatch)
            defer { queues[key]!.removeFirst(take) }
            return Array(queues[key]!.prefix(take))
        }
    }
}

/// Requests that change one hot row, decided together in one transaction: those of a key that
/// arrive while its batch runs go in the next (`Coalescer`), and `decide` answers a whole batch
/// with a few statements, each covering all of it, in arrival order under the row's lock. So a
/// batch costs about what one request did, on PostgreSQL (round trips) and SQLite (the one writer).
/// A request whose caller left while it waited is not decided.
final class RowBatcher<Request: Sendable, Answer: Sendable>: Sendable {
    /// Decides the requests of `key` in order, one answer each (a refusal is a failure); a throw
    /// fails them all, so it must be thrown before anything is committed.
    typealias Decide = @Sendable (_ key: String, _ requests: [Request]) async throws -> [Result<Answer, any Error>]

    private let coalescer: Coalescer<(request: Request, waiting: Waiting<Answer>)>

    init(maxBatch: Int = 64, decide: @escaping Decide) {
        coalescer = Coalescer(maxBatch: maxBatch) { key, batch in
            let batch = batch.filter { $0.waiting.take() }
            guard !batch.isEmpty else { return }
            do {
                let answers = try await decide(key, batch.map(\.request))
                for (item, answer) in zip(batch, answers) { item.waiting.answer(answer) }
            } catch {
                batch.forEach { $0.waiting.answer(.failure(error)) }
            }
        }
    }

    /// Waits for `request`'s answer, decided in a batch of `key`'s.
    func ask(_ request: Request, key: String) async throws -> Answer {
        let waiting = Waiting<Answer>()
        coalescer.submit((request, waiting), key: key)
        return try await waiting.wait()
    }
}
