import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// Sends the outbox. Every instance runs one; each round fans new messages out to deliveries,
/// claims due deliveries and sends them (signed, 10 s timeout), then records each outcome:
/// at-least-once, in order per subscription, retried with exponential backoff and jitter for
/// three days. Time and jitter are injected, so that tests can drive rounds on a clock of their own.
final class WebhookDispatcher: Service, Sendable {
    private let deliveries: WebhookDeliveries
    private let box: SecretBox
    /// Made at the first attempt (an instance with no subscriptions never needs one); closed by `shutdown()`.
    private let client = Mutex<HTTPClient?>(nil)
    private let allowPrivate: Bool
    private let logger: Logger
    private let clock: @Sendable () -> Int64
    private let jitter: @Sendable () -> Double

    /// The first retry comes after this long, each later one after twice the one before, up to `maxBackoff`.
    static let firstBackoff: Int64 = 5 * 1_000_000
    static let maxBackoff: Int64 = 6 * 3600 * 1_000_000
    static let timeout: TimeAmount = .seconds(10)

    init(
        database: any Database, box: SecretBox, allowPrivate: Bool, logger: Logger, clock: @escaping @Sendable () -> Int64 = { Timestamp.now().microseconds },
        jitter: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) {
        deliveries = WebhookDeliveries(database: database)
        self.box = box
        self.allowPrivate = allowPrivate
        self.logger = logger
        self.clock = clock
        self.jitter = jitter
    }

    /// The HTTP client: redirects are not followed (a public URL could redirect to a private one).
    private var http: HTTPClient {
        client.withLock { client in
            if let client { return client }
            var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(5), read: Self.timeout))
            configuration.connectionPool = .init(idleTimeout: .seconds(30))
            let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            client = made
            return made
        }
    }

    /// Closes the HTTP client, if one was made.
    func shutdown() async {
        let made = client.withLock { client in
            defer { client = nil }
            return client
        }
        try? await made?.shutdown()
    }

    func run() async throws {
        // Shutting down cancels the wait, or an attempt in flight: its lease lapses and it is made
        // again (at least once).
        try? await cancelWhenGracefulShutdown {
            var lastPrune: Int64 = 0
            while !Task.isCancelled {
                var busy = false
                do {
                    busy = try await self.round() > 0
                    if self.clock() - lastPrune > 600 * 1_000_000 {
                        try await self.deliveries.prune(now: self.clock())
                        lastPrune = self.clock()
                    }
                } catch {
                    self.logger.debug("webhook round failed", metadata: ["error": "\(error)"])
                }
                // A busy round is followed by the next at once, but at most 20 a second: each is
                // three transactions, on the same writer as everything else on SQLite.
                try await Task.sleep(for: .milliseconds(busy ? 50 : 250))
            }
        }
        await shutdown()
    }

    /// One round: fan out, claim, send, record. Each subscription's deliveries are sent one after
    /// another, in order, and a failure stops its turn (the rest wait behind the retry); the
    /// subscriptions are served side by side. Returns how many attempts it made.
    @discardableResult
    func round(limit: Int = 500, perSubscription: Int = 20) async throws -> Int {
        _ = try await deliveries.fanOut(now: clock())
        let claimed = try await deliveries.claim(now: clock(), limit: limit, perSubscription: perSubscription, box: box)
        guard !claimed.isEmpty else { return 0 }
        let turns = Dictionary(grouping: claimed, by: \.webhookID).values
        let attempts = await withTaskGroup(of: [(delivery: WebhookDeliveries.Claimed, outcome: WebhookDeliveries.Outcome?, retryAt: Int64)].self) { group in
            for turn in turns {
                group.addTask {
                    var done: [(delivery: WebhookDeliveries.Claimed, outcome: WebhookDeliveries.Outcome?, retryAt: Int64)] = []
                    var failed = false
                    for delivery in turn {
                        guard !failed else {
                            done.append((delivery, nil, 0))
                            continue
                        }
                        let outcome = await self.send(delivery)
                        failed = !outcome.succeeded
                        done.append((delivery, outcome, self.clock() + self.backoff(after: delivery.attempts)))
                    }
                    return done
                }
            }
            return await group.reduce(into: []) { $0 += $1 }
        }
        // If this fails the leases lapse and another round tries again: at least once.
        try await deliveries.record(attempts, now: clock())
        return attempts.filter { $0.outcome != nil }.count
    }

    /// The wait after the `attempts`-th failure: 5 s doubling each time up to 6 h, times a jitter in
    /// [0.5, 1) so that the retries of many subscriptions do not come back together.
    func backoff(after attempts: Int64) -> Int64 {
        let doubled = Self.firstBackoff << min(max(attempts - 1, 0), 20)
        return Int64(Double(min(doubled, Self.maxBackoff)) * (0.5 + jitter() / 2))
    }

    private func send(_ delivery: WebhookDeliveries.Claimed) async -> WebhookDeliveries.Outcome {
        let started = ContinuousClock.now
        let elapsed = { (ContinuousClock.now - started).milliseconds }
        guard !delivery.secrets.isEmpty else {
            return .init(status: nil, latencyMs: 0, error: "this instance's secret key cannot open the webhook's secret; instances must share --secret-key")
        }
        do {
            try await WebhookDestination.check(delivery.url, allowPrivate: allowPrivate)
            let timestamp = clock() / 1_000_000
            var request = HTTPClientRequest(url: delivery.url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "User-Agent", value: "Headcount-Webhooks/1")
            request.headers.add(name: "webhook-id", value: delivery.messageUID)
            request.headers.add(name: "webhook-timestamp", value: String(timestamp))
            let signatures = delivery.secrets.compactMap { WebhookSecret.signature(secret: $0, id: delivery.messageUID, timestamp: timestamp, body: delivery.body) }
            request.headers.add(name: "webhook-signature", value: signatures.joined(separator: " "))
            request.body = .bytes(ByteBuffer(string: delivery.body))
            let response = try await http.execute(request, timeout: Self.timeout)
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let status = Int(response.status.code)
            return .init(status: status, latencyMs: elapsed(), error: (200..<300).contains(status) ? nil : "HTTP \(status)")
        } catch let refused as WebhookDestination.Refused {
            return .init(status: nil, latencyMs: elapsed(), error: refused.reason)
        } catch {
            return .init(status: nil, latencyMs: elapsed(), error: "\(error)".prefix(300).description)
        }
    }
}
