import Synchronization

/// The operations in flight on PostgreSQL and their deadlines, swept by one watchdog every 100 ms
/// (a timer of its own per query cost a tenth of a cheap read's throughput). An operation still
/// waiting for a connection after its lease timeout, or running longer than its overrun allows
/// once leased (the server's statement timeout has then failed to answer too), is given up on:
/// its caller is told at once, its connection (if it has one) is closed so that the pool gets the
/// slot back, and it does not run if it gets a connection later. A transaction given up on before
/// it commits rolls back; one given up on while committing has an unknown outcome.
final class Deadlines: Sendable {
    enum Outcome: Sendable { case leaseTimedOut, overran, overranCommitting }

    private struct Operation {
        let begun: ContinuousClock.Instant
        let leaseTimeout: Duration
        /// nil: no limit once leased (migrations).
        let overrun: Duration?
        var leased: ContinuousClock.Instant?
        var committing = false
        var close: (@Sendable () -> Void)?
        var giveUp: (@Sendable (Outcome) -> Void)?
    }

    private let state = Mutex((next: 0, operations: [Int: Operation]()))

    /// A new operation, waiting for a connection; `attach` says how to give up on it.
    func begin(leaseTimeout: Duration, overrun: Duration?) -> Int {
        state.withLock { state in
            defer { state.next += 1 }
            state.operations[state.next] = Operation(begun: .now, leaseTimeout: leaseTimeout, overrun: overrun)
            return state.next
        }
    }

    func attach(_ id: Int, giveUp: @escaping @Sendable (Outcome) -> Void) {
        state.withLock { $0.operations[id]?.giveUp = giveUp }
    }

    /// The operation has its connection (`close` closes it): true if it may run, false if it was
    /// given up on.
    func leased(_ id: Int, close: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { state in
            guard state.operations[id] != nil else { return false }
            state.operations[id]?.leased = .now
            state.operations[id]?.close = close
            return true
        }
    }

    /// A transaction is about to commit: true if its caller still waits for it, and from now on a
    /// deadline missed says the outcome is unknown; false if it must roll back.
    func commit(_ id: Int) -> Bool {
        state.withLock { state in
            guard state.operations[id] != nil else { return false }
            state.operations[id]?.committing = true
            return true
        }
    }

    /// The operation is over, or its caller no longer waits for it.
    func end(_ id: Int) {
        _ = state.withLock { $0.operations.removeValue(forKey: id) }
    }

    /// Gives up on every operation past its deadline.
    func sweep() {
        let now = ContinuousClock.now
        let expired = state.withLock { state -> [(Operation, Outcome)] in
            var expired: [(Operation, Outcome)] = []
            for (id, operation) in state.operations where operation.giveUp != nil {
                let outcome: Outcome?
                if let leased = operation.leased {
                    let late = operation.overrun.map { now - leased > $0 } ?? false
                    outcome = late ? (operation.committing ? .overranCommitting : .overran) : nil
                } else {
                    outcome = now - operation.begun > operation.leaseTimeout ? .leaseTimedOut : nil
                }
                guard let outcome else { continue }
                state.operations[id] = nil
                expired.append((operation, outcome))
            }
            return expired
        }
        for (operation, outcome) in expired {
            operation.giveUp?(outcome)
            operation.close?()
        }
    }
}

/// The one answer an operation's caller gets, from whichever comes first: the operation, its
/// deadline, or the caller's cancellation.
final class Reply<T: Sendable>: Sendable {
    private let state = Mutex<(continuation: CheckedContinuation<T, any Error>?, result: Result<T, any Error>?, delivered: Bool)>((nil, nil, false))

    var delivered: Bool { state.withLock { $0.delivered } }

    func deliver(_ result: Result<T, any Error>) {
        let waiting = state.withLock { state -> CheckedContinuation<T, any Error>? in
            guard !state.delivered else { return nil }
            state.delivered = true
            guard let continuation = state.continuation else {
                state.result = result
                return nil
            }
            state.continuation = nil
            return continuation
        }
        waiting?.resume(with: result)
    }

    func wait() async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<T, any Error>? in
                guard let result = state.result else {
                    state.continuation = continuation
                    return nil
                }
                state.result = nil
                return result
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}
