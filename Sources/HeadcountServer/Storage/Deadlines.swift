import Synchronization

/// The operations in flight on PostgreSQL and their deadlines, swept by one watchdog every 100 ms
/// (a timer of its own per query cost a tenth of a cheap read's throughput). An operation still
/// waiting for a connection after its lease timeout, or running longer than its overrun allows
/// once leased (the server's statement timeout has then failed to answer too), is given up on:
/// its caller is told at once; the operation does not run if it gets its connection later, and a
/// transaction given up on rolls back rather than commit.
final class Deadlines: Sendable {
    enum Outcome: Sendable { case leaseTimedOut, overran }

    private struct Operation {
        let begun: ContinuousClock.Instant
        let leaseTimeout: Duration
        /// nil: no limit once leased (migrations).
        let overrun: Duration?
        var leased: ContinuousClock.Instant?
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

    /// The operation has its connection: true if it may run, false if it was given up on.
    func leased(_ id: Int) -> Bool {
        state.withLock { state in
            guard state.operations[id] != nil else { return false }
            state.operations[id]?.leased = .now
            return true
        }
    }

    /// Whether the operation's caller still waits for it (a transaction checks before committing).
    func stillWanted(_ id: Int) -> Bool {
        state.withLock { $0.operations[id] != nil }
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
                let outcome: Outcome?
                if let leased = operation.leased {
                    outcome = operation.overrun.map { now - leased > $0 } == true ? .overran : nil
                } else {
                    outcome = now - operation.begun > operation.leaseTimeout ? .leaseTimedOut : nil
                }
                guard let outcome else { continue }
                state.operations[id] = nil
                expired.append((giveUp, outcome))
            }
            return expired
        }
        for (giveUp, outcome) in expired { giveUp(outcome) }
    }
}

/// The one answer an operation's caller gets, from whichever comes first: the operation, its
/// deadline, or the caller's cancellation.
final class Reply<T: Sendable>: Sendable {
    private let state = Mutex<(continuation: CheckedContinuation<T, any Error>?, result: Result<T, any Error>?, delivered: Bool)>((nil, nil, false))

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
