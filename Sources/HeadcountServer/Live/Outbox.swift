import Synchronization

/// Hands items to `handle` in the order they were sent, from one task at a time, without making
/// the sender wait: whatever piles up while `handle` runs goes to it together next.
final class Outbox<Item: Sendable>: Sendable {
    private let state = Mutex((pending: [Item](), draining: false))
    private let handle: @Sendable ([Item]) async -> Void

    init(_ handle: @escaping @Sendable ([Item]) async -> Void) {
        self.handle = handle
    }

    func send(_ item: Item) {
        let lead = state.withLock { state in
            state.pending.append(item)
            defer { state.draining = true }
            return !state.draining
        }
        if lead { Task { await drain() } }
    }

    private func drain() async {
        while let items = next() { await handle(items) }
    }

    private func next() -> [Item]? {
        state.withLock { state in
            guard !state.pending.isEmpty else {
                state.draining = false
                return nil
            }
            defer { state.pending.removeAll() }
            return state.pending
        }
    }
}
