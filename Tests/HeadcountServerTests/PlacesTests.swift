import AsyncHTTPClient
import Foundation
import HummingbirdTesting
import Testing

@testable import HeadcountServer

@Suite("Places") struct PlacesTests {
    static let admin = WorkersTests.admin

    static func create(_ client: some TestClientProtocol, _ body: [String: Any]) async throws -> TestResponse {
        try await client.post("/api/places", jsonText(body), headers: admin)
    }

    @Test(arguments: Engine.available)
    func aTreeOfPlaces(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let site = try await Self.create(client, ["id": "hq", "name": "Headquarters"])
            #expect(site.status == .created)
            let hq = try site.object()
            #expect(hq["time_zone"] as? String == "UTC", "UTC unless said")
            #expect(hq["parent_id"] is NSNull)
            #expect(hq["children"] as? [String] == [])
            let building = try await Self.create(client, ["id": "b1", "name": "Building A", "parent_id": "hq", "time_zone": "Europe/Paris", "capacity": 400])
            #expect(try building.object()["capacity"] as? Int == 400)
            #expect(try await Self.create(client, ["id": "f1", "name": "Floor 1", "parent_id": "b1"]).status == .created)
            #expect(try await Self.create(client, ["id": "f0", "name": "Ground floor", "parent_id": "b1"]).status == .created)

            let one = try await client.get("/api/places/b1").object()
            #expect(one["children"] as? [String] == ["f1", "f0"], "by name: Floor 1, Ground floor")
            let list = try #require(try await client.get("/api/places").object()["places"] as? [[String: Any]])
            #expect(list.map { $0["id"] as? String } == ["hq", "b1", "f1", "f0"], "roots first, then by name")

            // Writes take the admin key; reading does not.
            #expect(try await client.post("/api/places", jsonText(["name": "x"])).status == .unauthorized)
            #expect(try await client.put("/api/places/b1", #"{"name":"x"}"#).status == .unauthorized)
            #expect(try await client.delete("/api/places/b1").status == .unauthorized)

            // What a write cannot do.
            #expect(try await Self.create(client, ["id": "hq", "name": "Again"]).status == .conflict)
            let orphan = try await Self.create(client, ["name": "Orphan", "parent_id": "nowhere"])
            #expect(orphan.status == .unprocessableContent)
            #expect(try orphan.errorMessage() == "parent_id names no place")
            let zone = try await Self.create(client, ["name": "Zone", "time_zone": "Mars/Olympus"])
            #expect(zone.status == .unprocessableContent)
            #expect(try zone.errorMessage().hasPrefix("time_zone must be an IANA time zone"))
            #expect(try await Self.create(client, ["name": "Big", "capacity": -1]).status == .unprocessableContent)
            #expect(try await client.get("/api/places/nowhere").status == .notFound)

            // Rename, clear the capacity, move to the root and back.
            let renamed = try await client.put("/api/places/b1", #"{"name":"Building B","capacity":null}"#, headers: Self.admin).object()
            #expect(renamed["name"] as? String == "Building B")
            #expect(renamed["capacity"] is NSNull)
            #expect(renamed["time_zone"] as? String == "Europe/Paris", "left alone")
            #expect(try await client.put("/api/places/f1", #"{"parent_id":null}"#, headers: Self.admin).object()["parent_id"] is NSNull)
            #expect(try await client.put("/api/places/f1", #"{"parent_id":"b1"}"#, headers: Self.admin).object()["parent_id"] as? String == "b1")
            #expect(try await client.put("/api/places/nowhere", #"{"name":"x"}"#, headers: Self.admin).status == .notFound)
            #expect(try await client.put("/api/places/b1", #"{"time_zone":null}"#, headers: Self.admin).status == .unprocessableContent)

            // A place with places in it goes only with them.
            let refused = try await client.delete("/api/places/b1", headers: Self.admin)
            #expect(refused.status == .conflict)
            #expect(try refused.errorMessage().contains("cascade=true"))
            #expect(try await client.delete("/api/places/b1?cascade=maybe", headers: Self.admin).status == .badRequest)
            #expect(try await client.delete("/api/places/f0", headers: Self.admin).status == .noContent)
            #expect(try await client.delete("/api/places/hq?cascade=true", headers: Self.admin).status == .noContent)
            #expect((try await client.get("/api/places").object()["places"] as? [Any])?.isEmpty == true)
            #expect(try await client.delete("/api/places/hq", headers: Self.admin).status == .notFound)
        }
    }

