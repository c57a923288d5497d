import DequeModule
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// One accepted change, as subscribers of `/api/stream` see it.
struct Change: Sendable {
    let id: Int64
    let topic: Topic
    /// The change as a server-sent event (id, type and JSON data), formatted once for every subscriber.
    let text: String
}

enum Topic: String, CaseIterable, Sendable {
    case rooms, sensors, events, attendance, reservations
}

/// Carries published changes to every instance (PostgreSQL `LISTEN/NOTIFY`); each instance then
/// `deliver`s them to its own subscribers. Without a relay a change is delivered where it happened.
protocol ChangeRelay: Sendable {
    func send(_ message: ChangeFeed.Message)
    func run(into feed: ChangeFeed) async throws
}

/// The in-process change feed. Changes are published after their commit, numbered in the order
/// this instance receives them, kept for resumption (the last `retained`), and posted to each
/// subscriber's mailbox: a subscriber that falls `subscriberBuffer` changes behind is cut off (and
/// told so) rather than slowing down writers or growing without limit.
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
        let mailbox: Mailbox
        /// Retained changes after the `Last-Event-ID` the subscriber gave.
        let replay: [Change]
        /// False when a `Last-Event-ID` was given that this feed no longer (or never) held.
        let resumed: Bool
    }

    private struct Subscriber {
        let topics: Set<Topic>
        let mailbox: Mailbox
    }

    private struct State {
        var retained = Deque<Change>()
        var nextID: Int64 = 1
        var subscribers: [Int: Subscriber] = [:]
        var nextSubscriber = 0
        var lagMicroseconds: Int64 = 0
    }

    /// Names this feed in event ids (`<epoch>-<n>`): numbers are this instance's own, since it
    /// started, so an id from another instance or an earlier run is recognised as not resumable.
    let epoch = String(UInt32.random(in: .min ... .max), radix: 16)
    let retainedCount: Int
    let subscriberBuffer: Int
    let heartbeat: Duration
    /// The shortest time between two writes to one subscriber: changes that arrive meanwhile go
    /// out together, so a busy feed costs each stream a few writes a second, not one per change.
    let flushInterval: Duration
    private let relay: (any ChangeRelay)?
    private let logger: Logger
    private let state = Mutex(State())
    /// Without a relay, changes are delivered from here, off the publishing writer's path.
    private let local = Mutex<Outbox<Message>?>(nil)

    init(relay: (any ChangeRelay)? = nil, retained: Int = 10_000, subscriberBuffer: Int = 1_000, heartbeat: Duration = .seconds(15),
         flushInterval: Duration = .milliseconds(100), logger: Logger) {
        self.relay = relay
        self.flushInterval = flushInterval
        self.retainedCount = retained
        self.subscriberBuffer = subscriberBuffer
        self.heartbeat = heartbeat
        self.logger = logger
        if relay == nil {
            local.withLock { $0 = Outbox { [weak self] messages in self?.deliver(messages) } }
        }
    }

    /// Publishes a change that has committed. Never waits on subscribers.
    func publish(_ topic: Topic, _ type: String, _ data: some Encodable) {
        guard let encoded = try? JSONEncoder.feed.encode(data) else { return }
        let message = Message(topic: topic.rawValue, type: type, data: String(decoding: encoded, as: UTF8.self), at: Timestamp.now().microseconds)
        if let relay { relay.send(message) } else { local.withLock { $0 }?.send(message) }
    }

    /// Numbers changes and posts them to the subscribers of their topics, each subscriber's share
    /// in one go.
    func deliver(_ messages: [Message]) {
        state.withLock { state in
            var changes: [Change] = []
            for message in messages {
                guard let topic = Topic(rawValue: message.topic) else { continue }
                let id = state.nextID
                state.nextID += 1
                changes.append(Change(id: id, topic: topic, text: "id: \(epoch)-\(id)\nevent: \(message.type)\ndata: \(message.data)\n\n"))
                state.lagMicroseconds = max(0, Timestamp.now().microseconds - message.at)
            }
            state.retained.append(contentsOf: changes)
            if state.retained.count > retainedCount { state.retained.removeFirst(state.retained.count - retainedCount) }
            for (id, subscriber) in state.subscribers {
                let share = changes.filter { subscriber.topics.contains($0.topic) }.map(Mailbox.Item.change)
                if !share.isEmpty, !subscriber.mailbox.post(share) { state.subscribers.removeValue(forKey: id) }
            }
        }
    }

    /// Subscribes to `topics`, first replaying what was retained after `lastEventID`.
    func subscribe(_ topics: Set<Topic>, after lastEventID: Int64?) -> Subscription {
        let mailbox = Mailbox(capacity: subscriberBuffer)
        return state.withLock { state in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = Subscriber(topics: topics, mailbox: mailbox)
            guard let lastEventID else { return Subscription(id: id, mailbox: mailbox, replay: [], resumed: true) }
            let oldest = state.retained.first?.id ?? state.nextID
            guard lastEventID >= oldest - 1, lastEventID < state.nextID else { return Subscription(id: id, mailbox: mailbox, replay: [], resumed: false) }
            let replay = Array(state.retained.filter { $0.id > lastEventID && topics.contains($0.topic) })
            return Subscription(id: id, mailbox: mailbox, replay: replay, resumed: true)
        }
    }

    /// Ends a subscription: its mailbox closes once emptied.
    func end(_ id: Int) {
        state.withLock { $0.subscribers.removeValue(forKey: id) }?.mailbox.close()
    }

    /// The feed position a `Last-Event-ID` names; -1 (not resumable) for another feed's id.
    func position(_ eventID: String) -> Int64 {
        guard eventID.hasPrefix(epoch + "-"), let n = Int64(eventID.dropFirst(epoch.count + 1)) else { return -1 }
        return n
    }

    var subscriberCount: Int { state.withLock { $0.subscribers.count } }
    var lagSeconds: Double { Double(state.withLock { $0.lagMicroseconds }) / 1_000_000 }

    /// Sends heartbeats (and runs the relay) until graceful shutdown, then ends every subscription.
    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                if let relay = self.relay {
                    group.addTask {
                        while !Task.isCancelled {
                            do { try await relay.run(into: self) } catch { self.logger.warning("change relay stopped: \(error); restarting") }
                            try? await Task.sleep(for: .seconds(1))
                        }
                    }
                }
                group.addTask {
                    while (try? await Task.sleep(for: self.heartbeat)) != nil {
                        self.state.withLock { state in
                            for (id, subscriber) in state.subscribers where !subscriber.mailbox.post([.heartbeat]) {
                                state.subscribers.removeValue(forKey: id)
                            }
                        }
                    }
                }
                await group.waitForAll()
            }
        }
        let all = state.withLock { state in
            defer { state.subscribers.removeAll() }
            return state.subscribers.values.map(\.mailbox)
        }
        all.forEach { $0.close() }
    }
}

