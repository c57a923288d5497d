import DequeModule
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Carries published changes to every instance (PostgreSQL `LISTEN/NOTIFY`); each instance then
/// `deliver`s them to its own subscribers. Without a relay a change is delivered where it happened.
protocol ChangeRelay: Sendable {
    func send(_ message: ChangeFeed.Message)
    func run(into feed: ChangeFeed) async throws
}

/// The in-process change feed. Changes are published after their commit, numbered in the order
/// this instance receives them and kept in one log (at least the last `retained`), which is both
/// what a `Last-Event-ID` resumes from and what every stream reads: a change is stored once, however
/// many subscribers there are, and each stream copies out its topics' share when it next writes. A
/// subscriber so far behind that the log has dropped changes it has not read is cut off (and told
/// so): writers never wait for it, and the log does not grow for it.
final class ChangeFeed: Service, Sendable {
    /// What a relay carries between instances.
    struct Message: Codable, Sendable {
        let topic: String
        let type: String
        let data: String
        /// When it was published, in microseconds, for the feed-lag metric.
        let at: Int64
    }

    struct Subscription: Sendable {
        let id: Int
        /// False when a `Last-Event-ID` was given that this feed no longer (or never) held.
        let resumed: Bool
    }

    /// What a parked stream is told when it wakes.
    private enum Step {
        case write([ByteBuffer]), end, again
    }

    private struct Subscriber {
        let id: Int
        /// Its topics, as a mask of `Topic.bit`s.
        let topics: Int
        /// The last position this subscriber has read (or has nothing to read up to).
        var cursor: Int64
        /// Its changes after the cursor.
        var unread = 0
        var heartbeatDue = false
        /// Whether its turn in the flush cycle has come since its last write, so it may write again.
        var rested = true
        var reader: CheckedContinuation<Step, Never>?

        var mayWrite: Bool { rested && (unread > 0 || heartbeatDue) }

        /// Its reader, taken, when it is parked and may write something now.
        mutating func wakeIfDue() -> CheckedContinuation<Step, Never>? {
            guard mayWrite else { return nil }
            defer { reader = nil }
            return reader
        }
    }

    private struct State {
        var log = Deque<Run>()
        var logged = 0
        var nextID: Int64 = 1
        /// Few enough to scan; kept in an array so that each is updated in place.
        var subscribers: [Subscriber] = []
        var nextSubscriber = 0
        /// Subscribers cut off and not yet told.
        var cutOff = Set<Int>()
        var lagMicroseconds: Int64 = 0
    }

    /// Names this feed in event ids (`<epoch>-<n>`): numbers are this instance's own, since it
    /// started, so an id from another instance or an earlier run is recognised as not resumable.
    let epoch = String(UInt32.random(in: .min ... .max), radix: 16)
    let retainedCount: Int
    let heartbeat: Duration
    /// How often a stream may write: changes that arrive meanwhile go out together, so a busy feed
    /// costs each stream a few writes a second, not one per change; a quiet stream's change goes
    /// out at once.
    let flushInterval: Duration
    private let relay: (any ChangeRelay)?
    private let logger: Logger
    private let state = Mutex(State())
    /// Changes are encoded and delivered (or relayed) from here, in order, off the publisher's path:
    /// for webhooks that path is SQLite's writer.
    private let outbox = Mutex<Outbox<Published>?>(nil)

    /// A change as published, before it is encoded.
    private struct Published: Sendable {
        let type: ChangeType
        let data: any Encodable & Sendable
        let at: Int64
    }

    init(relay: (any ChangeRelay)? = nil, retained: Int = 10_000, heartbeat: Duration = .seconds(15),
         flushInterval: Duration = .milliseconds(250), logger: Logger) {
        self.relay = relay
        self.flushInterval = flushInterval
        self.retainedCount = retained
        self.heartbeat = heartbeat
        self.logger = logger
        outbox.withLock { $0 = Outbox { [weak self] changes in self?.forward(changes) } }
    }

    /// Publishes a change that has committed. Never waits on subscribers, nor encodes.
    func publish(_ type: ChangeType, _ data: some Encodable & Sendable) {
        outbox.withLock { $0 }?.send(Published(type: type, data: data, at: Timestamp.now().microseconds))
    }

    private func forward(_ changes: [Published]) {
        let messages = changes.compactMap { change in
            (try? JSONEncoder.feed.encode(change.data)).map {
                Message(topic: change.type.topic.rawValue, type: change.type.rawValue, data: String(decoding: $0, as: UTF8.self), at: change.at)
            }
        }
        if let relay { messages.forEach(relay.send) } else { deliver(messages) }
    }