    /// Sensors are doorways between places (or the outside): a place counts what its doorways
    /// from outside it bring in, now and at any instant, and a doorway between two places inside
    /// it counts for neither.
    @Test(arguments: Engine.available)
    func doorwaysCountAPlaceAndEverythingUnderIt(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            for (id, parent) in [("hq", nil), ("b1", "hq"), ("f1", "b1"), ("f2", "b1")] as [(String, String?)] {
                _ = try await Self.create(client, ["id": id, "name": id, "parent_id": parent as Any? ?? NSNull()])
            }
            for (sensor, from, to) in [("entrance", nil, "b1"), ("door-f1", "b1", "f1"), ("stairs", "f1", "f2")] as [(String, String?, String)] {
                let link = try await client.put("/api/sensors/\(sensor)/doorway", jsonText(["from": from as Any? ?? NSNull(), "to": to]), headers: Self.admin)
                #expect(link.status == .ok)
            }
            for (sensor, ts, inCount, out) in [
                ("entrance", "2024-03-01T09:00:00Z", 10, 2), ("door-f1", "2024-03-01T09:05:00Z", 5, 1), ("stairs", "2024-03-01T10:00:00Z", 3, 0),
            ] {
                _ = try await client.post("/api/webhook", jsonText(["sensor": sensor, "ts": ts, "in_count": inCount, "out": out]))
            }
            func counted(_ place: String, at: String? = nil) async throws -> Int? {
                try await client.get("/api/places/\(place)/occupancy" + (at.map { "?at=\($0)" } ?? "")).object()["counted"] as? Int
            }
            #expect(try await counted("f2") == 3)
            #expect(try await counted("f1") == 1, "4 came in from the building, 3 went upstairs")
            #expect(try await counted("b1") == 8, "moves between its own floors count for nothing")
            #expect(try await counted("hq") == 8)
            #expect(try await counted("f1", at: "2024-03-01T09:30:00Z") == 4, "before anyone took the stairs")
            #expect(try await counted("f2", at: "2024-03-01T09:30:00Z") == 0)
            #expect(try await counted("b1", at: "2024-03-01T08:00:00Z") == 0)
            let f1 = try await client.get("/api/places/f1/occupancy").object()
            #expect((f1["doorways"] as? [[String: Any]])?.map { $0["sensor"] as? String } == ["door-f1", "stairs"])
            #expect(try await client.get("/api/places/nowhere/occupancy").status == .notFound)
            #expect(try await client.get("/api/places/f1/occupancy?at=soon").status == .badRequest)

            // What a link cannot be.
            #expect(try await client.put("/api/sensors/x/doorway", #"{"from":null,"to":"nowhere"}"#, headers: Self.admin).status == .unprocessableContent)
            #expect(try await client.put("/api/sensors/x/doorway", #"{"from":null,"to":null}"#, headers: Self.admin).status == .unprocessableContent)
            #expect(try await client.put("/api/sensors/x/doorway", #"{"from":"f1","to":"f1"}"#, headers: Self.admin).status == .unprocessableContent)
            #expect(try await client.put("/api/sensors/x/doorway", #"{"from":null,"to":"f1"}"#).status == .unauthorized)
            #expect(try await client.delete("/api/sensors/x/doorway", headers: Self.admin).status == .notFound)

            // Rooms live in places.
            #expect(try await client.put("/api/rooms/lab/place", #"{"place_id":"f1"}"#, headers: Self.admin).object()["place_id"] as? String == "f1")
            #expect(try await client.put("/api/rooms/lab/place", #"{"place_id":"nowhere"}"#, headers: Self.admin).status == .unprocessableContent)
            #expect(try await client.put("/api/rooms/bad%20room/place", #"{"place_id":"f1"}"#, headers: Self.admin).status == .badRequest)

            // A linked place goes only with its links; a cascade takes them along.
            let linked = try await client.delete("/api/places/f2", headers: Self.admin)
            #expect(linked.status == .conflict)
            #expect(try linked.errorMessage().contains("1 doorway(s)"))
            #expect(try await client.delete("/api/places/f2?cascade=true", headers: Self.admin).status == .noContent)
            #expect(try await counted("f1") == 4, "the stairs lead nowhere now")
            #expect(try await client.delete("/api/sensors/stairs/doorway", headers: Self.admin).status == .notFound, "gone with f2")
            #expect(try await client.delete("/api/rooms/lab/place", headers: Self.admin).status == .noContent)
            #expect(try await client.delete("/api/rooms/lab/place", headers: Self.admin).status == .notFound)
        }
    }

    /// A place's count at an instant is the sum of its doorways' own counts then, as each sensor's
    /// `atInstant` answers it (the place reads its sensors together): within a minute and at its
    /// edges, before a sensor's first event, and for a recounted sensor before and after its recount.
    @Test(arguments: Engine.available)
    func aPlaceAtAnInstantAddsItsDoorwaysAtThatInstant(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            _ = try await Self.create(client, ["id": "hall", "name": "hall"])
            let doors = ["north", "south", "east", "west"]
            for door in doors {
                #expect(try await client.put("/api/sensors/\(door)/doorway", #"{"from":null,"to":"hall"}"#, headers: Self.admin).status == .ok)
            }
            for (door, ts, inCount, out) in [
                ("north", "2024-03-01T09:00:10Z", 5, 0), ("north", "2024-03-01T09:01:20Z", 3, 1), ("north", "2024-03-01T09:01:40Z", 0, 2),
                ("south", "2024-03-01T08:30:00Z", 7, 0), ("east", "2024-03-01T09:01:30Z", 4, 0), ("west", "2024-03-01T08:00:00Z", 9, 0),
            ] {
                #expect(try await client.post("/api/webhook", jsonText(["sensor": door, "ts": ts, "in_count": inCount, "out": out])).status == .ok)
            }
            let recount = #"{"inside": 2, "at": "2024-03-01T09:00:30Z", "reason": "recount", "by": "Ada"}"#
            #expect(try await client.post("/api/sensors/west/adjustments", recount, headers: Self.admin).status == .created)
            for instant in [
                "2024-03-01T07:00:00Z", "2024-03-01T09:00:00Z", "2024-03-01T09:00:20Z", "2024-03-01T09:01:00Z", "2024-03-01T09:01:20Z",
                "2024-03-01T09:01:30Z", "2024-03-01T09:01:59Z", "2024-03-01T09:02:00Z", "2024-03-02T00:00:00Z",
            ] {
                var sum = 0
                for door in doors { sum += try await SensorsTests.inside(client, "/api/sensors/\(door)/occupancy?atInstant=\(instant)") ?? -1000 }
                let counted = try await client.get("/api/places/hall/occupancy?at=\(instant)").object()["counted"] as? Int
                #expect(counted == sum, "at \(instant)")
            }
            #expect(try await client.get("/api/places/hall/occupancy?at=2024-03-01T09:01:30Z").object()["counted"] as? Int == 7 + 7 + 4 + 2)
        }
    }

    @Test(arguments: Engine.available)
    func noCyclesAndABoundedDepth(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            for (id, parent) in [("a", nil), ("b", "a"), ("c", "b")] as [(String, String?)] {
                _ = try await Self.create(client, ["id": id, "name": id, "parent_id": parent as Any? ?? NSNull()])
            }
            for target in ["a", "b", "c"] {
                let move = try await client.put("/api/places/a", jsonText(["parent_id": target]), headers: Self.admin)
                #expect(move.status == .conflict, "a under \(target)")
            }
            #expect(try await client.get("/api/places/a").object()["parent_id"] is NSNull, "nothing changed")

            // A chain 32 deep takes no 33rd level, by creation or by moving a subtree under it.
            var parent = "c"
            for level in 4...32 {
                #expect(try await Self.create(client, ["id": "l\(level)", "name": "level \(level)", "parent_id": parent]).status == .created)
                parent = "l\(level)"
            }
            let deeper = try await Self.create(client, ["id": "l33", "name": "too deep", "parent_id": "l32"])
            #expect(deeper.status == .unprocessableContent)
            #expect(try deeper.errorMessage() == "places nest at most 32 levels deep")
            _ = try await Self.create(client, ["id": "x", "name": "x"])
            _ = try await Self.create(client, ["id": "y", "name": "y", "parent_id": "x"])
            #expect(try await client.put("/api/places/x", #"{"parent_id":"l31"}"#, headers: Self.admin).status == .unprocessableContent, "x and y would reach 33")
            #expect(try await client.put("/api/places/y", #"{"parent_id":"l31"}"#, headers: Self.admin).status == .ok, "y alone reaches 32")
        }
    }

    /// Two moves racing, each of which alone is fine but both together a cycle: one wins, on one
    /// instance and across engines, because every change of the tree's shape locks the tree first.
    @Test(arguments: Engine.available)
    func racingMovesNeverMakeACycle(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            let headers = [("X-Admin-Token", WorkersTests.adminKey)]
            for round in 0..<10 {
                let (a, b) = ("a\(round)", "b\(round)")
                for id in [a, b] { _ = try await Self.create(client, ["id": id, "name": id]) }
                let statuses = try await withParallelClient { http in
                    try await withThrowingTaskGroup(of: UInt.self) { group in
                        for (place, parent) in [(a, b), (b, a)] {
                            group.addTask {
                                try await send(.PUT, port: port, "/api/places/\(place)", body: .init(string: jsonText(["parent_id": parent])), headers: headers, using: http).status
                            }
                        }
                        return try await group.reduce(into: []) { $0.append($1) }
                    }
                }
                #expect(statuses.sorted() == [200, 409], "round \(round)")
                let parents = try await [a, b].asyncMap { try await client.get("/api/places/\($0)").object()["parent_id"] as? String }
                #expect(parents.compactMap { $0 }.count == 1, "exactly one moved")
            }
        }
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
