import AsyncHTTPClient
import Foundation
import HummingbirdTesting
import NIOCore
import Testing

@testable import HeadcountServer

@Suite("Rooms") struct RoomsTests {
    @Test(arguments: Engine.available)
    func registerUnregisterAndStatusKeepArrivalOrder(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            var status = try await client.get("/people/status").object()
            #expect(status["status"] as? String == "closed")
            #expect(status["count"] as? Int == 0)

            for name in ["Ada", "Grace", "Linus"] {
                let response = try await client.post("/people/register", jsonText(["name": name]))
                #expect(response.status == .ok)
                #expect(try response.object()["status"] as? String == "registered")
            }
            let unregistered = try await client.post("/people/unregister", #"{"name": "Grace"}"#)
            #expect(try unregistered.object()["status"] as? String == "unregistered")
            #expect(try unregistered.object()["occupants"] as? [String] == ["Ada", "Linus"])

            status = try await client.get("/people/status").object()
            #expect(status["status"] as? String == "open")
            #expect(status["occupants"] as? [String] == ["Ada", "Linus"])
            #expect(status["count"] as? Int == 2)
        }
    }

    @Test(arguments: Engine.available)
    func repeatedActionsChangeNothingButAreLogged(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            _ = try await client.post("/people/register", #"{"name": "  Ada  "}"#)
            let again = try await client.post("/people/register", #"{"name": "Ada"}"#)
            #expect(try again.object()["occupants"] as? [String] == ["Ada"])
            let absent = try await client.post("/people/unregister", #"{"name": "Nobody"}"#)
            #expect(absent.status == .ok)
            #expect(try absent.object()["occupants"] as? [String] == ["Ada"])

            let day = Timestamp.now().day
            let csv = try await client.get("/people/logs/\(day).csv")
            #expect(csv.status == .ok)
            let lines = csv.text.components(separatedBy: "\r\n").filter { !$0.isEmpty }
            #expect(lines.first == "Date,Time,Name,Action")
            #expect(lines.dropFirst().map { $0.split(separator: ",").dropFirst(2).joined(separator: ",") } == ["Ada,register", "Ada,register", "Nobody,unregister"])
        }
    }

    @Test(arguments: Engine.available)
    func badNamesAre400AndChangeNothing(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            _ = try await client.post("/people/register", #"{"name": "Ada"}"#)
            for body in [#"{}"#, #"{"name": ""}"#, #"{"name": "   "}"#, #"{"name": 5}"#, #"{"name": null}"#, #"{"name": ["Ada"]}"#, #"{"nom": "Ada"}"#, "[]", "\"Ada\""] {
                for route in ["register", "unregister"] {
                    let response = try await client.post("/people/\(route)", body)
                    #expect(response.status == .badRequest, "\(route) \(body)")
                    #expect(try response.errorMessage() == "name is required", "\(route) \(body)")
                }
            }
            let malformed = try await client.post("/people/register", #"{"name": "Bob""#)
            #expect(malformed.status == .badRequest)
            _ = try malformed.errorMessage()
            let long = try await client.post("/people/register", jsonText(["name": String(repeating: "x", count: 201)]))
            #expect(long.status == .badRequest)
            #expect(try long.errorMessage() == "name must be at most 200 characters")
            for name in ["nul\u{0}byte", "tab\there", "bell\u{7}"] {
                let control = try await client.post("/rooms/lab/people/register", jsonText(["name": name]))
                #expect(control.status == .badRequest)
                #expect(try control.errorMessage() == "name must not contain control characters")
            }
            let fits = try await client.post("/people/register", jsonText(["name": String(repeating: "y", count: 200)]))
            #expect(fits.status == .ok)
            _ = try await client.post("/people/unregister", jsonText(["name": String(repeating: "y", count: 200)]))

            #expect(try await client.get("/people/status").object()["occupants"] as? [String] == ["Ada"])
            let csv = try await client.get("/people/logs/\(Timestamp.now().day).csv").text
            #expect(csv.components(separatedBy: "\r\n").filter { !$0.isEmpty }.count == 4, "header + Ada + the 200-character name twice")
        }
    }

    @Test(arguments: Engine.available)
    func statusAtAPastInstant(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let before = Timestamp.now()
            try await Task.sleep(for: .milliseconds(5))
            _ = try await client.post("/people/register", #"{"name": "Ada"}"#)
            _ = try await client.post("/people/register", #"{"name": "Grace"}"#)
            try await Task.sleep(for: .milliseconds(5))
            let bothInside = Timestamp.now()
            try await Task.sleep(for: .milliseconds(5))
            _ = try await client.post("/people/unregister", #"{"name": "Ada"}"#)
            _ = try await client.post("/people/register", #"{"name": "Ada"}"#)

            let early = try await client.get("/people/status?at=\(before.rfc3339)").object()
            #expect(early["occupants"] as? [String] == [])
            #expect(early["status"] as? String == "closed")
            let middle = try await client.get("/people/status?at=\(bothInside.rfc3339)").object()
            #expect(middle["occupants"] as? [String] == ["Ada", "Grace"])
            #expect(middle["at"] as? String == bothInside.rfc3339)
            // The same instant written with an offset.
            let shifted = Timestamp(microseconds: bothInside.microseconds + 2 * 3_600_000_000).rfc3339
            let offset = shifted.replacingOccurrences(of: "Z", with: "+02:00").replacingOccurrences(of: "+", with: "%2B")
            #expect(try await client.get("/people/status?at=\(offset)").object()["occupants"] as? [String] == ["Ada", "Grace"])
            let now = try await client.get("/people/status?at=\(Timestamp.now().rfc3339)").object()
            #expect(now["occupants"] as? [String] == ["Grace", "Ada"], "Ada left and came back: she is now the latest arrival")

            for bad in ["yesterday", "2024-13-01T00:00:00Z", "2024-01-01", ""] {
                let response = try await client.get("/people/status?at=\(bad)")
                #expect(response.status == .badRequest, "\(bad)")
            }
        }
    }

    @Test(arguments: Engine.available, Store.available)
    func dailyLogsAreListedServedAndWrittenToTheObjectStore(engine: Engine, store: Store) async throws {
        let environment = try await TestEnvironment.make(engine, store: store)
        try await environment.withApp { client in
            _ = try await client.post("/people/register", jsonText(["name": "Doe, \"Jane\""]))
            _ = try await client.post("/people/unregister", jsonText(["name": "Doe, \"Jane\""]))
            let day = Timestamp.now().day
            let days = try await client.get("/people/logs").object()
            #expect(days["days"] as? [String] == [day])
            let csv = try await client.get("/people/logs/\(day).csv")
            #expect(csv.headers[.contentType]?.hasPrefix("text/csv") == true)
            let rows = csv.text.components(separatedBy: "\r\n")
            #expect(rows.count == 4 && rows[3] == "", "three CRLF-terminated lines")
            #expect(rows[1].hasPrefix("\(day),") && rows[1].hasSuffix(",\"Doe, \"\"Jane\"\"\",register"))
            #expect(rows[1].split(separator: ",")[1].count == "HH:MM:SS.ffffff".count)

            #expect(try await client.get("/people/logs/2001-01-01.csv").status == .notFound)
            #expect(try await client.get("/people/logs/2001-02-30.csv").status == .badRequest)
            #expect(try await client.get("/people/logs/today.csv").status == .badRequest)

            // Written to the object store within about a second.
            var stored: String?
            for _ in 0..<40 where stored != csv.text {
                try await Task.sleep(for: .milliseconds(100))
                stored = try await environment.storedText("\(day)-logs.csv")
            }
            #expect(stored == csv.text)
        }
    }

    @Test(arguments: Engine.available, Store.available)
    func namedRoomsAreSeparate(engine: Engine, store: Store) async throws {
        let environment = try await TestEnvironment.make(engine, store: store)
        try await environment.withApp { client in
            _ = try await client.post("/rooms/lab-2/people/register", #"{"name": "Ada"}"#)
            _ = try await client.post("/people/register", #"{"name": "Grace"}"#)
            #expect(try await client.get("/rooms/lab-2/people/status").object()["occupants"] as? [String] == ["Ada"])
            #expect(try await client.get("/people/status").object()["occupants"] as? [String] == ["Grace"])
            #expect(try await client.get("/rooms/main/people/status").object()["occupants"] as? [String] == ["Grace"])
            #expect(try await client.get("/rooms/empty/people/status").object()["count"] as? Int == 0)
            _ = try await client.post("/rooms/lab-2/people/register", #"{"name": "Bo"}"#)
            _ = try await client.post("/rooms/left/people/register", #"{"name": "Cy"}"#)
            _ = try await client.post("/rooms/left/people/unregister", #"{"name": "Cy"}"#)
            let rooms = try #require(try await client.get("/api/rooms").object()["rooms"] as? [[String: Any]])
            #expect(rooms.map { $0["room"] as? String } == ["lab-2", "left", "main"])
            #expect(rooms.map { $0["occupants"] as? [String] } == [["Ada", "Bo"], [], ["Grace"]])
            #expect(rooms.map { $0["count"] as? Int } == [2, 0, 1])
            _ = try await client.post("/rooms/lab-2/people/unregister", #"{"name": "Bo"}"#)
            #expect(try await client.get("/rooms/lab-2/people/logs").object()["days"] as? [String] == [Timestamp.now().day])
            let bad = try await client.post("/rooms/no%20spaces/people/register", #"{"name": "Ada"}"#)
            #expect(bad.status == .badRequest)
            #expect(try await client.get("/rooms/\(String(repeating: "r", count: 65))/people/status").status == .badRequest)
        }
        #expect(try await environment.storedText("rooms/lab-2/\(Timestamp.now().day)-logs.csv")?.contains(",Ada,register\r\n") == true)
    }

    /// 200 people arrive at once, over real sockets: every one is inside, and every one is a row
    /// of the day's CSV in the object store (the original lost 43 of 50 rows under 10 threads).
    @Test(arguments: Engine.available, Store.available)
    func parallelRegistrationsAreAllKept(engine: Engine, store: Store) async throws {
        let environment = try await TestEnvironment.make(engine, store: store)
        let names = (0..<200).map { "person-\($0)" }
        try await environment.withApp(.live) { client in
            let port = try #require(client.port)
            try await withParallelClient { http in
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for name in names {
                        group.addTask {
                            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/people/register")
                            request.method = .POST
                            request.headers.add(name: "Content-Type", value: "application/json")
                            request.body = .bytes(ByteBuffer(string: jsonText(["name": name])))
                            return Int(try await http.execute(request, timeout: .seconds(60)).status.code)
                        }
                    }
                    for try await status in group { #expect(status == 200) }
                }
            }
            let status = try await client.get("/people/status").object()
            #expect(status["count"] as? Int == 200)
            #expect(Set(status["occupants"] as? [String] ?? []) == Set(names))
        }
        // The application has shut down: its last flush has written the day whole.
        let csv = try #require(try await environment.storedText("\(Timestamp.now().day)-logs.csv"))
        let logged = csv.components(separatedBy: "\r\n").dropFirst().filter { !$0.isEmpty }.map { $0.split(separator: ",")[2] }
        #expect(logged.count == 200)
        #expect(Set(logged.map(String.init)) == Set(names))
    }

    /// Actions an instance committed but had not yet written to the day's object when it died
    /// (kill -9 lost 9 of 383 rows this way): the next start writes them.
    @Test(arguments: Engine.available, Store.available)
    func logsCatchUpAfterACrash(engine: Engine, store: Store) async throws {
        let environment = try await TestEnvironment.make(engine, store: store)
        let day = Timestamp.now().day
        try await environment.withDatabase { database in
            let rooms = RoomsRepository(database: database, feed: ChangeFeed.unheard())
            for n in 0..<20 { _ = try await rooms.record(.register, name: "person-\(n)", room: n < 15 ? "main" : "lab") }
        }
        #expect(try await environment.storedText("\(day)-logs.csv") == nil)
        try await environment.withApp { client in
            var main: String?, lab: String?
            for _ in 0..<150 where main == nil || lab == nil {
                try await Task.sleep(for: .milliseconds(100))
                main = try await environment.storedText("\(day)-logs.csv")
                lab = try await environment.storedText("rooms/lab/\(day)-logs.csv")
            }
            #expect(main == (try await client.get("/people/logs/\(day).csv").text))
            #expect(main?.components(separatedBy: "\r\n").count == 17, "header, 15 rows, end")
            #expect(lab == (try await client.get("/rooms/lab/people/logs/\(day).csv").text))
        }
        let pending = try await environment.withDatabase { try await RoomsRepository(database: $0, feed: ChangeFeed.unheard()).pendingDays(owner: "anyone") }
        #expect(pending.isEmpty)
    }

    /// Two instances never write one day's object at once: one claims the day, the other waits
    /// its turn; a day written before a later action stays pending; a claim left by a dead
    /// instance lapses; and a writer whose claim lapsed meanwhile leaves the day to be written
    /// once more, since its object may have landed over a newer one.
    @Test(arguments: Engine.available)
    func instancesTakeTurnsWritingADay(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withDatabase { database in
            let rooms = RoomsRepository(database: database, feed: ChangeFeed.unheard())
            let day = try await rooms.record(.register, name: "Ada", room: "main").logged.at.day
            let later = Timestamp.now().microseconds + 60_000_000
            let a = try #require(try await rooms.claim(room: "main", day: day, owner: "a", until: later))
            #expect(try await rooms.claim(room: "main", day: day, owner: "b", until: later) == nil, "a holds it")
            #expect(try await rooms.pendingDays(owner: "b").isEmpty, "being written")
            #expect(try await rooms.pendingDays(owner: "a").map(\.day) == [day], "a, restarted, takes its own back")
            #expect(try await rooms.logWritten(room: "main", day: day, owner: "a", generation: a, seq: 1))
            #expect(try await rooms.claim(room: "main", day: day, owner: "b", until: later) == nil, "nothing pending")

            _ = try await rooms.record(.register, name: "Grace", room: "main")
            let a2 = try #require(try await rooms.claim(room: "main", day: day, owner: "a", until: later))
            _ = try await rooms.record(.unregister, name: "Ada", room: "main")
            #expect(try await !rooms.logWritten(room: "main", day: day, owner: "a", generation: a2, seq: 2), "seq 3 came meanwhile")
            #expect(try await rooms.pendingDays(owner: "b").map(\.day) == [day], "handed back")

            // b's claim lapses while b still writes; a takes the day, writes it whole and is done.
            let b = try #require(try await rooms.claim(room: "main", day: day, owner: "b", until: Timestamp.now().microseconds - 1))
            let a3 = try #require(try await rooms.claim(room: "main", day: day, owner: "a", until: later), "b's claim has lapsed")
            #expect(try await rooms.logWritten(room: "main", day: day, owner: "a", generation: a3, seq: 3))
            // b's late object may have landed over a's: the day is pending again, for anyone.
            #expect(try await !rooms.logWritten(room: "main", day: day, owner: "b", generation: b, seq: 2))
            #expect(try await rooms.pendingDays(owner: "c").map(\.day) == [day])
            let c = try #require(try await rooms.claim(room: "main", day: day, owner: "c", until: later))
            #expect(try await rooms.logWritten(room: "main", day: day, owner: "c", generation: c, seq: 3))
            #expect(try await rooms.pendingDays(owner: "c").isEmpty)
        }
    }

    @Test(arguments: Engine.available)
    func dataSurvivesARestart(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        try await environment.withApp { client in
            _ = try await client.post("/people/register", #"{"name": "Ada"}"#)
        }
        try await environment.withApp { client in
            #expect(try await client.get("/people/status").object()["occupants"] as? [String] == ["Ada"])
            _ = try await client.post("/people/register", #"{"name": "Grace"}"#)
            #expect(try await client.get("/people/status").object()["occupants"] as? [String] == ["Ada", "Grace"])
        }
    }

    /// Two instances on one database: 100 people arrive at once, half through each, then 50 of
    /// them leave at once the same way. Each answer lists the room after its own action, and the
    /// room's actions take sequence numbers 1...150 (on PostgreSQL a room's actions share
    /// transactions).
    @Test(arguments: Engine.available)
    func actionsRacingThroughTwoInstancesAreAllKept(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        try await environment.withApp(.live) { a in
            try await environment.withApp(.live) { b in
                let ports = [try #require(a.port), try #require(b.port)]
                let names = (0..<100).map { "person-\($0)" }
                for (path, people) in [("/people/register", names), ("/people/unregister", Array(names.prefix(50)))] {
                    let answers = try await withThrowingTaskGroup(of: (String, UInt, String).self) { group in
                        for (i, name) in people.enumerated() {
                            group.addTask {
                                let response = try await send(.POST, port: ports[i % 2], path, body: ByteBuffer(string: jsonText(["name": name])))
                                return (name, response.status, response.body)
                            }
                        }
                        return try await group.reduce(into: [(String, UInt, String)]()) { $0.append($1) }
                    }
                    #expect(answers.allSatisfy { $0.1 == 200 })
                    for (name, _, body) in answers {
                        let occupants = ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any])?["occupants"] as? [String] ?? []
                        #expect(occupants.contains(name) == (path == "/people/register"))
                    }
                }
                let status = try await b.get("/people/status").object()
                #expect(status["count"] as? Int == 50)
                #expect(Set(status["occupants"] as? [String] ?? []) == Set(names.suffix(50)))
                // Every action is a row of its day's log (a run across midnight has two days).
                var rows = 0
                for day in try await a.get("/people/logs").object()["days"] as? [String] ?? [] {
                    rows += try await a.get("/people/logs/\(day).csv").text.split(whereSeparator: \.isNewline).count - 1
                }
                #expect(rows == 150)
            }
        }
    }

    /// An instance keeps who is inside a room from its last action there; actions through
    /// another instance in between are seen, not missed: up to 128 replayed from the log, more by
    /// reading the room again.
    @Test(arguments: Engine.available)
    func aRoomHeldInMemoryFollowsOtherInstances(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        try await environment.withApp { a in
            try await environment.withApp { b in
                let steps: [(any TestClientProtocol, String, String, [String])] = [
                    (a, "register", "Ada", ["Ada"]), (b, "register", "Bob", ["Ada", "Bob"]), (a, "unregister", "Ada", ["Bob"]),
                    (a, "register", "Cy", ["Bob", "Cy"]), (b, "unregister", "Cy", ["Bob"]), (b, "register", "Ada", ["Bob", "Ada"]),
                    (a, "register", "Dee", ["Bob", "Ada", "Dee"]),
                ]
                for (client, action, name, expected) in steps {
                    let answer = try await client.post("/rooms/shared/people/\(action)", jsonText(["name": name])).object()
                    #expect(answer["occupants"] as? [String] == expected, "\(action) \(name)")
                }
                let many = (0..<70).map { "many-\($0)" }
                for name in many { _ = try await b.post("/rooms/shared/people/register", jsonText(["name": name])) }
                _ = try await b.post("/rooms/shared/people/unregister", jsonText(["name": "Ada"]))
                let answer = try await a.post("/rooms/shared/people/register", jsonText(["name": "Eve"])).object()
                #expect(answer["occupants"] as? [String] == ["Bob", "Dee"] + many + ["Eve"])
                let more = (0..<130).map { "more-\($0)" }
                for name in more { _ = try await b.post("/rooms/shared/people/register", jsonText(["name": name])) }
                let last = try await a.post("/rooms/shared/people/register", jsonText(["name": "Fay"])).object()
                #expect(last["occupants"] as? [String] == ["Bob", "Dee"] + many + ["Eve"] + more + ["Fay"])
            }
        }
    }

    /// Actions that arrive together are recorded together (one transaction for those waiting):
    /// each is still answered with the room right after it, in the order the day's log records,
    /// whatever the mix (arrivals, departures, people already in, people never in).
    @Test(arguments: Engine.available)
    func eachOfManyActionsAtOnceIsAnsweredWithTheRoomAfterIt(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            let first = (0..<20).map { "in-\($0)" }
            for name in first { _ = try await client.post("/rooms/mix/people/register", jsonText(["name": name])) }
            var actions: [(String, String)] =
                first.prefix(10).map { ("unregister", $0) } + (0..<30).map { ("register", "new-\($0)") }
                + first.suffix(5).map { ("register", $0) } + (0..<5).map { ("unregister", "never-\($0)") }
            // Some come and go in the same wave (in one batch, or not, in either order).
            let flits: [(String, String)] = (0..<10).flatMap { [("register", "flit-\($0)"), ("unregister", "flit-\($0)")] }
            actions += flits + [("unregister", "in-12"), ("register", "in-12")]
            let answers = try await withParallelClient { http in
                try await withThrowingTaskGroup(of: (String, UInt, [String]).self) { group in
                    for (action, name) in actions.shuffled() {
                        group.addTask {
                            let response = try await send(
                                .POST, port: port, "/rooms/mix/people/\(action)", body: ByteBuffer(string: jsonText(["name": name])), using: http)
                            let object = (try? JSONSerialization.jsonObject(with: Data(response.body.utf8))) as? [String: Any]
                            return ("\(action) \(name)", response.status, object?["occupants"] as? [String] ?? [])
                        }
                    }
                    return try await group.reduce(into: [String: (UInt, [String])]()) { $0[$1.0] = ($1.1, $1.2) }
                }
            }
            #expect(answers.count == actions.count && answers.values.allSatisfy { $0.0 == 200 })
            // Replay the log from the start: every answer is the room right after its own row.
            var inside: [String] = []
            var rows = 0
            for day in try await client.get("/rooms/mix/people/logs").object()["days"] as? [String] ?? [] {
                for line in try await client.get("/rooms/mix/people/logs/\(day).csv").text.split(whereSeparator: \.isNewline).dropFirst() {
                    let fields = line.split(separator: ",").map(String.init)
                    let (name, action) = (fields[2], fields[3])
                    if action == "register", !inside.contains(name) { inside.append(name) }
                    if action == "unregister" { inside.removeAll { $0 == name } }
                    rows += 1
                    if rows > first.count { #expect(answers["\(action) \(name)"]?.1 == inside, "\(action) \(name)") }
                }
            }
            #expect(rows == first.count + actions.count)
            #expect(try await client.get("/rooms/mix/people/status").object()["occupants"] as? [String] == inside)
            #expect(inside.filter { !$0.hasPrefix("flit-") && $0 != "in-12" }.count == 9 + 30)
        }
    }
}
