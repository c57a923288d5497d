import AsyncHTTPClient
import Foundation
import HummingbirdTesting
import Logging
import NIOCore
import SQLKit
import Testing

@testable import HeadcountServer

@Suite("Events") struct EventsTests {
    static func event(_ id: String?, capacity: Any = 100, waitlist: Bool? = nil, waitlistKey: String = "hasWaitlist") -> [String: Any] {
        var body: [String: Any] = [
            "title": "Tech Conference 2024", "description": "Annual technology conference", "date": "2024-12-15",
            "location": "San Francisco, CA", "capacity": capacity, "organizer": "Tech Corp", "status": "active",
        ]
        if let id { body["eventId"] = id }
        if let waitlist { body[waitlistKey] = waitlist }
        return body
    }

    static func array(_ response: TestResponse) throws -> [[String: Any]] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [[String: Any]], "not an array: \(response.text)")
    }

    /// Creates users `u0`…`u(count-1)`.
    static func users(_ client: any TestClientProtocol, _ count: Int, prefix: String = "u") async throws {
        for i in 0..<count {
            let response = try await client.post("/users", jsonText(["userId": "\(prefix)\(i)", "name": "User \(i)"]))
            #expect(response.status == .created)
        }
    }

    @Test(arguments: Engine.available)
    func eventsAreWireCompatible(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let created = try await client.post("/events", jsonText(Self.event("tech-conf-2024", waitlist: true, waitlistKey: "waitlistEnabled")))
            #expect(created.status == .created)
            let event = try created.object()
            #expect(event["eventId"] as? String == "tech-conf-2024")
            #expect(event["hasWaitlist"] as? Bool == true)
            #expect(event["capacity"] as? Int == 100)
            #expect(event["date"] as? String == "2024-12-15")

            // The original overwrote an event posted with an existing id.
            let again = try await client.post("/events", jsonText(Self.event("tech-conf-2024", capacity: 5)))
            #expect(again.status == .conflict)
            #expect(try again.object()["detail"] as? String == "Event tech-conf-2024 already exists")
            #expect(try await client.get("/events/tech-conf-2024").object()["capacity"] as? Int == 100)

            let generated = try await client.post("/events", jsonText(Self.event(nil).merging(["status": "cancelled", "title": "  Padded  "]) { $1 })).object()
            #expect((generated["eventId"] as? String)?.count == 36)
            #expect(generated["title"] as? String == "Padded")
            #expect(generated["hasWaitlist"] as? Bool == false)

            #expect(try Self.array(try await client.get("/events")).count == 2)
            #expect(try Self.array(try await client.get("/events?status=cancelled")).map { $0["eventId"] as? String } == [generated["eventId"] as? String])
            #expect(try await client.get("/events?status=bogus").status == .unprocessableContent)

            let updated = try await client.put("/events/tech-conf-2024", #"{"location": "Oakland, CA", "status": "scheduled"}"#)
            #expect(updated.status == .ok)
            let after = try updated.object()
            #expect(after["location"] as? String == "Oakland, CA")
            #expect(after["status"] as? String == "scheduled")
            #expect(after["title"] as? String == "Tech Conference 2024")

            for (body, field) in [
                (#"{"title": null}"#, "title"), (#"{"capacity": 0}"#, "capacity"), (#"{"eventId": "other"}"#, "eventId"), (#"{"hasWaitlist": "yes"}"#, "hasWaitlist"),
            ] {
                let response = try await client.put("/events/tech-conf-2024", body)
                #expect(response.status == .unprocessableContent, "\(body)")
                #expect((try response.object()["fields"] as? [[String: Any]])?.first?["field"] as? String == field)
            }
            #expect(try await client.put("/events/nope", "{}").status == .notFound)
            #expect(try await client.get("/events/tech-conf-2024").object()["location"] as? String == "Oakland, CA")

            let deleted = try await client.delete("/events/tech-conf-2024")
            #expect(try deleted.object() as NSDictionary == ["message": "Event deleted successfully"])
            #expect(try await client.get("/events/tech-conf-2024").status == .notFound)
            #expect(try await client.delete("/events/tech-conf-2024").status == .notFound)
        }
    }

    @Test(arguments: Engine.available)
    func invalidEventsAre422AndStoreNothing(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let cases: [([String: Any], String)] = [
                (Self.event("e").merging(["title": ""]) { $1 }, "title"),
                (Self.event("e").merging(["title": "   "]) { $1 }, "title"),
                (Self.event("e").merging(["title": String(repeating: "t", count: 201)]) { $1 }, "title"),
                (Self.event("e").merging(["title": NSNull()]) { $1 }, "title"),
                (Self.event("e").merging(["description": String(repeating: "d", count: 1001)]) { $1 }, "description"),
                (Self.event("e").merging(["date": "next tuesday"]) { $1 }, "date"),
                (Self.event("e").merging(["date": "2024-02-30"]) { $1 }, "date"),
                (Self.event("e").merging(["location": 5]) { $1 }, "location"),
                (Self.event("e").merging(["organizer": String(repeating: "o", count: 101)]) { $1 }, "organizer"),
                (Self.event("e", capacity: 0), "capacity"),
                (Self.event("e", capacity: 100_001), "capacity"),
                (Self.event("e", capacity: "10"), "capacity"),
                (Self.event("e", capacity: 2.5), "capacity"),
                (Self.event("e").merging(["status": "postponed"]) { $1 }, "status"),
                (Self.event("e").merging(["hasWaitlist": true, "waitlistEnabled": false]) { $1 }, "hasWaitlist"),
                (Self.event("e").merging(["eventId": ""]) { $1 }, "eventId"),
                (Self.event("e").filter { $0.key != "organizer" }, "organizer"),
            ]
            for (body, field) in cases {
                let response = try await client.post("/events", jsonText(body))
                #expect(response.status == .unprocessableContent, "\(body)")
                let fields = try response.object()["fields"] as? [[String: Any]]
                #expect(fields?.map { $0["field"] as? String } == [field], "\(body)")
                #expect(try response.errorMessage().contains(field))
            }
            #expect(try await client.post("/events", "{").status == .badRequest)
            #expect(try await client.post("/events", "[1]").status == .unprocessableContent)
            #expect(try Self.array(try await client.get("/events")).isEmpty)

            for body in [#"{"userId": "", "name": "A"}"#, #"{"userId": "a", "name": "  "}"#, #"{"name": "A"}"#, #"{"userId": "a", "name": null}"#] {
                #expect(try await client.post("/users", body).status == .unprocessableContent, "\(body)")
            }
            #expect(try await client.get("/users/a").status == .notFound)
        }
    }

    @Test(arguments: Engine.available)
    func registrationsWaitlistAndPromotion(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            try await Self.users(client, 4)
            let user = try await client.post("/users", #"{"userId": "u0", "name": "Again"}"#)
            #expect(user.status == .conflict)
            #expect(try await client.get("/users/u1").object() as NSDictionary == ["userId": "u1", "name": "User 1"])
            _ = try await client.post("/events", jsonText(Self.event("small", capacity: 2, waitlist: true)))
            _ = try await client.post("/events", jsonText(Self.event("closed", capacity: 1)))

            // The checks, in the seed's order.
            #expect(try await client.post("/registrations", #"{"userId": "ghost", "eventId": "nope"}"#).errorMessage() == "User not found")
            #expect(try await client.post("/registrations", #"{"userId": "u0", "eventId": "nope"}"#).errorMessage() == "Event not found")
            #expect(try await client.post("/registrations", #"{"userId": "u0"}"#).status == .unprocessableContent)

            var positions: [Int?] = []
            for (i, uri) in ["/registrations", "/events/small/registrations", "/registrations", "/events/small/registrations"].enumerated() {
                let response = try await client.post(uri, jsonText(["userId": "u\(i)", "eventId": "small"]))
                #expect(response.status == .created)
                let body = try response.decoded(as: RegistrationBody.self)
                #expect(body.status == (i < 2 ? "confirmed" : "waitlisted"))
                #expect(Timestamp(rfc3339: body.registeredAt) != nil)
                positions.append(body.position)
            }
            #expect(positions == [nil, nil, 1, 2])
            let twice = try await client.post("/registrations", #"{"userId": "u0", "eventId": "small"}"#)
            #expect(twice.status == .conflict)
            #expect(try twice.errorMessage() == "User is already registered for this event")
            _ = try await client.post("/registrations", #"{"userId": "u0", "eventId": "closed"}"#)
            let full = try await client.post("/registrations", #"{"userId": "u1", "eventId": "closed"}"#)
            #expect(full.status == .conflict)
            #expect(try full.errorMessage() == "Event is full")

            // u0 leaves: u2, the oldest waitlisted, takes the seat; u3 moves up.
            let left = try await client.delete("/registrations/u0/small")
            #expect(try left.object() as NSDictionary == ["message": "Registration deleted successfully"])
            let list = try await client.get("/events/small/registrations").decoded(as: [RegistrationBody].self)
            #expect(list.map(\.userId) == ["u1", "u2", "u3"])
            #expect(list.map(\.status) == ["confirmed", "confirmed", "waitlisted"])
            #expect(list.map(\.position) == [nil, nil, 1])
            #expect(try await client.get("/events/small/registrations?status=waitlisted").decoded(as: [RegistrationBody].self).count == 1)
            #expect(try await client.get("/events/small").decoded(as: EventBody.self).confirmedCount == 2)

            let mine = try await client.get("/users/u3/registrations").decoded(as: [RegistrationBody].self)
            #expect(mine.count == 1)
            #expect(mine.first?.eventTitle == "Tech Conference 2024")
            #expect(mine.first?.status == "waitlisted")
            #expect(try await client.get("/users/ghost/registrations").status == .notFound)
            #expect(try await client.get("/events/nope/registrations").status == .notFound)
            #expect(try await client.delete("/events/small/registrations/u0").status == .notFound)

            let csv = try await client.get("/events/small/registrations.csv")
            #expect(csv.headers[.contentType] == "text/csv; charset=utf-8")
            let lines = csv.text.components(separatedBy: "\r\n")
            #expect(lines.first == "userId,eventId,status,position,registeredAt,checkedIn")
            #expect(lines.dropFirst().filter { !$0.isEmpty }.map { $0.split(separator: ",", omittingEmptySubsequences: false)[2] } == ["confirmed", "confirmed", "waitlisted"])

            // Deleting the event takes its registrations with it.
            _ = try await client.delete("/events/small")
            #expect(try Self.array(try await client.get("/users/u1/registrations")).isEmpty)
        }
    }

    @Test(arguments: Engine.available)
    func capacityChangesPromoteAndNeverDemote(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            try await Self.users(client, 6)
            _ = try await client.post("/events", jsonText(Self.event("grow", capacity: 2, waitlist: true)))
            for i in 0..<6 { _ = try await client.post("/events/grow/registrations", jsonText(["userId": "u\(i)"])) }
            func put(_ body: String) async throws -> TestResponse {
                try await client.put("/events/grow", body)
            }
            let grown = try await put(#"{"capacity": 4}"#)
            #expect(try grown.decoded(as: EventBody.self).confirmedCount == 4)
            let list = try await client.get("/events/grow/registrations").decoded(as: [RegistrationBody].self)
            #expect(list.filter { $0.status == "confirmed" }.map(\.userId) == ["u0", "u1", "u2", "u3"])
            #expect(list.filter { $0.status == "waitlisted" }.map(\.position) == [1, 2])

            let shrink = try await put(#"{"capacity": 3}"#)
            #expect(shrink.status == .conflict)
            #expect(try await client.get("/events/grow").object()["capacity"] as? Int == 4)
            #expect(try await put(#"{"capacity": 4, "title": "Same seats"}"#).status == .ok)
        }
    }

    /// Real parallel requests over sockets: 200 people for 50 seats.
    @Test(arguments: Engine.available, [false, true])
    func racingRegistrationsNeverOverbook(engine: Engine, waitlist: Bool) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            try await Self.users(client, 200)
            _ = try await client.post("/events", jsonText(Self.event("race", capacity: 50, waitlist: waitlist)))
            let results = try await postInParallel(port: port, path: "/events/race/registrations", bodies: (0..<200).map { jsonText(["userId": "u\($0)"]) })
            let created = results.filter { $0.status == 201 }
            let statuses = created.compactMap { try? JSONSerialization.jsonObject(with: Data($0.body.utf8)) as? [String: Any] }
            #expect(statuses.filter { $0["status"] as? String == "confirmed" }.count == 50)
            if waitlist {
                #expect(created.count == 200)
                // Positions handed out are 1…150, each once, in registration order.
                let waitlisted = statuses.filter { $0["status"] as? String == "waitlisted" }.sorted { ($0["position"] as! Int) < ($1["position"] as! Int) }
                #expect(waitlisted.map { $0["position"] as? Int } == (1...150).map { $0 })
                let times = waitlisted.compactMap { Timestamp(rfc3339: $0["registeredAt"] as? String ?? "") }
                #expect(times.count == 150 && times == times.sorted())
            } else {
                #expect(created.count == 50)
                #expect(results.filter { $0.status == 409 }.count == 150)
            }
            let event = try await client.get("/events/race").object()
            #expect(event["confirmedCount"] as? Int == 50)
            let list = try Self.array(try await client.get("/events/race/registrations?status=confirmed"))
            #expect(list.count == 50)
        }
    }

    /// Registrations that arrive together are decided together (one transaction for those
    /// waiting): each still gets the answer it would alone, in arrival order — a repeat of the
    /// same user, an unknown user and a full event included.
    @Test(arguments: Engine.available)
    func registrationsAtOnceAreEachAnsweredAsAlone(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            try await Self.users(client, 8)
            // Rounds, so that repeats of one user surely share a batch in some of them.
            for round in 0..<5 {
                let event = "mix\(round)"
                _ = try await client.post("/events", jsonText(Self.event(event, capacity: 3, waitlist: false)))
                let users = Array(repeating: "u0", count: 8) + (1..<8).map { "u\($0)" } + ["ghost-1", "ghost-2"]
                let results = try await postInParallel(port: port, path: "/events/\(event)/registrations", bodies: users.map { jsonText(["userId": $0]) })
                var created: [String] = []
                for (user, result) in zip(users, results) {
                    let body = ((try? JSONSerialization.jsonObject(with: Data(result.body.utf8))) as? [String: Any]) ?? [:]
                    let error = body["error"] as? String
                    if user.hasPrefix("ghost") {
                        #expect(result.status == 404 && error == "User not found")
                    } else if result.status == 201 {
                        #expect(body["status"] as? String == "confirmed")
                        created.append(user)
                    }
                }
                #expect(created.count == 3 && Set(created).count == 3)
                for (user, result) in zip(users, results) where result.status != 201 && !user.hasPrefix("ghost") {
                    let error = ((try? JSONSerialization.jsonObject(with: Data(result.body.utf8))) as? [String: Any])?["error"] as? String
                    #expect(result.status == 409)
                    #expect(error == (created.contains(user) ? "User is already registered for this event" : "Event is full"), "\(user)")
                }
                #expect(try await client.get("/events/\(event)").object()["confirmedCount"] as? Int == 3)
                let listed = try Self.array(try await client.get("/events/\(event)/registrations")).compactMap { $0["userId"] as? String }
                #expect(Set(listed) == Set(created))
            }
            let missing = try await client.post("/events/nowhere/registrations", jsonText(["userId": "u1"]))
            #expect(missing.status == .notFound)
            #expect(try missing.errorMessage() == "Event not found")
        }
    }

    /// 25 confirmed people leave at once: exactly 25 are promoted, the oldest 25 of the waitlist.
    @Test(arguments: Engine.available)
    func racingCancellationsPromoteOldestFirst(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            try await Self.users(client, 100)
            _ = try await client.post("/events", jsonText(Self.event("leave", capacity: 50, waitlist: true)))
            for i in 0..<100 { _ = try await client.post("/events/leave/registrations", jsonText(["userId": "u\(i)"])) }
            try await withParallelClient { http in
                try await withThrowingTaskGroup(of: UInt.self) { group in
                    for i in 0..<25 {
                        group.addTask {
                            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/events/leave/registrations/u\(i * 2)")
                            request.method = .DELETE
                            return try await http.execute(request, timeout: .seconds(60)).status.code
                        }
                    }
                    for try await status in group { #expect(status == 200) }
                }
            }
            let list = try Self.array(try await client.get("/events/leave/registrations"))
            let confirmed = Set(list.filter { $0["status"] as? String == "confirmed" }.compactMap { $0["userId"] as? String })
            let expected = Set((0..<50).filter { $0 % 2 == 1 || $0 >= 50 }.map { "u\($0)" } + (50..<75).map { "u\($0)" })
            #expect(confirmed == expected)
            #expect(list.filter { $0["status"] as? String == "waitlisted" }.map { $0["userId"] as? String } == (75..<100).map { "u\($0)" })
            #expect(list.filter { $0["status"] as? String == "waitlisted" }.map { $0["position"] as? Int } == (1...25).map { $0 })
        }
    }

    /// Capacity raised and lowered while registrations race: the seats confirmed never pass the
    /// capacity, every refused shrink is a 409, and the counts match the rows.
    @Test(arguments: Engine.available)
    func capacityChangesRacingRegistrations(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            try await Self.users(client, 120)
            _ = try await client.post("/events", jsonText(Self.event("flux", capacity: 30, waitlist: true)))
            let capacities = [40, 20, 60, 35, 80, 10, 70, 45]
            let outcome = try await withParallelClient { http in
                try await withThrowingTaskGroup(of: (Bool, UInt).self) { group in
                    for i in 0..<120 {
                        group.addTask {
                            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/events/flux/registrations")
                            request.method = .POST
                            request.body = .bytes(ByteBuffer(string: jsonText(["userId": "u\(i)"])))
                            return (false, try await http.execute(request, timeout: .seconds(60)).status.code)
                        }
                    }
                    for capacity in capacities {
                        group.addTask {
                            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/events/flux")
                            request.method = .PUT
                            request.body = .bytes(ByteBuffer(string: jsonText(["capacity": capacity])))
                            return (true, try await http.execute(request, timeout: .seconds(60)).status.code)
                        }
                    }
                    return try await group.reduce(into: [(Bool, UInt)]()) { $0.append($1) }
                }
            }
            #expect(outcome.filter { !$0.0 }.allSatisfy { $0.1 == 201 })
            #expect(outcome.filter { $0.0 }.allSatisfy { $0.1 == 200 || $0.1 == 409 })
            let event = try await client.get("/events/flux").object()
            let capacity = try #require(event["capacity"] as? Int)
            let list = try Self.array(try await client.get("/events/flux/registrations"))
            let confirmed = list.filter { $0["status"] as? String == "confirmed" }.count
            #expect(list.count == 120)
            #expect(confirmed == event["confirmedCount"] as? Int)
            #expect(confirmed <= capacity)
            // Nobody waits while a seat is free.
            #expect(confirmed == min(capacity, 120))
        }
    }

    /// The CSV export is written a page at a time; positions carry on across pages and agree with
    /// the JSON listing, also after a promotion.
    @Test(arguments: Engine.available)
    func registrationsExportPagesAgreeWithTheListing(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        let listed = try await environment.withApp { client in
            _ = try await client.post("/events", jsonText(Self.event("paged", capacity: 3, waitlist: true)))
            for n in 0..<10 {
                _ = try await client.post("/users", jsonText(["userId": "p\(n)", "name": "P \(n)"]))
                _ = try await client.post("/events/paged/registrations", jsonText(["userId": "p\(n)"]))
            }
            _ = try await client.delete("/events/paged/registrations/p1")
            let listing = try Self.array(try await client.get("/events/paged/registrations"))
            let rows = listing.map {
                [$0["userId"] as! String, "paged", $0["status"] as! String, ($0["position"] as? Int).map(String.init) ?? "", $0["registeredAt"] as! String, "false"]
            }
            let csv = try await client.get("/events/paged/registrations.csv").text
            #expect(csv == CSV.row(["userId", "eventId", "status", "position", "registeredAt", "checkedIn"]) + rows.map(CSV.row).joined())
            #expect(try await client.get("/events/nope/registrations.csv").status == .notFound)
            return rows
        }
        #expect(listed.map { $0[3] } == ["", "", "", "1", "2", "3", "4", "5", "6"])

        // The same rows, three at a time.
        try await environment.withDatabase { database in
            let repository = RegistrationsRepository(database: database, feed: ChangeFeed.unheard())
            var paged: [[String]] = [], cursor: RegistrationsRepository.Cursor?
            repeat {
                let page = try await repository.page(event: "paged", after: cursor, limit: 3)
                paged += page.registrations.map { [$0.userId, $0.eventId, $0.status, $0.position.map(String.init) ?? "", $0.registeredAt, "\($0.checkedIn ?? true)"] }
                cursor = page.registrations.isEmpty ? nil : page.cursor
            } while cursor != nil
            #expect(paged == listed)
        }
    }

    /// The list is answered from memory while no event changes, and follows every change another
    /// instance makes: a registration, an edit, a deletion and the same id created again.
    @Test(arguments: Engine.available)
    func theListHeldInMemoryFollowsOtherInstances(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        try await environment.withApp { reader in
            try await environment.withApp { writer in
                func listed(_ query: String = "") async throws -> [[String: Any]] { try Self.array(try await reader.get("/events" + query)) }
                #expect(try await writer.post("/events", jsonText(Self.event("a", capacity: 2))).status == .created)
                #expect(try await writer.post("/events", jsonText(Self.event("b"))).status == .created)
                try await Self.users(writer, 1)
                for _ in 0..<2 { #expect(try await listed().map { $0["confirmedCount"] as? Int } == [0, 0]) }

                #expect(try await writer.post("/registrations", #"{"userId": "u0", "eventId": "a"}"#).status == .created)
                #expect(try await listed().map { $0["confirmedCount"] as? Int } == [1, 0])
                #expect(try await writer.put("/events/b", #"{"title": "Renamed"}"#).status == .ok)
                #expect(try await listed().map { $0["title"] as? String } == ["Tech Conference 2024", "Renamed"])
                #expect(try await writer.put("/events/b", #"{"status": "cancelled"}"#).status == .ok)
                #expect(try await listed("?status=cancelled").map { $0["eventId"] as? String } == ["b"])
                #expect(try await listed("?status=active").map { $0["eventId"] as? String } == ["a"])
                #expect(try await writer.delete("/events/a").status == .ok)
                #expect(try await listed().map { $0["eventId"] as? String } == ["b"])
                #expect(try await writer.post("/events", jsonText(Self.event("a", capacity: 7))).status == .created)
                #expect(try await listed().map { $0["capacity"] as? Int } == [100, 7])
                // What memory answers is what the database says.
                let fresh = try await writer.get("/events").body
                #expect(try await reader.get("/events").body == fresh)
                // And it is used: a row changed behind the server's back is not seen until its version moves.
                try await environment.withDatabase { database in
                    try await database.transaction { db in try await db.raw("UPDATE events SET title = 'Sneaky' WHERE event_id = 'b'").run() }
                }
                #expect(try await listed().map { $0["title"] as? String } == ["Renamed", "Tech Conference 2024"], "held")
                try await environment.withDatabase { database in
                    try await database.transaction { db in try await db.raw("UPDATE events SET version = version + 1 WHERE event_id = 'b'").run() }
                }
                #expect(try await listed().map { $0["title"] as? String } == ["Sneaky", "Tech Conference 2024"], "read again")
            }
        }
    }
}
