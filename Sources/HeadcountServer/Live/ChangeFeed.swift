import DequeModule
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The in-process change feed. Changes are published after their commit, numbered in the order
/// this instance receives them and kept in one log (at least the last `retained`), which is both
/// what a `Last-Event-ID` resumes from and what every stream reads: a change is stored once, however
/// many subscribers there are, and each stream copies out its topics' share when it next writes. A
/// subscriber so far behind that the log has dropped changes it has not read is cut off (and told
/// so): writers never wait for it, and the log does not grow for it. This file holds the log;
/// `ChangeFeed+Subscribers` what each stream reads, `ChangeFeed+Pacing` when.
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
    enum Step {
        case write([ByteBuffer])
        case end, again
    }

    struct Subscriber {
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

    struct State {
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
    let relay: (any ChangeRelay)?
    let logger: Logger
    let state = Mutex(State())
    /// Changes are encoded and delivered (or relayed) from here, in order, off the publisher's path:
    /// for webhooks that path is SQLite's writer.
    private let outbox = Mutex<Batcher<Published>?>(nil)

    /// A change as published, before it is encoded.
    private struct Published: Sendable {
        let type: ChangeType
        let data: any Encodable & Sendable
        let at: Int64
    }

    init(
        relay: (any ChangeRelay)? = nil, retained: Int = 10_000, heartbeat: Duration = .seconds(15),
        flushInterval: Duration = .milliseconds(250), logger: Logger
    ) {
        self.relay = relay
        self.flushInterval = flushInterval
        self.retainedCount = retained
        self.heartbeat = heartbeat
        self.logger = logger
        outbox.withLock { $0 = Batcher { [weak self] changes in self?.forward(changes) } }
    }

    /// Publishes a change that has committed. Never waits on subscribers, nor encodes.
    func publish(_ type: ChangeType, _ data: some Encodable & Sendable) {
        outbox.withLock { $0 }?.send(Published(type: type, data: data, at: Timestamp.now().microseconds))
    }

    private func forward(_ changes: [Published]) {
        let messages = changes.compactMap { change in
            (try? JSONWriter.encode(change.data)).map {
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

    /// The feed position a `Last-Event-ID` names; -1 (not resumable) for another feed's id.
    func position(_ eventID: String) -> Int64 {
        guard eventID.hasPrefix(epoch + "-"), let n = Int64(eventID.dropFirst(epoch.count + 1)) else { return -1 }
        return n
    }

    var subscriberCount: Int { state.withLock { $0.subscribers.count } }
    var lagSeconds: Double { Double(state.withLock { $0.lagMicroseconds }) / 1_000_000 }
}

extension ChangeFeed {
    /// This instance's own gauges of `/metrics`, there while the database is away too.
    var gauges: [Gauge] {
        var subscribers = Gauge("headcount_stream_subscribers", "Clients of /api/stream on this instance.")
        subscribers.add(subscriberCount)
        var lag = Gauge("headcount_change_feed_lag_seconds", "From publishing the latest change to this instance's feed receiving it.")
        lag.add(lagSeconds)
        return [subscribers, lag]
    }
}
