import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import SQLKit
import Synchronization
import Testing

@testable import HeadcountServer

/// A local webhook receiver: records every request and answers with the statuses given, in turn
/// (204 once they run out).
final class Receiver: Sendable {
    struct Received: Sendable {
        let id: String
        let timestamp: String
        let signature: String
        let body: String
    }

    private let state = Mutex<(received: [Received], answers: [Int])>(([], []))

    var received: [Received] { state.withLock { $0.received } }

    /// The next answers, replacing any not yet given.
    func answer(_ statuses: [Int]) { state.withLock { $0.answers = statuses } }

    /// Runs a receiver on a free port for the duration of `body`, which gets its URL.
    func run<T: Sendable>(_ body: @Sendable (String) async throws -> T) async throws -> T {
        let router = Router()
        router.post("hook") { request, _ -> Response in
            let text = String(buffer: try await request.body.collect(upTo: 1 << 20))
            let status = self.state.withLock { state -> Int in
                state.received.append(
                    Received(
                        id: request.headers[HTTPField.Name("webhook-id")!] ?? "", timestamp: request.headers[HTTPField.Name("webhook-timestamp")!] ?? "",
                        signature: request.headers[HTTPField.Name("webhook-signature")!] ?? "", body: text))
                return state.answers.isEmpty ? 204 : state.answers.removeFirst()
            }
            return Response(status: .init(code: status))
        }
        return try await Application(router: router).test(.live) { client in try await body("http://127.0.0.1:\(client.port!)/hook") }
    }
}

/// A clock that moves only when the test says.
final class TestClock: Sendable {
    private let value: Mutex<Int64>
    init(_ start: Int64) { value = Mutex(start) }
    var now: Int64 { value.withLock { $0 } }
    func advance(_ microseconds: Int64) { value.withLock { $0 += microseconds } }
}

@Suite("Webhooks") struct WebhooksTests {
    static let admin = WorkersTests.admin
    static let box = SecretBox(secretKey: "test-secret-key-0123456789")

    /// The environment with webhooks allowed to reach this machine (the receiver is local).
    static func environment(_ engine: Engine) async throws -> TestEnvironment {
        var environment = try await TestEnvironment.make(engine)
        environment.configuration.webhooksReachPrivateNetworks = true
        environment.configuration.secretKey = "test-secret-key-0123456789"
        return environment
    }

    /// Dispatchers on `database` whose clock the test moves, with no jitter; closed however `body` ends.
    static func withDispatchers<T: Sendable>(
        count: Int = 1, _ database: any Database, clock: TestClock, _ body: ([WebhookDispatcher]) async throws -> T
    ) async throws -> T {
        let dispatchers = (0..<count).map { _ in
            WebhookDispatcher(database: database, box: box, allowPrivate: true, logger: Logger(label: "test"), clock: { clock.now }, jitter: { 1 })
        }
        do {
            let result = try await body(dispatchers)
            for dispatcher in dispatchers { await dispatcher.shutdown() }
            return result
        } catch {
            for dispatcher in dispatchers { await dispatcher.shutdown() }
            throw error
        }
    }

    static func subscribe(_ database: any Database, url: String, events: [WebhookEvent], place: String? = nil) async throws -> (Webhook, String) {
        var fields = WebhooksRepository.Fields()
        fields.url = url
        fields.events = events.map(\.rawValue)
        fields.filterPlace = place.map { .some($0) }
        return try await WebhooksRepository(database: database, box: box).create(fields)
    }

    /// A change made the way every repository makes one: in a transaction that writes its outbox.
    static func change(_ database: any Database, _ event: OutboundEvent, thenFail: Bool = false) async throws {
        struct Rollback: Error {}
        try await database.transaction(publishingTo: ChangeFeed.unheard()) { _, changes in
            changes.send(event)
            if thenFail { throw Rollback() }
        }
    }

