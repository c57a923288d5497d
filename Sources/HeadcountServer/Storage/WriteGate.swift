import DequeModule

/// A FIFO lock for async code: SQLite allows one writer at a time, and queueing writers here,
/// rather than in SQLite's busy handler, keeps sqlite-nio's small thread pool free for readers.
actor WriteGate {
    private var locked = false
    private var waiters = Deque<CheckedContinuation<Void, Never>>()

    func lock() async {
        if !locked {
            locked = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func unlock() {
        if let next = waiters.popFirst() {
            next.resume()
        } else {
            locked = false
        }
    }
}
