import AsyncHTTPClient
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

@testable import HeadcountServer

@Suite("Reservations") struct ReservationsTests {
    static func body(_ device: Any?, start: Any? = "2024-01-01T10:00:00Z", end: Any? = "2024-01-01T12:00:00Z", credential: Any? = "user_credential_string") -> String {
        var object: [String: Any] = [:]
        if let device { object["device_id"] = device }
        if let start { object["start_time"] = start }
        if let end { object["end_time"] = end }
        if let credential { object["credential"] = credential }
        return jsonText(object)
    }

    @Test(arguments: Engine.available)
    func setThenGetAndReplace(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let saved = try await client.post("/set-reservation", Self.body("pc-1"))
            #expect(saved.status == .ok)
            #expect(try saved.object() as NSDictionary == ["status": "saved"])
            let got = try await client.get("/get-reservation?device_id=pc-1")
            #expect(try got.object() as NSDictionary == ["start_time": "2024-01-01T10:00:00Z", "end_time": "2024-01-01T12:00:00Z", "credential": "user_credential_string"])

            _ = try await client.post("/set-reservation", Self.body("pc-1", start: "2024-01-02T09:30:00+02:00", end: "2024-01-02T10:00:00.250+02:00", credential: "second"))
            let replaced = try await client.get("/get-reservation?device_id=pc-1").object()
            #expect(replaced as NSDictionary == ["start_time": "2024-01-02T07:30:00Z", "end_time": "2024-01-02T08:00:00.25Z", "credential": "second"])

            let history = try await client.get("/api/reservations?device_id=pc-1").object()
            let items = try #require(history["reservations"] as? [[String: Any]])
            #expect(items.map { $0["status"] as? String } == ["replaced", "active"])
            #expect(items.map { $0["credential"] as? String } == ["user_credential_string", "second"])
        }
    }

    @Test(arguments: Engine.available)
    func unknownDevicesAreNotFound(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            for uri in ["/get-reservation?device_id=nope", "/get-reservation", "/get-reservation?device_id=", "/get-reservation?device_id=a%00b"] {
                let response = try await client.get(uri)
                #expect(response.status == .notFound, "\(uri)")
                #expect(try response.errorMessage() == "not found")
            }
            #expect(try await client.get("/api/reservations?device_id=nope").object()["reservations"] as? [Any] != nil)
            #expect(try await client.get("/api/reservations").status == .badRequest)
            #expect(try await client.get("/api/reservations?device_id=a%00b").status == .badRequest)
        }
    }

    @Test(arguments: Engine.available)
    func badInputIs400AndStoresNothing(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            _ = try await client.post("/set-reservation", Self.body("pc-1"))
            let cases: [(String, String)] = [
                (Self.body(nil), "device_id required"),
                (Self.body(""), "device_id required"),
                (Self.body(42), "device_id required"),
                (Self.body(NSNull()), "device_id required"),
                (Self.body(String(repeating: "d", count: 201)), "device_id must be at most 200 characters"),
                (Self.body("pc\u{0}1"), "device_id must not contain control characters"),
                (Self.body("pc-1", credential: "a\u{0}b"), "credential must not contain U+0000"),
                (Self.body("pc-1", start: nil), "start_time must be an RFC 3339 date-time, e.g. 2024-01-01T10:00:00Z"),
                (Self.body("pc-1", start: "tomorrow"), "start_time must be an RFC 3339 date-time, e.g. 2024-01-01T10:00:00Z"),
                (Self.body("pc-1", end: 1_700_000_000), "end_time must be an RFC 3339 date-time, e.g. 2024-01-01T10:00:00Z"),
                (Self.body("pc-1", end: "2024-01-01T10:00:00Z"), "end_time must be after start_time"),
                (Self.body("pc-1", end: "2024-01-01T09:00:00Z"), "end_time must be after start_time"),
                (Self.body("pc-1", credential: nil), "credential must be a string"),
                (Self.body("pc-1", credential: 7), "credential must be a string"),
                (Self.body("pc-1", credential: String(repeating: "c", count: 1001)), "credential must be at most 1000 characters"),
            ]
            for (body, message) in cases {
                for route in ["/set-reservation", "/api/reservations"] {
                    let response = try await client.post(route, body)
                    #expect(response.status == .badRequest, "\(route) \(body)")
                    #expect(try response.errorMessage() == message, "\(route) \(body)")
                }
            }
            for body in ["{", "[1]", "", "null"] {
                #expect(try await client.post("/set-reservation", body).status == .badRequest, "\(body)")
            }
            let history = try await client.get("/api/reservations?device_id=pc-1").object()
            #expect((history["reservations"] as? [Any])?.count == 1)
            #expect(try await client.get("/get-reservation?device_id=pc-1").object()["start_time"] as? String == "2024-01-01T10:00:00Z")
        }
    }

    @Test(arguments: Engine.available)
    func reservedURLCharactersRoundTrip(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let id = "lab/pc 1?x=a&b#c%d+é"
            _ = try await client.post("/set-reservation", Self.body(id))
            let encoded = id.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            let got = try await client.get("/get-reservation?device_id=\(encoded)")
            #expect(got.status == .ok)
            #expect(try await client.get("/api/reservations?device_id=\(encoded)").object()["device_id"] as? String == id)
        }
    }

    @Test(arguments: Engine.available)
    func bookingsRefuseOverlapsButAllowAdjacentIntervals(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let first = try await client.post("/api/reservations", Self.body("pc-9", start: "2024-03-01T10:00:00Z", end: "2024-03-01T11:00:00Z"))
            #expect(first.status == .created)
            let created = try first.object()
            #expect(created["device_id"] as? String == "pc-9")
            #expect(created["status"] as? String == "active")

            let overlap = try await client.post("/api/reservations", Self.body("pc-9", start: "2024-03-01T10:30:00Z", end: "2024-03-01T11:30:00Z"))
            #expect(overlap.status == .conflict)
            #expect(try (overlap.object()["conflicting"] as? [String: Any])?["id"] as? Int == created["id"] as? Int)
            let inside = try await client.post("/api/reservations", Self.body("pc-9", start: "2024-03-01T10:10:00Z", end: "2024-03-01T10:20:00Z"))
            #expect(inside.status == .conflict)

            let adjacent = try await client.post("/api/reservations", Self.body("pc-9", start: "2024-03-01T11:00:00Z", end: "2024-03-01T12:00:00Z"))
            #expect(adjacent.status == .created)
            let otherDevice = try await client.post("/api/reservations", Self.body("pc-10", start: "2024-03-01T10:30:00Z", end: "2024-03-01T11:30:00Z"))
            #expect(otherDevice.status == .created)
            #expect((try await client.get("/api/reservations?device_id=pc-9").object()["reservations"] as? [Any])?.count == 2)
        }
    }

    /// Twenty POSTs to `path` at once, the `i`th with `body(i)`; their statuses.
    static func postAtOnce(port: Int, _ path: String, body: @escaping @Sendable (Int) -> String) async throws -> [UInt] {
        try await withParallelClient { http in
            try await withThrowingTaskGroup(of: UInt.self) { group in
                for i in 0..<20 {
                    group.addTask { try await send(.POST, port: port, path, body: ByteBuffer(string: body(i)), using: http).status }
                }
                return try await group.reduce(into: [UInt]()) { $0.append($1) }
            }
        }
    }

    /// Twenty clients book the same slot at once: exactly one wins.
    @Test(arguments: Engine.available)
    func concurrentOverlappingBookingsHaveOneWinner(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            let statuses = try await Self.postAtOnce(port: port, "/api/reservations") { i in
                Self.body("shared", start: "2024-05-01T10:00:00Z", end: "2024-05-01T11:0\(i % 10):00Z", credential: "c\(i)")
            }
            #expect(statuses.filter { $0 == 201 }.count == 1)
            #expect(statuses.filter { $0 == 409 }.count == 19)
            #expect((try await client.get("/api/reservations?device_id=shared").object()["reservations"] as? [Any])?.count == 1)
        }
    }

    /// Parallel create-or-replace on one device leaves exactly one active reservation: the last
    /// one made, which is what `get-reservation` answers.
    @Test(arguments: Engine.available)
    func concurrentReplacementsLeaveOneActive(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            let statuses = try await Self.postAtOnce(port: port, "/set-reservation") { i in Self.body("busy", credential: "c\(i)") }
            #expect(statuses == Array(repeating: 200, count: 20))
            let items = try #require(try await client.get("/api/reservations?device_id=busy").object()["reservations"] as? [[String: Any]])
            #expect(items.count == 20)
            let active = items.filter { $0["status"] as? String == "active" }
            #expect(active.count == 1)
            let newest = items.max { ($0["id"] as? Int ?? 0) < ($1["id"] as? Int ?? 0) }
            #expect(active.first?["credential"] as? String == newest?["credential"] as? String)
            #expect(try await client.get("/get-reservation?device_id=busy").object()["credential"] as? String == active.first?["credential"] as? String)
        }
    }

    @Test(arguments: Engine.available)
    func reservationsSurviveARestart(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        try await environment.withApp { client in
            _ = try await client.post("/set-reservation", Self.body("pc-1"))
        }
        try await environment.withApp { client in
            let response = try await client.get("/get-reservation?device_id=pc-1")
            #expect(response.status == .ok)
        }
    }
}