    /// Verifies a delivery as a receiver would, with the Standard Webhooks algorithm written out here.
    static func verified(_ received: Receiver.Received, secret: String) -> Bool {
        let key = SymmetricKey(data: Data(base64Encoded: String(secret.dropFirst("whsec_".count)))!)
        let expected = Data(HMAC<SHA256>.authenticationCode(for: Data("\(received.id).\(received.timestamp).\(received.body)".utf8), using: key)).base64EncodedString()
        return received.signature.split(separator: " ").contains { $0 == "v1,\(expected)" }
    }

    static func count(_ database: any Database, _ table: String) async throws -> Int {
        try await database.read { db in try await db.raw("SELECT COUNT(*) AS n FROM \(unsafeRaw: table)").first()!.decode(column: "n", as: Int.self) }
    }

    /// Through HTTP: a subscription is created with its secret shown once, a change is signed and
    /// delivered, and the delivery log shows it.
    @Test(arguments: Engine.available)
    func aChangeIsSignedAndDelivered(engine: Engine) async throws {
        let receiver = Receiver()
        try await receiver.run { url in
            try await Self.environment(engine).withApp(.live) { client in
                let created = try await client.post("/api/webhooks", jsonText(["url": url, "events": ["room.person_registered"]]), headers: Self.admin)
                #expect(created.status == .created)
                let webhook = try created.object()
                let secret = try #require(webhook["secret"] as? String)
                #expect(secret.hasPrefix("whsec_"))
                let id = try #require(webhook["id"] as? String)
                #expect(try await client.get("/api/webhooks/\(id)", headers: Self.admin).object()["secret"] == nil, "shown once")

                _ = try await client.post("/rooms/lab/people/register", #"{"name":"Ada"}"#)
                _ = try await client.post("/rooms/lab/people/unregister", #"{"name":"Ada"}"#)  // not subscribed
                for _ in 0..<100 where receiver.received.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
                let received = try #require(receiver.received.first)
                #expect(Self.verified(received, secret: secret))
                let body = try #require(try JSONSerialization.jsonObject(with: Data(received.body.utf8)) as? [String: Any])
                #expect(body["type"] as? String == "room.person_registered")
                #expect((body["data"] as? [String: Any])?["name"] as? String == "Ada")
                #expect(abs((Double(received.timestamp) ?? 0) - Date().timeIntervalSince1970) < 30)

                for _ in 0..<100 {
                    let log = try await client.get("/api/webhooks/\(id)/deliveries", headers: Self.admin).object()["deliveries"] as? [[String: Any]]
                    if log?.first?["status"] as? String == "succeeded" { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                let log = try #require(try await client.get("/api/webhooks/\(id)/deliveries", headers: Self.admin).object()["deliveries"] as? [[String: Any]])
                #expect(log.count == 1)
                #expect(log.first?["response_code"] as? Int == 204 && log.first?["message_id"] as? String == received.id)

                // A test ping, then a redelivery of the first message: the same id again.
                #expect(try await client.post("/api/webhooks/\(id)/test", "", headers: Self.admin).status == .accepted)
                let first = try #require(log.first?["id"] as? Int)
                #expect(try await client.post("/api/webhooks/\(id)/deliveries/\(first)/redeliver", "", headers: Self.admin).status == .accepted)
                for _ in 0..<100 where receiver.received.count < 3 { try await Task.sleep(for: .milliseconds(50)) }
                #expect(receiver.received.count == 3)
                #expect(receiver.received.contains { $0.body.contains(#""type":"webhook.test""#) })
                #expect(receiver.received.filter { $0.id == received.id }.count == 2)
                #expect(receiver.received.allSatisfy { Self.verified($0, secret: secret) })

                // Rotation: both secrets sign during the overlap.
                let rotated = try await client.post("/api/webhooks/\(id)/rotate-secret", "", headers: Self.admin).object()
                let newSecret = try #require(rotated["secret"] as? String)
                #expect(rotated["previous_secret_expires_at"] is String)
                _ = try await client.post("/rooms/lab/people/register", #"{"name":"Bo"}"#)
                for _ in 0..<100 where receiver.received.count < 4 { try await Task.sleep(for: .milliseconds(50)) }
                let last = try #require(receiver.received.last)
                #expect(Self.verified(last, secret: newSecret) && Self.verified(last, secret: secret))

                // What a subscription cannot be.
                #expect(try await client.post("/api/webhooks", jsonText(["url": url, "events": ["room.nothing"]]), headers: Self.admin).status == .unprocessableContent)
                #expect(try await client.post("/api/webhooks", jsonText(["url": "ftp://x", "events": ["reservation.set"]]), headers: Self.admin).status == .unprocessableContent)
                #expect(try await client.post("/api/webhooks", jsonText(["url": url, "events": []]), headers: Self.admin).status == .unprocessableContent)
                let place = try await client.post("/api/webhooks", jsonText(["url": url, "events": ["reservation.set"], "filter_place": "nowhere"]), headers: Self.admin)
                #expect(place.status == .unprocessableContent)
                #expect(try await client.post("/api/webhooks", jsonText(["url": url, "events": ["reservation.set"]])).status == .unauthorized)
                #expect(try await client.get("/api/webhooks/nope", headers: Self.admin).status == .notFound)
                #expect(try await client.delete("/api/webhooks/\(id)", headers: Self.admin).status == .noContent)
                #expect(try await client.get("/api/webhooks/\(id)/deliveries", headers: Self.admin).status == .notFound)
            }
        }
    }

    /// The document lists exactly the catalogue a subscription may ask for.
    @Test func theDocumentedCatalogueIsTheServersOwn() throws {
        let document = try #require(try JSONSerialization.jsonObject(with: Data(buffer: try Resources.load("openapi.json"))) as? [String: Any])
        let schemas = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: Any])
        let events = ((schemas["Webhook"] as? [String: Any])?["properties"] as? [String: Any])?["events"] as? [String: Any]
        #expect((events?["items"] as? [String: Any])?["enum"] as? [String] == WebhooksController.catalogue)
    }

    /// A webhook cannot reach this machine's own services unless the server allows it.
    @Test func privateDestinationsAreRefused() async throws {
        try await TestEnvironment.make(.sqlite).withApp { client in
            for url in ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://[::1]/hook"] {
                let refused = try await client.post("/api/webhooks", jsonText(["url": url, "events": ["reservation.set"]]), headers: Self.admin)
                #expect(refused.status == .unprocessableContent, "\(url)")
                #expect(try refused.errorMessage().contains("public addresses only") || refused.errorMessage().contains("resolve"), "\(url)")
            }
        }
        #expect(!WebhookDestination.isPublic([192, 168, 1, 1]) && !WebhookDestination.isPublic([172, 20, 0, 1]) && !WebhookDestination.isPublic([100, 64, 0, 1]))
        #expect(WebhookDestination.isPublic([93, 184, 216, 34]) && WebhookDestination.isPublic([172, 32, 0, 1]))
        #expect(!WebhookDestination.isPublic([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]), "IPv4-mapped loopback")
        #expect(!WebhookDestination.isPublic([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), "unique local")
    }

    /// Failures are retried 5 s, 10 s, 20 s … later (a clock of the test's own, no sleeping); a
    /// success ends it; a change rolled back is never sent; 410 disables the subscription.
    @Test(arguments: Engine.available)
    func retriesBackOffAndGoneDisables(engine: Engine) async throws {
        let receiver = Receiver()
        try await receiver.run { url in
            try await Self.environment(engine).withDatabase { database in
                let clock = TestClock(1_700_000_000_000_000)
                try await Self.withDispatchers(database, clock: clock) { dispatchers in
                    let dispatcher = dispatchers[0]
                    let (webhook, _) = try await Self.subscribe(database, url: url, events: [.reservationSet])
                    await #expect(throws: (any Error).self) { try await Self.change(database, OutboundEvent(.reservationSet, ["n": 0]), thenFail: true) }
                    #expect(try await Self.count(database, "webhook_messages") == 0, "nothing for a rolled-back change")

                    receiver.answer([500, 503])
                    try await Self.change(database, OutboundEvent(.reservationSet, ["n": 1]))
                    #expect(try await dispatcher.round() == 1)
                    clock.advance(4_900_000)
                    #expect(try await dispatcher.round() == 0, "not before 5 s")
                    clock.advance(100_000)
                    #expect(try await dispatcher.round() == 1, "the second attempt at 5 s")
                    clock.advance(9_000_000)
                    #expect(try await dispatcher.round() == 0, "the third waits 10 s")
                    clock.advance(1_000_000)
                    #expect(try await dispatcher.round() == 1)
                    let log = try #require(try await WebhooksRepository(database: database, box: Self.box).deliveries(webhook.id, limit: 10)?.first)
                    #expect(log.status == "succeeded" && log.attempts == 3 && log.responseCode == 204)
                    #expect(receiver.received.count == 3 && Set(receiver.received.map(\.id)).count == 1, "one message, three attempts")
                    #expect(dispatcher.backoff(after: 20) == WebhookDispatcher.maxBackoff, "at most 6 hours apart")

                    // Three days of failures give up; 410 disables the subscription at once.
                    receiver.answer(Array(repeating: 500, count: 40))
                    try await Self.change(database, OutboundEvent(.reservationSet, ["n": 2]))
                    for _ in 0..<40 {
                        _ = try await dispatcher.round()
                        clock.advance(WebhookDispatcher.maxBackoff)
                    }
                    let failed = try #require(try await WebhooksRepository(database: database, box: Self.box).deliveries(webhook.id, limit: 1)?.first)
                    #expect(failed.status == "failed")
                    let disabled = try #require(try await WebhooksRepository(database: database, box: Self.box).webhook(webhook.id))
                    #expect(!disabled.enabled && disabled.disabledReason?.hasPrefix("failing since more than 3 days") == true)

                    let (gone, _) = try await Self.subscribe(database, url: url, events: [.deviceDeactivated])
                    receiver.answer([410])
                    try await Self.change(database, OutboundEvent(.deviceDeactivated, ["device_id": "d"]))
                    _ = try await dispatcher.round()
                    let goneNow = try #require(try await WebhooksRepository(database: database, box: Self.box).webhook(gone.id))
                    #expect(!goneNow.enabled && goneNow.disabledReason == "the endpoint answered 410 Gone")
                }
            }
        }
    }

    /// Two instances sending one outbox: every message is attempted once, by one of them.
    @Test(arguments: Engine.available)
    func twoDispatchersAttemptEachDeliveryOnce(engine: Engine) async throws {
        let receiver = Receiver()
        try await receiver.run { url in
            try await Self.environment(engine).withDatabase { database in
                let clock = TestClock(1_700_000_000_000_000)
                try await Self.withDispatchers(count: 2, database, clock: clock) { instances in
                    for index in 0..<3 { _ = try await Self.subscribe(database, url: url + "?s=\(index)", events: [.attendanceRecordCreated]) }
                    for n in 0..<30 { try await Self.change(database, OutboundEvent(.attendanceRecordCreated, ["n": n])) }
                    // Rounds until all 90 arrived: a fixed number of rounds would end too soon when
                    // one instance's empty rounds (the other holding every claimable delivery)
                    // outpace the other's sending.
                    let deadline = ContinuousClock.now + .seconds(30)
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for dispatcher in instances {
                            group.addTask {
                                while receiver.received.count < 90, ContinuousClock.now < deadline {
                                    if try await dispatcher.round(limit: 4) == 0 { try await Task.sleep(for: .milliseconds(1)) }
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                    let attempts = receiver.received.map { "\($0.id) \($0.body)" }
                    #expect(attempts.count == 90, "30 messages to 3 subscriptions")
                    #expect(Set(receiver.received.map(\.id)).count == 30)
                    #expect(try await Self.count(database, "webhook_deliveries") == 90)
                    let retried = try await database.read { db in
                        try await db.raw("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE attempts <> 1 OR status <> 'succeeded'").first()!.decode(column: "n", as: Int.self)
                    }
                    #expect(retried == 0)
                }
            }
        }
    }

    /// What was committed is sent by a dispatcher that starts later (after a crash, say); a place
    /// filter passes changes of rooms under the place only; a newer count of a sensor supersedes
    /// the older ones still waiting.
    @Test(arguments: Engine.available)
    func theOutboxOutlivesItsWriterAndFiltersByPlace(engine: Engine) async throws {
        let receiver = Receiver()
        try await receiver.run { url in
            try await Self.environment(engine).withDatabase { database in
                let places = PlacesRepository(database: database, feed: ChangeFeed.unheard())
                for (id, parent) in [("hq", nil), ("b1", "hq"), ("b2", "hq")] as [(String, String?)] {
                    _ = try await places.create(.init(id: id, name: id, parentID: parent, timeZone: "UTC", capacity: nil, staleAfterMinutes: 960))
                }
                _ = try await places.link(.room, "lab", to: "b1")
                _ = try await places.link(.room, "shop", to: "b2")
                _ = try await Self.subscribe(database, url: url, events: [.roomPersonRegistered], place: "b1")
                let rooms = RoomsRepository(database: database, feed: ChangeFeed.unheard())
                _ = try await rooms.record(.register, name: "Ada", room: "lab")
                _ = try await rooms.record(.register, name: "Bo", room: "shop")
                _ = try await rooms.record(.register, name: "Cy", room: "attic")

                // Written, not yet sent; a dispatcher that starts now sends it. A type nobody asked for is not written.
                _ = try await rooms.record(.unregister, name: "Cy", room: "attic")
                #expect(try await Self.count(database, "webhook_messages") == 3)
                let clock = TestClock(Timestamp.now().microseconds)
                _ = try await Self.withDispatchers(database, clock: clock) { try await $0[0].round() }
                #expect(receiver.received.count == 1)
                #expect(receiver.received.first?.body.contains(#""name":"Ada""#) == true)
                #expect(try await Self.count(database, "webhook_messages") == 1, "what nobody wanted is dropped")

                let (counts, _) = try await Self.subscribe(database, url: url, events: [.sensorOccupancyChanged])
                for inside in 1...5 {
                    try await Self.change(
                        database, OutboundEvent(.sensorOccupancyChanged, ["sensor": JSONValue.string("door"), "inside": .int(Int64(inside))], sensor: "door", count: Int64(inside)))
                }
                _ = try await Self.withDispatchers(database, clock: clock) { try await $0[0].round() }
                let sent = receiver.received.filter { $0.body.contains("sensor.occupancy_changed") }
                #expect(sent.count == 1 && sent.first?.body.contains(#""inside":5"#) == true, "only the latest count")
                #expect(try await WebhooksRepository(database: database, box: Self.box).deliveries(counts.id, limit: 10)?.count == 1)
            }
        }
    }

    /// A transaction with many messages (a batch of syncs sends one per record) reads the
    /// subscriptions first: the wanted ones are all written, with their data, the rest not at all.
    @Test(arguments: Engine.available)
    func manyMessagesInOneTransactionKeepWhatIsWanted(engine: Engine) async throws {
        try await Self.environment(engine).withDatabase { database in
            let many = { (n: Int) in
                try await database.transaction(publishingTo: ChangeFeed.unheard()) { _, changes in
                    for index in 0..<n {
                        changes.send(OutboundEvent(.attendanceRecordCreated, ["n": index]))
                        changes.send(OutboundEvent(.attendanceRecordDeleted, ["n": index]))
                    }
                }
            }
            try await many(30)
            #expect(try await Self.count(database, "webhook_messages") == 0, "nobody subscribed")
            _ = try await Self.subscribe(database, url: "https://example.com/hook", events: [.attendanceRecordCreated])
            try await many(30)
            let bodies = try await database.read { db in
                try await db.raw("SELECT body FROM webhook_messages").all().map { try $0.decode(column: "body", as: String.self) }
            }
            #expect(bodies.count == 30)
            #expect(bodies.allSatisfy { $0.contains(#""type":"attendance.record_created""#) })
            #expect((0..<30).allSatisfy { n in bodies.contains { $0.contains(#""data":{"n":\#(n)}"#) } })
        }
    }
}
