import AsyncHTTPClient
import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization
import Testing

@testable import HeadcountServer

/// One server-sent event as a client sees it.
struct SSEEvent: Sendable {
    var id: String?
    var type = "message"
    var data = ""
}

/// A client of `/api/stream` over a real socket: events arrive in `events` as they are parsed.
final class SSEClient: Sendable {
    let events: AsyncStream<SSEEvent>
    let status: UInt
    private let task: Task<Void, Never>

    static func connect(port: Int, path: String = "/api/stream", headers: [(String, String)] = [], using http: HTTPClient) async throws -> SSEClient {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await http.execute(request, timeout: .seconds(3600))
        return SSEClient(response: response)
    }

    private init(response: HTTPClientResponse) {
        status = response.status.code
        let (events, continuation) = AsyncStream.makeStream(of: SSEEvent.self)
        self.events = events
        task = Task {
            var pending = ""
            var event = SSEEvent()
            do {
                for try await chunk in response.body {
                    pending += String(buffer: chunk)
                    while let newline = pending.firstIndex(of: "\n") {
                        let line = String(pending[..<newline])
                        pending = String(pending[pending.index(after: newline)...])
                        if line.isEmpty {
                            if !event.data.isEmpty || event.type != "message" { continuation.yield(event) }
                            event = SSEEvent()
                        } else if line.hasPrefix("id: ") {
                            event.id = String(line.dropFirst(4))
                        } else if line.hasPrefix("event: ") {
                            event.type = String(line.dropFirst(7))
                        } else if line.hasPrefix("data: ") {
                            event.data += String(line.dropFirst(6))
                        } else if line.hasPrefix(": heartbeat") {
                            continuation.yield(SSEEvent(type: "heartbeat"))
                        }
                    }
                }
            } catch {}
            continuation.finish()
        }
    }

    /// The next event that is not a heartbeat, or nil if none comes within `seconds`.
    func next(within seconds: Double = 1) async -> SSEEvent? {
        await withDeadline(seconds) {
            for await event in self.events where event.type != "heartbeat" { return event }
            return nil
        }
    }

    /// Whether the stream ends within `seconds`.
    func ends(within seconds: Double) async -> Bool {
        await withDeadline(seconds) {
            await self.task.value
            return true
        } ?? false
    }

