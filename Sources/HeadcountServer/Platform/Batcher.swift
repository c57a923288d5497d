import DequeModule
import Synchronization

/// The one "batch while busy" building block. Items sent while a batch is being handled wait, and
/// go to `handle` together next, in the order they were sent, from one task at a time; a sender
/// never waits for the handling (one that wants its item's outcome carries a continuation in it).
/// Used for SQLite's group commit, the webhooks' group commit, the change feed's deliveries and
/// the relay's `NOTIFY`s.
final class Batcher<Item: Sendable>: Sendable {
    private struct State {
        var pending = Deque<Item>()
        var running = false
        var idle: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    private let executor: (any TaskExecutor)?
    private let maxWeight: Int
    private let weight: @Sendable (Item) -> Int
    private let handle: @Sendable ([Item]) async -> Void

    /// A batch takes waiting items while their total `weight` stays within `maxWeight` (always at
    /// least one item, so one heavier item goes alone). Batches are handled on `executor`, if given.
    init(
        on executor: (any TaskExecutor)? = nil, maxWeight: Int = .max, weight: @escaping @Sendable (Item) -> Int = { _ in 1 },
        handle: @escaping @Sendable ([Item]) async -> Void
    ) {
        self.executor = executor
        self.maxWeight = maxWeight
        self.weight = weight
        self.handle = handle
    }

    func send(_ item: Item) {
        let lead = state.withLock { state in
            state.pending.append(item)
            defer { state.running = true }
            return !state.running
        }
        if lead { Task(executorPreference: executor) { await self.drain() } }
    }

    /// Returns once nothing is waiting or being handled.
    func idle() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state in
                if state.running { state.idle.append(continuation) }
                return !state.running
            }
            if now { continuation.resume() }
        }
    }

    private func drain() async {
        while let batch = next() { await handle(batch) }
    }

    private func next() -> [Item]? {
        let (batch, idle) = state.withLock { state -> ([Item]?, [CheckedContinuation<Void, Never>]) in
            guard let first = state.pending.first else {
                state.running = false
                defer { state.idle.removeAll() }
                return (nil, state.idle)
            }
            var (take, total) = (1, weight(first))
            while take < state.pending.count {
                let next = weight(state.pending[take])
                guard total + next <= maxWeight else { break }
                total += next
                take += 1
            }
            defer { state.pending.removeFirst(take) }
            return (Array(state.pending.prefix(take)), [])
        }
        idle.forEach { $0.resume() }
        return batch
    }
}
