import DequeModule
import Synchronization

/// PostgreSQL's writes to one hot row, shared. Writes that change one parent row (an event's
/// registrations, a room's actions, a tenant's syncs) each lock it first, so on their own they
/// queue on that lock, each holding it for its round trips and its commit. Here, writes to the
/// same key that arrive while one of its batches runs wait, and go together in the next: one
/// transaction, one lock wait and one commit for the lot, each write in its own savepoint
/// (`SharedWrite`). Every write still takes the row's lock, so instances still exclude each other.
/// Not a `Batcher` per key: a key leaves the map as soon as its queue empties, so the many keys
/// that are written once (an event's, a room's) cost nothing afterwards.
final class Coalescer: Sendable {
    /// The most writes one transaction takes, so that none waits behind an endless batch.
    static let maxBatch = 64
    /// The keys with a batch running, and the writes waiting for the next one.
    private let queues = Mutex<[String: Deque<SharedWrite>]>([:])
    private let commit: @Sendable ([SharedWrite]) async -> Void

    /// `commit` runs a batch in one transaction and answers each of its writes.
    init(commit: @escaping @Sendable ([SharedWrite]) async -> Void) {
        self.commit = commit
    }

    func submit(_ write: SharedWrite, key: String) {
        let lead = queues.withLock { queues in
            guard queues[key] == nil else {
                queues[key]!.append(write)
                return false
            }
            queues[key] = [write]
            return true
        }
        if lead { Task { while let batch = next(key) { await commit(batch) } } }
    }

    /// The next batch of `key`, or nil (the key then leaves the map) when none waits.
    private func next(_ key: String) -> [SharedWrite]? {
        queues.withLock { queues in
            guard let waiting = queues[key]?.count, waiting > 0 else {
                queues[key] = nil
                return nil
            }
            let take = min(waiting, Self.maxBatch)
            defer { queues[key]!.removeFirst(take) }
            return Array(queues[key]!.prefix(take))
        }
    }
}