    /// Numbers changes, adds them to the log and wakes the rested subscribers they concern.
    func deliver(_ messages: [Message]) {
        let woken = state.withLock { state in
            var added = Array(repeating: 0, count: Topic.allCases.count)
            var runs: [Run] = []
            for message in messages {
                guard let topic = Topic(rawValue: message.topic) else { continue }
                let id = state.nextID
                state.nextID += 1
                if runs.last?.topic != topic { runs.append(Run(topic: topic, firstID: id)) }
                runs[runs.count - 1].starts.append(runs[runs.count - 1].text.writerIndex)
                runs[runs.count - 1].text.writeString("id: \(epoch)-\(id)\nevent: \(message.type)\ndata: \(message.data)\n\n")
                added[topic.index] += 1
                // `at` comes from another process: a nonsense value must not trap.
                let (lag, overflow) = Timestamp.now().microseconds.subtractingReportingOverflow(message.at)
                state.lagMicroseconds = overflow ? 0 : max(0, lag)
            }
            state.log.append(contentsOf: runs)
            state.logged += runs.reduce(0) { $0 + $1.count }
            while let first = state.log.first, state.logged - first.count >= retainedCount {
                state.logged -= state.log.removeFirst().count
            }
            let oldest = state.log.first?.firstID ?? state.nextID
            var woken: [CheckedContinuation<Step, Never>] = []
            for i in state.subscribers.indices {
                let count = added.indices.reduce(0) { $0 + (state.subscribers[i].topics & 1 << $1 != 0 ? added[$1] : 0) }
                if count == 0, state.subscribers[i].unread == 0 {
                    // Nothing for it and nothing unread: it has read up to here too.
                    state.subscribers[i].cursor = state.nextID - 1
                    continue
                }
                state.subscribers[i].unread += count
                if state.subscribers[i].cursor + 1 < oldest {
                    state.cutOff.insert(state.subscribers[i].id)
                    state.subscribers[i].rested = true  // so that it is woken, to be told
                }
                state.subscribers[i].wakeIfDue().map { woken.append($0) }
            }
            if !state.cutOff.isEmpty { state.subscribers.removeAll { state.cutOff.contains($0.id) } }
            return woken
        }
        woken.forEach { $0.resume(returning: .again) }
    }

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
        .write([ByteBuffer(string: StreamController.event("overflow", #"{"reason":"this client fell more than \#(retainedCount) changes behind; reload the state and reconnect"}"#))])
    }

    /// Ends a subscription; its stream's `next` returns nil.
    func end(_ id: Int) {
        state.withLock { state -> CheckedContinuation<Step, Never>? in
            state.cutOff.remove(id)
            guard let i = state.subscribers.firstIndex(where: { $0.id == id }) else { return nil }
            return state.subscribers.remove(at: i).reader
        }?.resume(returning: .end)
    }

    /// The feed position a `Last-Event-ID` names; -1 (not resumable) for another feed's id.
    func position(_ eventID: String) -> Int64 {
        guard eventID.hasPrefix(epoch + "-"), let n = Int64(eventID.dropFirst(epoch.count + 1)) else { return -1 }
        return n
    }

    var subscriberCount: Int { state.withLock { $0.subscribers.count } }
    var lagSeconds: Double { Double(state.withLock { $0.lagMicroseconds }) / 1_000_000 }

    /// Applies `change` to every subscriber and wakes those it gives something to write: every
    /// flush interval each one rests, every heartbeat each one has a heartbeat due.
    private func wake(_ change: (inout Subscriber) -> Void) {
        let woken = state.withLock { state in
            state.subscribers.indices.compactMap { i in
                change(&state.subscribers[i])
                return state.subscribers[i].wakeIfDue()
            }
        }
        woken.forEach { $0.resume(returning: .again) }
    }

    /// Paces the streams and sends heartbeats (and runs the relay) until graceful shutdown, then
    /// ends every subscription.
    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                if let relay = self.relay {
                    group.addTask {
                        // Restarted every second; said once per outage (a run of under 5 s is the same outage).
                        var failing = false
                        while !Task.isCancelled {
                            let started = ContinuousClock.now
                            do { try await relay.run(into: self) } catch {
                                if !failing || ContinuousClock.now - started > .seconds(5), !Task.isShuttingDownGracefully {
                                    self.logger.warning("change relay stopped: \(String(reflecting: error)); restarting every second")
                                }
                                failing = true
                            }
                            try? await Task.sleep(for: .seconds(1))
                        }
                    }
                }
                group.addTask {
                    // A tenth of the streams' turns come each tenth of the interval, so that a busy
                    // feed's writes are spread over it instead of all landing together.
                    var tick = 0
                    while (try? await Task.sleep(for: self.flushInterval / 10)) != nil {
                        tick += 1
                        self.wake { if $0.id % 10 == tick % 10 { $0.rested = true } }
                    }
                }
                group.addTask {
                    while (try? await Task.sleep(for: self.heartbeat)) != nil { self.wake { $0.heartbeatDue = true } }
                }
                await group.waitForAll()
            }
        }
        let readers = state.withLock { state in
            defer { state.subscribers.removeAll() }
            return state.subscribers.compactMap(\.reader)
        }
        readers.forEach { $0.resume(returning: .end) }
    }
}

extension JSONEncoder {
    /// Compact, sorted keys: the feed's events and the relay's messages.
    static let feed: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}