/// One subscriber's undelivered items. Posting never waits; the reader takes everything waiting at
/// once, so a busy stream writes many changes per write instead of one write per change.
final class Mailbox: Sendable {
    enum Item: Sendable {
        case change(Change)
        case heartbeat
    }

    private struct State {
        var items: [Item] = []
        var reader: CheckedContinuation<[Item]?, Never>?
        var closed = false
        var cutOff = false
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Adds items; false (and the mailbox closes, marked cut off) when they do not fit or it is closed.
    func post(_ items: [Item]) -> Bool {
        let (accepted, reader): (Bool, CheckedContinuation<[Item]?, Never>?) = state.withLock { state in
            guard !state.closed else { return (false, nil) }
            guard state.items.count + items.count <= capacity else {
                state.closed = true
                state.cutOff = true
                return (false, nil)
            }
            // A waiting reader found the mailbox empty: these items are all it gets.
            if let reader = state.reader {
                state.reader = nil
                return (true, reader)
            }
            state.items.append(contentsOf: items)
            return (true, nil)
        }
        reader?.resume(returning: items)
        return accepted
    }

    /// Everything waiting, waiting for something if there is nothing; nil once closed and empty.
    func take() async -> [Item]? {
        await withCheckedContinuation { reader in
            let ready: [Item]?? = state.withLock { state in
                if !state.items.isEmpty {
                    defer { state.items.removeAll(keepingCapacity: true) }
                    return state.items
                }
                if state.closed { return .some(nil) }
                state.reader = reader
                return nil
            }
            if let ready { reader.resume(returning: ready) }
        }
    }

    /// No more items; a waiting reader gets nil.
    func close() {
        let reader = state.withLock { state in
            state.closed = true
            defer { state.reader = nil }
            return state.reader
        }
        reader?.resume(returning: nil)
    }

    /// Whether it closed because its reader fell `capacity` items behind.
    var wasCutOff: Bool { state.withLock { $0.cutOff } }
}

extension JSONEncoder {
    /// Compact, sorted keys: the feed's events and the relay's messages.
    static let feed: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}
