import DequeModule
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// One accepted change, as subscribers of `/api/stream` see it.
struct Change: Sendable {
    let id: Int64
    let topic: Topic
    let type: String
    /// The event's JSON object, as text.
    let data: String
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
/// this instance receives them, kept for resumption (the last `retained`), and handed to each
/// subscriber through a bounded buffer: a subscriber that falls `subscriberBuffer` changes behind
/// is cut off (and told so) rather than slowing down writers or growing without limit.
final class ChangeFeed: Service, Sendable {
    /// What a relay carries between instances.
    struct Message: Codable, Sendable {
        let topic: String
        let type: String
        let data: String
        /// When it was published, in microseconds, for the feed-lag metric.
        let at: Int64
    }

    enum Item: Sendable {
        case change(Change)
        case heartbeat
    }

    struct Subscription: Sendable {
        let id: Int
        let items: AsyncStream<Item>
        /// Retained changes after the `Last-Event-ID` the subscriber gave.
        let replay: [Change]
        /// False when a `Last-Event-ID` was given that this feed no longer (or never) held.
        let resumed: Bool
    }

    private struct Subscriber {
        let topics: Set<Topic>
        let continuation: AsyncStream<Item>.Continuation
    }

    private struct State {
        var retained = Deque<Change>()
        var nextID: Int64 = 1
        var subscribers: [Int: Subscriber] = [:]
        var nextSubscriber = 0
        var cutOff = Set<Int>()
        var lagMicroseconds: Int64 = 0
    }

    /// Names this feed in event ids (`<epoch>-<n>`): numbers are this instance's own, since it
    /// started, so an id from another instance or an earlier run is recognised as not resumable.
    let epoch = String(UInt32.random(in: .min ... .max), radix: 16)
    let retainedCount: Int
    let subscriberBuffer: Int
    let heartbeat: Duration
    private let relay: (any ChangeRelay)?
    private let logger: Logger
    private let state = Mutex(State())

    init(relay: (any ChangeRelay)? = nil, retained: Int = 10_000, subscriberBuffer: Int = 1_000, heartbeat: Duration = .seconds(15), logger: Logger) {
        self.relay = relay
        self.retainedCount = retained
        self.subscriberBuffer = subscriberBuffer
        self.heartbeat = heartbeat
        self.logger = logger
    }

    /// Publishes a change that has committed. Never waits on subscribers.
    func publish(_ topic: Topic, _ type: String, _ data: some Encodable) {
        guard let encoded = try? JSONEncoder.feed.encode(data) else { return }
        let message = Message(topic: topic.rawValue, type: type, data: String(decoding: encoded, as: UTF8.self), at: Timestamp.now().microseconds)
        if let relay { relay.send(message) } else { deliver(message) }
    }

    /// Numbers a change and hands it to the subscribers of its topic.
    func deliver(_ message: Message) {
        guard let topic = Topic(rawValue: message.topic) else { return }
        let overflowing: [AsyncStream<Item>.Continuation] = state.withLock { state in
            let change = Change(id: state.nextID, topic: topic, type: message.type, data: message.data)
            state.nextID += 1
            state.retained.append(change)
            if state.retained.count > retainedCount { state.retained.removeFirst() }
            state.lagMicroseconds = max(0, Timestamp.now().microseconds - message.at)
            return Self.send(.change(change), to: &state) { $0.topics.contains(topic) }
        }
        overflowing.forEach { $0.finish() }
    }

    /// Subscribes to `topics`, first replaying what was retained after `lastEventID`.
    func subscribe(_ topics: Set<Topic>, after lastEventID: Int64?) -> Subscription {
        let (items, continuation) = AsyncStream.makeStream(of: Item.self, bufferingPolicy: .bufferingOldest(subscriberBuffer))
        let (id, replay, resumed) = state.withLock { state in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = Subscriber(topics: topics, continuation: continuation)
            guard let lastEventID else { return (id, [Change](), true) }
            let oldest = state.retained.first?.id ?? state.nextID
            guard lastEventID >= oldest - 1, lastEventID < state.nextID else { return (id, [], false) }
            return (id, state.retained.filter { $0.id > lastEventID && topics.contains($0.topic) }, true)
        }
        continuation.onTermination = { [weak self] _ in self?.unsubscribe(id) }
        return Subscription(id: id, items: items, replay: replay, resumed: resumed)
    }

    /// Ends a subscription (its stream finishes).
    func end(_ id: Int) {
        state.withLock { $0.subscribers.removeValue(forKey: id) }?.continuation.finish()
    }

    /// Whether the subscription was cut off for falling behind; asked once, when its stream ends.
    func wasCutOff(_ id: Int) -> Bool {
        state.withLock { $0.cutOff.remove(id) != nil }
    }

    func eventID(_ change: Change) -> String { "\(epoch)-\(change.id)" }

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
                        let overflowing = self.state.withLock { Self.send(.heartbeat, to: &$0) { _ in true } }
                        overflowing.forEach { $0.finish() }
                    }
                }
                await group.waitForAll()
            }
        }
        let all = state.withLock { state in
            defer { state.subscribers.removeAll() }
            return state.subscribers.values.map(\.continuation)
        }
        all.forEach { $0.finish() }
    }

    private func unsubscribe(_ id: Int) {
        _ = state.withLock { $0.subscribers.removeValue(forKey: id) }
    }

    /// Yields to the matching subscribers; those whose buffer is full are removed and marked cut
    /// off, and their continuations returned to be finished outside the lock (finishing runs
    /// `onTermination`, which takes the lock).
    private static func send(_ item: Item, to state: inout State, where matches: (Subscriber) -> Bool) -> [AsyncStream<Item>.Continuation] {
        var overflowing: [AsyncStream<Item>.Continuation] = []
        for (id, subscriber) in state.subscribers where matches(subscriber) {
            if case .dropped = subscriber.continuation.yield(item) {
                state.subscribers.removeValue(forKey: id)
                state.cutOff.insert(id)
                overflowing.append(subscriber.continuation)
            }
        }
        return overflowing
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
