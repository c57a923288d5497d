import Synchronization

/// The operations in flight on PostgreSQL and their deadlines, swept by one watchdog every 100 ms
/// (a timer of its own per query cost a tenth of a cheap read's throughput). An operation still
/// waiting for a connection after its lease timeout, or running past its overrun deadline (the
/// server's statement timeout has then failed to answer too), is given up on: its caller is told
/// at once, and the operation, if it ever gets its connection, does not run.
final class Deadlines: Sendable {
    enum Outcome: Sendable { case leaseTimedOut, overran }

    private struct Operation {
        let started: ContinuousClock.Instant
        let leaseTimeout: Duration
        var leased = false
        var giveUp: (@Sendable (Outcome) -> Void)?
    }

    /// How long a leased operation may run before it is given up on.
    let overrun: Duration
    private let state = Mutex((next: 0, operations: [Int: Operation]()))

    init(overrun: Duration) {
        self.overrun = overrun
    }

    /// A new operation, waiting for a connection; `attach` says how to give up on it.
    func begin(leaseTimeout: Duration) -> Int {
        state.withLock { state in
            defer { state.next += 1 }
            state.operations[state.next] = Operation(started: .now, leaseTimeout: leaseTimeout)
            return state.next
        }
    }

    func attach(_ id: Int, giveUp: @escaping @Sendable (Outcome) -> Void) {
        state.withLock { $0.operations[id]?.giveUp = giveUp }
    }

    /// The operation has its connection: true if it may run, false if it was given up on.
    func leased(_ id: Int) -> Bool {
        state.withLock { state in
            guard state.operations[id] != nil else { return false }
            state.operations[id]?.leased = true
            return true
        }
    }

    func end(_ id: Int) {
        _ = state.withLock { $0.operations.removeValue(forKey: id) }
    }

    /// Gives up on every operation past its deadline.
    func sweep() {
        let now = ContinuousClock.now
        let expired = state.withLock { state -> [(@Sendable (Outcome) -> Void, Outcome)] in
            var expired: [(@Sendable (Outcome) -> Void, Outcome)] = []
            for (id, operation) in state.operations {
                guard let giveUp = operation.giveUp else { continue }
                let outcome: Outcome? =
                    operation.leased ? (now - operation.started > overrun ? .overran : nil)
                    : (now - operation.started > operation.leaseTimeout ? .leaseTimedOut : nil)
                guard let outcome else { continue }
                state.operations[id] = nil
                expired.append((giveUp, outcome))
            }
            return expired
        }
        for (giveUp, outcome) in expired { giveUp(outcome) }
    }
}

/// A flag that one caller, and one only, may take.
final class Once: Sendable {
    private let taken = Atomic(false)
    func take() -> Bool { taken.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged }
}
