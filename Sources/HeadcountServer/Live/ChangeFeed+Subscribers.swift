import DequeModule
import NIOCore

/// The subscribers' side of the feed: what each stream reads, and when.
extension ChangeFeed {
    /// Subscribes to `topics`; with a `lastEventID` this feed still holds, the changes after it
    /// come first.
    func subscribe(_ topics: Set<Topic>, after lastEventID: Int64?) -> Subscription {
        state.withLock { state in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            var subscriber = Subscriber(id: id, topics: topics.reduce(0) { $0 | $1.bit }, cursor: state.nextID - 1)
            var resumed = true
            if let lastEventID {
                let oldest = state.log.first?.firstID ?? state.nextID
                if lastEventID >= oldest - 1, lastEventID < state.nextID {
                    subscriber.cursor = lastEventID
                    for run in state.log where run.lastID > lastEventID && run.topic.bit & subscriber.topics != 0 {
                        subscriber.unread += Int(run.lastID - max(lastEventID, run.firstID - 1))
                    }
                } else {
                    resumed = false
                }
            }
            state.subscribers.append(subscriber)
            return Subscription(id: id, resumed: resumed)
        }
    }

    /// What subscription `id`'s stream writes next: its changes since its last write (waiting for
    /// some, and at most one write per flush interval), then nil once it has ended; a subscriber
    /// that was cut off gets an `overflow` event first.
    func next(_ id: Int) async -> [ByteBuffer]? {
        while true {
            let step = await withCheckedContinuation { (reader: CheckedContinuation<Step, Never>) in
                let now: Step? = state.withLock { state in
                    guard let i = state.subscribers.firstIndex(where: { $0.id == id }) else {
                        return state.cutOff.remove(id) != nil ? overflow : .end
                    }
                    guard state.subscribers[i].mayWrite else {
                        state.subscribers[i].reader = reader
                        return nil
                    }
                    return collect(&state.subscribers[i], from: state.log, upTo: state.nextID - 1)
                }
                if let now { reader.resume(returning: now) }
            }
            switch step {
            case .write(let parts): return parts
            case .end: return nil
            case .again: continue
            }
        }
    }

    /// A subscriber's unread changes (all still in the log: `deliver` cuts off those whose are not)
    /// and heartbeat, copied into parts of at most `partSize` bytes: few writes, and buffers small
    /// enough to come from malloc's free lists rather than from fresh pages each time.
    private func collect(_ subscriber: inout Subscriber, from log: Deque<Run>, upTo newest: Int64) -> Step {
        var parts: [ByteBuffer] = []
        func append(_ events: ByteBuffer) {
            if let last = parts.indices.last, parts[last].readableBytes + events.readableBytes <= Self.partSize {
                parts[last].writeImmutableBuffer(events)
            } else if events.readableBytes >= Self.partSize {
                parts.append(events)
            } else {
                parts.append(ByteBufferAllocator().buffer(capacity: Self.partSize))
                parts[parts.count - 1].writeImmutableBuffer(events)
            }
        }
        if subscriber.unread > 0 {
            // The first run it has not read all of: the runs after the last one it has.
            var (low, high) = (0, log.count)
            while low < high {
                let middle = (low + high) / 2
                if log[middle].lastID <= subscriber.cursor { low = middle + 1 } else { high = middle }
            }
            for i in low..<log.count where log[i].topic.bit & subscriber.topics != 0 {
                append(log[i].events(after: subscriber.cursor))
            }
        }
        if subscriber.heartbeatDue { append(ByteBuffer(string: ": heartbeat\n\n")) }
        subscriber.cursor = newest
        subscriber.unread = 0
        subscriber.heartbeatDue = false
        subscriber.rested = false
        return .write(parts)
    }

    private static let partSize = 32 * 1024

    private var overflow: Step {
        .write([
            ByteBuffer(string: StreamController.event("overflow", #"{"reason":"this client fell more than \#(retainedCount) changes behind; reload the state and reconnect"}"#))
        ])
    }

    /// Ends a subscription; its stream's `next` returns nil.
    func end(_ id: Int) {
        state.withLock { state -> CheckedContinuation<Step, Never>? in
            state.cutOff.remove(id)
            guard let i = state.subscribers.firstIndex(where: { $0.id == id }) else { return nil }
            return state.subscribers.remove(at: i).reader
        }?.resume(returning: .end)
    }
}