    private func withDeadline<T: Sendable>(_ seconds: Double, _ operation: @escaping @Sendable () async -> T?) async -> T? {
        await withTaskGroup(of: T?.self) { group in
            group.addTask(operation: operation)
            group.addTask {
                try? await Task.sleep(for: .seconds(seconds))
                return nil
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
    }

    func close() { task.cancel() }
}

@Suite("Live updates") struct LiveTests {
    static let adminKey = "test-admin-key-0123456789"
    static let admin: HTTPFields = [.adminToken: adminKey, .contentType: "application/json"]

    static func environment(_ engine: Engine) async throws -> TestEnvironment {
        var environment = try await TestEnvironment.make(engine)
        environment.configuration.streamHeartbeat = .milliseconds(200)
        return environment
    }

    static func data(_ event: SSEEvent?) throws -> [String: Any] {
        let text = try #require(event?.data)
        return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// A change in each family reaches a subscriber within a second of its answer.
    @Test(arguments: Engine.available)
    func everyFamilyReachesSubscribers(engine: Engine) async throws {
        try await Self.environment(engine).withApp(.live) { client in
            let port = try #require(client.port)
            try await withParallelClient { http in
                let stream = try await SSEClient.connect(
                    port: port, path: "/api/stream?topics=rooms,sensors,events,attendance,reservations,places,rollcalls",
                    headers: [("X-Admin-Token", Self.adminKey)], using: http)
                #expect(stream.status == 200)

                _ = try await client.post("/rooms/lab/people/register", #"{"name": "Ada"}"#)
                let room = await stream.next()
                #expect(room?.type == "room.register")
                #expect(try Self.data(room)["room"] as? String == "lab" && Self.data(room)["inside"] as? Int == 1)

                _ = try await client.post("/api/webhook", #"{"sensor": "door", "ts": "2024-05-01T10:00:00Z", "in_count": 3, "out": 1}"#)
                let sensor = await stream.next()
                #expect(sensor?.type == "sensor.occupancy")
                #expect(try Self.data(sensor)["sensor"] as? String == "door" && Self.data(sensor)["inside"] as? Int == 2)

                _ = try await client.post(
                    "/events",
                    #"{"eventId": "gala", "title": "Gala", "description": "d", "date": "2030-01-01", "location": "Hall", "capacity": 1, "organizer": "o", "hasWaitlist": true}"#)
                #expect(await stream.next()?.type == "event.created")
                for user in ["u1", "u2"] {
                    _ = try await client.post("/users", jsonText(["userId": user, "name": user]))
                    _ = try await client.post("/events/gala/registrations", jsonText(["userId": user]))
                }
                let confirmed = try Self.data(await stream.next()), waitlisted = try Self.data(await stream.next())
                #expect(confirmed["status"] as? String == "confirmed" && confirmed["confirmedCount"] as? Int == 1)
                #expect(waitlisted["status"] as? String == "waitlisted" && waitlisted["position"] as? Int == 1 && waitlisted["waitlistCount"] as? Int == 1)
                _ = try await client.delete("/events/gala/registrations/u1")
                let cancellation = await stream.next()
                #expect(cancellation?.type == "event.cancellation")
                #expect(try Self.data(cancellation)["promoted"] as? [String] == ["u2"])
                #expect(try Self.data(cancellation)["confirmedCount"] as? Int == 1 && Self.data(cancellation)["waitlistCount"] as? Int == 0)
                _ = try await client.post("/events/gala/check-ins", #"{"userId": "u2", "nonce": "scan-1"}"#)
                let checkIn = await stream.next()
                #expect(checkIn?.type == "event.check_in")
                #expect(try Self.data(checkIn)["checkedInCount"] as? Int == 1)

                let token = try await AttendanceTests.device(client, "tab-1")
                #expect(await stream.next()?.type == "device.registered")
                _ = try await AttendanceTests.sync(client, token, [AttendanceTests.record(1, at: 1_700_000_000_000, device: "tab-1")])
                let sync = await stream.next()
                #expect(sync?.type == "attendance.sync")
                #expect(try Self.data(sync)["synced_count"] as? Int == 1 && Self.data(sync)["tenant_id"] as? String == "ACME")

                _ = try await client.post(
                    "/set-reservation", #"{"device_id": "d1", "start_time": "2024-01-01T10:00:00Z", "end_time": "2024-01-01T11:00:00Z", "credential": "secret"}"#)
                let reservation = await stream.next()
                #expect(reservation?.type == "reservation.set")
                #expect(try Self.data(reservation)["credential"] == nil)

                _ = try await client.post("/api/places", #"{"id": "hq", "name": "HQ"}"#, headers: Self.admin)
                _ = try await client.post("/api/places", #"{"id": "b1", "name": "B1", "parent_id": "hq"}"#, headers: Self.admin)
                #expect(try Self.data(await stream.next())["id"] as? String == "hq")
                #expect(await stream.next()?.type == "place.created")
                _ = try await client.put("/api/sensors/door/doorway", #"{"from": null, "to": "b1"}"#, headers: Self.admin)
                #expect(await stream.next()?.type == "place.linked")
                _ = try await client.post("/api/webhook", #"{"sensor": "door", "ts": "2024-05-01T10:01:00Z", "in_count": 1, "out": 0}"#)
                #expect(await stream.next()?.type == "sensor.occupancy")
                let moved = await stream.next()
                #expect(moved?.type == "place.occupancy")
                #expect(try Self.data(moved)["places"] as? [String] == ["b1"])
                _ = try await client.put("/api/rooms/lab/place", #"{"place_id": "b1"}"#, headers: Self.admin)
                #expect(try Self.data(await stream.next())["room"] as? String == "lab")
                let rollCall = try await client.post("/api/places/hq/roll-calls", "", headers: Self.admin).object()
                let started = await stream.next()
                #expect(started?.type == "rollcall.created")
                let id = try #require(rollCall["id"] as? String)
                #expect(try Self.data(started)["id"] as? String == id && Self.data(started)["people"] == nil)
                _ = try await client.put("/api/roll-calls/\(id)/people/1", #"{"status": "safe"}"#, headers: Self.admin)
                let marked = await stream.next()
                #expect(marked?.type == "rollcall.marked")
                #expect((try Self.data(marked)["person"] as? [String: Any])?["status"] as? String == "safe")
                _ = try await client.post("/api/roll-calls/\(id)/close", "", headers: Self.admin)
                #expect(await stream.next()?.type == "rollcall.closed")
                _ = try await client.delete("/api/places/hq?cascade=true", headers: Self.admin)
                let deleted = await stream.next()
                #expect(deleted?.type == "place.deleted")
                #expect(try Self.data(deleted)["ids"] as? [String] == ["b1", "hq"], "leaves first")
                // A rejected request publishes nothing.
                _ = try await client.post("/api/webhook", #"{"sensor": "door"}"#)
                #expect(await stream.next(within: 0.5) == nil)
                stream.close()
            }
        }
    }

    @Test(arguments: Engine.available)
    func topicsFilterAndResume(engine: Engine) async throws {
        try await Self.environment(engine).withApp(.live) { client in
            let port = try #require(client.port)
            try await withParallelClient { http in
                let sensors = try await SSEClient.connect(port: port, path: "/api/stream?topics=sensors", using: http)
                for (index, name) in ["Ada", "Bo", "Cy"].enumerated() {
                    _ = try await client.post("/people/register", jsonText(["name": name]))
                    _ = try await client.post("/api/webhook", jsonText(["sensor": "s\(index)", "ts": "2024-05-01T10:00:0\(index)Z", "in_count": 1, "out": 0]))
                }
                // Only the sensors topic, in order.
                var ids: [String] = []
                for index in 0..<3 {
                    let event = await sensors.next()
                    #expect(try Self.data(event)["sensor"] as? String == "s\(index)")
                    ids.append(try #require(event?.id))
                }
                sensors.close()

                // Resuming after the first sensor change replays the other two, then goes live.
                let resumed = try await SSEClient.connect(port: port, path: "/api/stream?topics=sensors", headers: [("Last-Event-ID", ids[0])], using: http)
                #expect(await resumed.next()?.id == ids[1])
                #expect(await resumed.next()?.id == ids[2])
                _ = try await client.post("/api/webhook", #"{"sensor": "s9", "ts": "2024-05-01T10:00:09Z", "in_count": 1, "out": 0}"#)
                #expect(try Self.data(await resumed.next())["sensor"] as? String == "s9")
                resumed.close()

                // An id this feed never gave (another instance's, or from before a restart) says so.
                let stale = try await SSEClient.connect(port: port, path: "/api/stream?topics=sensors", headers: [("Last-Event-ID", "feed0-5")], using: http)
                #expect(await stale.next()?.type == "reset")
                stale.close()

                #expect(try await client.get("/api/stream?topics=sensors,nope").status == .badRequest)
                #expect(try await client.get("/api/stream?topics=attendance").status == .unauthorized)
                #expect(try await client.get("/api/stream?topics=attendance&admin_key=wrong").status == .unauthorized)
                #expect(try await client.get("/api/stream?topics=places,rollcalls").status == .unauthorized, "roll calls carry names")
            }
        }
    }

    /// A client that leaves is noticed at the next heartbeat and stops being a subscriber.
    @Test func disconnectFreesTheSubscriber() async throws {
        try await Self.environment(.sqlite).withApp(.live) { client in
            let port = try #require(client.port)
            let subscribers = {
                let metrics = try await client.get("/metrics").text
                return metrics.split(separator: "\n").first { $0.hasPrefix("headcount_stream_subscribers") }.flatMap { $0.split(separator: " ").last }.map(String.init)
            }
            try await withParallelClient { http in
                let stream = try await SSEClient.connect(port: port, path: "/api/stream", using: http)
                #expect(try await subscribers() == "1")
                stream.close()
            }
            var gone = false
            for _ in 0..<20 where !gone {
                try await Task.sleep(for: .milliseconds(100))
                gone = try await subscribers() == "0"
            }
            #expect(gone)
        }
    }

    /// Graceful shutdown ends open streams instead of waiting for them forever.
    @Test func shutdownEndsStreams() async throws {
        try await withParallelClient { http in
            let stream = try await Self.environment(.sqlite).withApp(.live) { client in
                try await SSEClient.connect(port: try #require(client.port), path: "/api/stream", using: http)
            }
            #expect(await stream.ends(within: 5))
        }
    }

    @Test func dashboardIsServedFromTheBinary() async throws {
        try await Self.environment(.sqlite).withApp { client in
            let page = try await client.get("/dashboard")
            #expect(page.status == .ok && page.headers[.contentType]?.hasPrefix("text/html") == true)
            #expect(page.text.contains("/dashboard/dashboard.js") && !page.text.contains("https://"))
            let script = try await client.get("/dashboard/dashboard.js")
            #expect(script.headers[.contentType]?.hasPrefix("text/javascript") == true && script.text.contains("/api/stream"))
            #expect(try await client.get("/dashboard/dashboard.css").status == .ok)
            #expect(try await client.get("/dashboard/secrets.txt").status == .notFound)
        }
    }

    /// A subscriber that stops reading is cut off once the feed drops changes it has not read, and
    /// writers never wait for it.
    @Test func aSlowSubscriberIsCutOff() async throws {
        let feed = ChangeFeed(retained: 5, logger: Logger(label: "test"))
        let subscription = feed.subscribe([.sensors], after: nil)
        for n in 1...10 {
            feed.deliver([.init(topic: "sensors", type: "sensor.occupancy", data: #"{"inside":\#(n)}"#, at: Timestamp.now().microseconds)])
        }
        // Its stream is told, then ends.
        let told = try #require(await feed.nextText(subscription.id))
        #expect(told.hasPrefix("event: overflow\n"))
        #expect(await feed.nextText(subscription.id) == nil)
        #expect(feed.subscriberCount == 0)
        // The feed holds its last five changes for those who resume: one write, in order.
        let resumed = feed.subscribe([.sensors], after: 5)
        #expect(resumed.resumed)
        let replay = try #require(await feed.nextText(resumed.id))
        #expect(replay.components(separatedBy: "event: sensor.occupancy").count == 6)
        #expect(replay.hasPrefix("id: \(feed.epoch)-6\n") && replay.hasSuffix(#"data: {"inside":10}"# + "\n\n"))
        #expect(!feed.subscribe([.sensors], after: 4).resumed)
        // Changes delivered together are stored together; resuming inside them starts at the right one.
        feed.deliver((11...13).map { .init(topic: "sensors", type: "sensor.occupancy", data: #"{"inside":\#($0)}"#, at: Timestamp.now().microseconds) })
        let inside = try #require(await feed.nextText(feed.subscribe([.sensors], after: 11).id))
        #expect(inside.hasPrefix("id: \(feed.epoch)-12\n") && inside.components(separatedBy: "event: ").count == 3)
    }

    /// A subscriber gets only its topics, and no more than one write per flush interval however
    /// busy the feed is.
    @Test func streamsReadTheirTopicsFromTheLog() async throws {
        let feed = ChangeFeed(retained: 1_500, flushInterval: .milliseconds(200), logger: Logger(label: "test"))
        let service = Task { try await feed.run() }
        defer { service.cancel() }
        let rooms = feed.subscribe([.rooms], after: nil)
        func publish(_ topic: String, _ n: Int) {
            feed.deliver([.init(topic: topic, type: "t", data: "\(n)", at: Timestamp.now().microseconds)])
        }
        // More changes of another topic than the feed holds: not its news, so it is not behind.
        for n in 0..<2_000 { publish("sensors", n) }
        publish("rooms", 1)
        let first = try #require(await feed.nextText(rooms.id))
        #expect(first.hasSuffix("data: 1\n\n") && !first.contains("event: overflow"))
        publish("rooms", 2)
        publish("sensors", 3)
        publish("rooms", 4)
        let second = try #require(await feed.nextText(rooms.id))
        #expect(second.hasPrefix("id: ") && second.hasSuffix("data: 4\n\n") && second.contains("data: 2\n\n") && !second.contains("data: 3\n"))

        // A change every millisecond for a second: every one arrives, in a handful of writes.
        let started = ContinuousClock.now
        let busy = Task {
            for n in 0..<1_000 {
                publish("rooms", 10_000 + n)
                try await Task.sleep(for: .milliseconds(1))
            }
        }
        var (writes, received) = (0, "")
        while !received.hasSuffix("data: 10999\n\n") {
            received += try #require(await feed.nextText(rooms.id))
            writes += 1
        }
        try await busy.value
        #expect(received.components(separatedBy: "event: t\n").count == 1_001)
        let intervals = Int((ContinuousClock.now - started) / .milliseconds(200))
        #expect(writes <= intervals + 2, "one write per flush interval, not one per change: \(writes) writes in \(intervals) intervals")
        feed.end(rooms.id)
        #expect(await feed.nextText(rooms.id) == nil)
    }
}

extension ChangeFeed {
    /// What `next` gives a stream, as the text it writes.
    func nextText(_ id: Int) async -> String? {
        await next(id).map { $0.map { String(buffer: $0) }.joined() }
    }
}
