import Foundation
import HTTPTypes
import HummingbirdTesting
import Testing

@testable import HeadcountServer

/// Who is where, across the families: presence, event check-in and roll calls.
@Suite("Presence") struct PresenceTests {
    static let admin = WorkersTests.admin

    /// hq > b1 > (f1, f2), and an annex beside b1; returns nothing, asserts each step.
    static func tree(_ client: some TestClientProtocol) async throws {
        for (id, parent) in [("hq", nil), ("b1", "hq"), ("f1", "b1"), ("f2", "b1"), ("annex", "hq")] as [(String, String?)] {
            let created = try await PlacesTests.create(client, ["id": id, "name": id.uppercased(), "parent_id": parent as Any? ?? NSNull()])
            #expect(created.status == .created)
        }
    }

    static func link(_ client: some TestClientProtocol, _ path: String, to place: String) async throws {
        let linked = try await client.put(path, jsonText(["place_id": place]), headers: admin)
        #expect(linked.status == .ok, "\(path)")
    }

    static func names(_ presence: [String: Any], _ key: String = "named") -> [String] {
        (presence[key] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
    }

    static func ms(_ date: Date) -> Int64 { Int64(date.timeIntervalSince1970 * 1000) }

    /// Every family names people in a place: room registrants, workers clocked in at its devices
    /// (the later record wins across places; deleted records drop out; a late sync counts), event
    /// attendees checked in and not out, reservation holders. Forgotten presences close by policy.
    @Test(arguments: Engine.available)
    func everyFamilyNamesPeopleInAPlace(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            try await Self.tree(client)
            let now = Date()
            // Counted: six in through the entrance, posted out of order.
            #expect(try await client.put("/api/sensors/entrance/doorway", #"{"from":null,"to":"b1"}"#, headers: Self.admin).status == .ok)
            for (ts, inCount) in [(now.addingTimeInterval(-600), 4), (now.addingTimeInterval(-7200), 2)] {
                let at = Timestamp(microseconds: Int64(ts.timeIntervalSince1970 * 1_000_000)).rfc3339
                #expect(try await client.post("/api/webhook", jsonText(["sensor": "entrance", "ts": at, "in_count": inCount, "out": 0])).status == .ok)
            }
            // A room on f1: Alice stays, Bob leaves.
            try await Self.link(client, "/api/rooms/lab/place", to: "f1")
            for (action, name) in [("register", "Alice"), ("register", "Bob"), ("unregister", "Bob")] {
                #expect(try await client.post("/rooms/lab/people/\(action)", jsonText(["name": name])).status.code < 300)
            }
            // Attendance: the gate is in b1, another device in the annex.
            let gate = try await AttendanceTests.device(client, "gate")
            let annex = try await AttendanceTests.device(client, "annex-door")
            try await Self.link(client, "/api/admin/devices/gate/place", to: "b1")
            try await Self.link(client, "/api/admin/devices/annex-door/place", to: "annex")
            let hour: TimeInterval = 3600
            let synced = try await AttendanceTests.sync(
                client, gate,
                [
                    AttendanceTests.record(1, employee: "w1", at: Self.ms(now.addingTimeInterval(-hour)), device: "gate"),
                    AttendanceTests.record(2, employee: "w2", at: Self.ms(now.addingTimeInterval(-2 * hour)), device: "gate"),
                    AttendanceTests.record(3, employee: "w3", at: Self.ms(now.addingTimeInterval(-0.5 * hour)), device: "gate"),
                    AttendanceTests.record(4, employee: "w5", at: Self.ms(now.addingTimeInterval(-20 * hour)), device: "gate"),
                ]
            ).object()
            _ = try await AttendanceTests.sync(client, annex, [AttendanceTests.record(1, employee: "w2", at: Self.ms(now.addingTimeInterval(-hour)), device: "annex-door")])
            // A late sync of an older entry still counts; w3's record is deleted.
            _ = try await AttendanceTests.sync(client, gate, [AttendanceTests.record(5, employee: "w4", at: Self.ms(now.addingTimeInterval(-3 * hour)), device: "gate")])
            let w3 = try #require((synced["synced_records"] as? [[String: Any]])?[2]["server_id"] as? Int)
            let deleted = try await client.delete("/api/admin/attendance/\(w3)", #"{"reason": "wrong person"}"#, headers: Self.admin.merging([.tenantID: "ACME"]))
            #expect(deleted.status.code < 300)
            // An event on f2 with two attendees: one stays, one checks out.
            #expect(try await client.post("/events", jsonText(EventsTests.event("talk"))).status == .created)
            try await Self.link(client, "/events/talk/place", to: "f2")
            for user in ["u1", "u2"] {
                _ = try await client.post("/users", jsonText(["userId": user, "name": "Guest \(user)"]))
                _ = try await client.post("/events/talk/registrations", jsonText(["userId": user]))
            }
            for (user, type, nonce) in [("u1", "entry", "n1"), ("u2", "entry", "n2"), ("u2", "exit", "n3")] {
                #expect(try await client.post("/events/talk/check-ins", jsonText(["userId": user, "type": type, "nonce": nonce])).status == .created)
            }
            // A desk booked by Dana since two hours ago, one without a holder.
            try await Self.link(client, "/api/reservations/devices/desk-7/place", to: "f2")
            func iso(_ date: Date) -> String { Timestamp(microseconds: Int64(date.timeIntervalSince1970 * 1_000_000)).rfc3339 }
            let booking = ["device_id": "desk-7", "start_time": iso(now.addingTimeInterval(-2 * hour)), "end_time": iso(now.addingTimeInterval(hour)), "credential": "c"]
            #expect(try await client.post("/api/reservations", jsonText(booking.merging(["holder": "Dana"]) { $1 })).status == .created)

            #expect(try await client.get("/api/places/b1/presence").status == .unauthorized, "names take the admin key")
            let presence = try await client.get("/api/places/b1/presence", headers: Self.admin).object()
            #expect(Self.names(presence) == ["Alice", "Dana", "Guest u1", "w1", "w4"])
            #expect(presence["counted"] as? Int == 6)
            #expect(presence["unaccounted"] as? Int == 1)
            let named = try #require(presence["named"] as? [[String: Any]])
            #expect(named.map { $0["source"] as? String } == ["room", "reservation", "event", "attendance", "attendance"])
            #expect(named[0]["place_id"] as? String == "f1" && named[0]["source_id"] as? String == "lab/Alice")
            #expect(named[3]["source_id"] as? String == "ACME/w1")
            // w5 came in 20 hours ago and never left: closed by policy at 16 hours.
            let stale = try #require((presence["closed_by_policy"] as? [[String: Any]])?.first)
            #expect(stale["name"] as? String == "w5")
            let closedAt = try #require(Timestamp(rfc3339: stale["closed_at"] as? String ?? ""))
            #expect(abs(Double(closedAt.microseconds) / 1e6 - now.addingTimeInterval(-4 * hour).timeIntervalSince1970) < 2)
            // The attendance export flags it too.
            let export = try await client.get("/api/admin/attendance.csv?tenant_id=ACME", headers: Self.admin).text.components(separatedBy: "\r\n")
            #expect(export.first?.hasSuffix(",closed_by_policy_at") == true)
            #expect(export.first { $0.contains(",w5,") }?.hasSuffix("," + (stale["closed_at"] as? String ?? "?")) == true)
            #expect(export.first { $0.contains(",w1,") }?.hasSuffix(",") == true, "w1 is inside, within the limit")
            let listed = try #require(
                try await client.get("/api/admin/attendance?tenant_id=ACME", headers: Self.admin).object()["records"] as? [[String: Any]])
            #expect(listed.first { $0["employee_id"] as? String == "w5" }?["closed_by_policy_at"] as? String == stale["closed_at"] as? String)
            #expect(listed.first { $0["employee_id"] as? String == "w1" }?["closed_by_policy_at"] == nil)
            // The later record wins: w2 is in the annex now.
            #expect(Self.names(try await client.get("/api/places/annex/presence", headers: Self.admin).object()) == ["w2"])
            #expect(Self.names(try await client.get("/api/places/f2/presence", headers: Self.admin).object()) == ["Dana", "Guest u1"])

            // Ninety minutes ago: w2 was still in b1, w1 not yet, the room and the event empty.
            let earlier = try await client.get("/api/places/b1/presence?at=\(iso(now.addingTimeInterval(-1.5 * hour)))", headers: Self.admin).object()
            #expect(Self.names(earlier) == ["Dana", "w2", "w4"])
            #expect(earlier["counted"] as? Int == 2)
            #expect(earlier["unaccounted"] as? Int == -1, "named people the sensor did not count")

            // A longer limit (25 hours) keeps w5 inside.
            #expect(try await client.put("/api/places/b1", #"{"stale_after_minutes":1500}"#, headers: Self.admin).status == .ok)
            #expect(Self.names(try await client.get("/api/places/b1/presence", headers: Self.admin).object()).contains("w5"))
            #expect(try await client.put("/api/places/b1", #"{"stale_after_minutes":0}"#, headers: Self.admin).status == .unprocessableContent)

            // An admin corrects the forgotten exit: w5 was there all along, then in fact left at 18 hours ago.
            #expect(try await client.put("/api/places/b1", #"{"stale_after_minutes":960}"#, headers: Self.admin).status == .ok)
            let since = try #require(stale["since"] as? String)
            func correct(_ left: Any, source: String = "attendance", sourceID: String = "ACME/w5", since: String = since) async throws -> TestResponse {
                try await client.put(
                    "/api/presence-corrections", jsonText(["source": source, "source_id": sourceID, "since": since, "left_at": left, "by": "hr"]), headers: Self.admin)
            }
            #expect(try await correct(NSNull()).status == .ok)
            var corrected = try await client.get("/api/places/b1/presence", headers: Self.admin).object()
            #expect(Self.names(corrected).contains("w5") && Self.names(corrected, "closed_by_policy").isEmpty)
            let left = iso(now.addingTimeInterval(-18 * hour))
            #expect(try await correct(left).object()["left_at"] as? String == left)
            corrected = try await client.get("/api/places/b1/presence", headers: Self.admin).object()
            #expect(!Self.names(corrected).contains("w5") && Self.names(corrected, "closed_by_policy").isEmpty)
            let atNineteen = try await client.get("/api/places/b1/presence?at=\(iso(now.addingTimeInterval(-19 * hour)))", headers: Self.admin).object()
            #expect(Self.names(atNineteen) == ["w5"], "inside until they left")
            let corrections = try await client.get("/api/presence-corrections", headers: Self.admin).object()["corrections"] as? [[String: Any]]
            #expect(corrections?.count == 1 && corrections?.first?["corrected_by"] as? String == "hr")
            #expect(try await correct(NSNull(), source: "event").status == .unprocessableContent)
            #expect(try await correct(NSNull(), sourceID: "ACME/w9").status == .notFound)
            #expect(try await correct(iso(now.addingTimeInterval(-30 * hour))).status == .unprocessableContent, "left before arriving")
            #expect(try await client.put("/api/presence-corrections", #"{"source":"room"}"#).status == .unauthorized)

            // Counts alone need no key; unknown places and bad instants are refused.
            #expect(try await client.get("/api/places/b1/occupancy").object()["counted"] as? Int == 6)
            #expect(try await client.get("/api/places/nowhere/presence", headers: Self.admin).status == .notFound)
            #expect(try await client.get("/api/places/b1/presence?at=yesterday", headers: Self.admin).status == .badRequest)
            // Links to things that do not exist.
            #expect(try await client.put("/api/admin/devices/ghost/place", #"{"place_id":"b1"}"#, headers: Self.admin).status == .notFound)
            #expect(try await client.put("/events/ghost/place", #"{"place_id":"b1"}"#, headers: Self.admin).status == .notFound)
            #expect(try await client.put("/events/talk/place", #"{"place_id":"b1"}"#).status == .unauthorized)
            // A linked place goes only with its links.
            let refused = try await client.delete("/api/places/f2", headers: Self.admin)
            #expect(refused.status == .conflict)
            #expect(try refused.errorMessage().contains("2 linked"))
            #expect(try await client.delete("/events/talk/place", headers: Self.admin).status == .noContent)
            #expect(try await client.delete("/events/talk/place", headers: Self.admin).status == .notFound)
            #expect(Self.names(try await client.get("/api/places/f2/presence", headers: Self.admin).object()) == ["Dana"])
        }
    }

    /// pretix's check-in rules: registered and confirmed people only, not twice in a row, not
    /// into a closed event; a nonce makes a retry return the first answer.
    @Test(arguments: Engine.available)
    func checkInRules(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            #expect(try await client.post("/events", jsonText(EventsTests.event("gig", capacity: 1, waitlist: true))).status == .created)
            for user in ["ann", "ben", "cy"] { _ = try await client.post("/users", jsonText(["userId": user, "name": user])) }
            for user in ["ann", "ben"] { _ = try await client.post("/events/gig/registrations", jsonText(["userId": user])) }
            func scan(_ user: String, _ nonce: String, _ type: String = "entry", at: String? = nil) async throws -> TestResponse {
                var body: [String: Any] = ["userId": user, "nonce": nonce, "type": type]
                if let at { body["datetime"] = at }
                return try await client.post("/events/gig/check-ins", jsonText(body))
            }
            func reason(_ response: TestResponse) throws -> String? { try response.object()["reason"] as? String }

            let first = try await scan("ann", "scan-1", at: "2024-12-15T18:00:00+01:00")
            #expect(first.status == .created)
            let replay = try await scan("ann", "scan-1", at: "2024-12-15T18:00:00+01:00")
            #expect(replay.status == .created)
            #expect(String(buffer: replay.body) == String(buffer: first.body), "a replay returns the first answer")
            #expect(try first.object()["datetime"] as? String == "2024-12-15T17:00:00Z")

            let twice = try await scan("ann", "scan-2")
            #expect(twice.status == .conflict)
            #expect(try reason(twice) == "already_checked_in")
            #expect(try reason(try await scan("ben", "scan-3")) == "waitlisted")
            #expect(try reason(try await scan("cy", "scan-4")) == "not_registered")
            #expect(try reason(try await scan("ben", "scan-1")) == "nonce_reused")
            let out = try await scan("ben", "scan-5", "exit")
            #expect(out.status == .unprocessableContent, "ben is waitlisted, so not registered to scan at all")
            #expect(try reason(try await scan("nobody", "scan-6")) == "not_registered")
            #expect(try await scan("ann", "scan-7", at: "2999-01-01T00:00:00Z").status == .unprocessableContent, "a scan in the future")
            #expect(try await client.post("/events/gig/check-ins", #"{"userId":"ann","nonce":"x","type":"sideways"}"#).status == .unprocessableContent)
            #expect(try await client.post("/events/nope/check-ins", #"{"userId":"ann","nonce":"x"}"#).status == .notFound)

            #expect(try await client.get("/events/gig").object()["checkedInCount"] as? Int == 1)
            let csv = String(buffer: try await client.get("/events/gig/registrations.csv").body)
            #expect(csv.contains("ann,gig,confirmed,,") && csv.hasPrefix("userId,eventId,status,position,registeredAt,checkedIn\r\n"))
            #expect(csv.split(separator: "\r\n").first { $0.hasPrefix("ann,") }?.hasSuffix(",true") == true)

            #expect(try await scan("ann", "scan-8", "exit").status == .created)
            #expect(try reason(try await scan("ann", "scan-9", "exit")) == "not_checked_in")
            #expect(try await client.get("/events/gig").object()["checkedInCount"] as? Int == 0)
            let scans = try #require(try JSONSerialization.jsonObject(with: Data(buffer: try await client.get("/events/gig/check-ins").body)) as? [[String: Any]])
            #expect(scans.map { $0["nonce"] as? String } == ["scan-1", "scan-8"])
            #expect(try await client.get("/events/nope/check-ins").status == .notFound)

            #expect(try await client.put("/events/gig", #"{"status":"completed"}"#).status == .ok)
            #expect(try reason(try await scan("ann", "scan-10")) == "event_not_open")
            #expect(try await scan("ann", "scan-8", "exit").status == .created, "a replay still answers after the event closed")
        }
    }

    /// Many phones replaying one scan at once store it once; racing scans of one person let
    /// exactly one in.
    @Test(arguments: Engine.available)
    func parallelScans(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            #expect(try await client.post("/events", jsonText(EventsTests.event("fair"))).status == .created)
            _ = try await client.post("/users", jsonText(["userId": "zoe", "name": "Zoe"]))
            _ = try await client.post("/users", jsonText(["userId": "yan", "name": "Yan"]))
            for user in ["zoe", "yan"] { _ = try await client.post("/events/fair/registrations", jsonText(["userId": user])) }

            let replays = try await postInParallel(port: port, path: "/events/fair/check-ins", bodies: Array(repeating: #"{"userId":"zoe","nonce":"same"}"#, count: 16))
            #expect(replays.allSatisfy { $0.status == 201 })
            #expect(Set(replays.map(\.body)).count == 1, "one answer for all")
            let racing = try await postInParallel(port: port, path: "/events/fair/check-ins", bodies: (0..<16).map { #"{"userId":"yan","nonce":"n\#($0)"}"# })
            #expect(racing.map(\.status).sorted() == [201] + Array(repeating: 409, count: 15))
            #expect(try await client.get("/events/fair").object()["checkedInCount"] as? Int == 2)
            let scans = try #require(try JSONSerialization.jsonObject(with: Data(buffer: try await client.get("/events/fair/check-ins").body)) as? [Any])
            #expect(scans.count == 2)
        }
    }

    /// A roll call snapshots the people named, is marked from several phones (the later mark
    /// wins, whichever arrives last), exports as CSV and, once closed, takes no more marks.
    @Test(arguments: Engine.available)
    func rollCall(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            try await Self.tree(client)
            try await Self.link(client, "/api/rooms/lab/place", to: "f1")
            for name in ["Alice", "Bob", "Cleo"] { _ = try await client.post("/rooms/lab/people/register", jsonText(["name": name])) }
            #expect(try await client.post("/api/places/b1/roll-calls", "").status == .unauthorized)
            let created = try await client.post("/api/places/b1/roll-calls", "", headers: Self.admin)
            #expect(created.status == .created)
            let call = try created.object()
            let id = try #require(call["id"] as? String)
            let people = try #require(call["people"] as? [[String: Any]])
            #expect(people.map { $0["name"] as? String } == ["Alice", "Bob", "Cleo"])
            #expect(people.allSatisfy { $0["status"] as? String == "unmarked" })
            #expect((call["summary"] as? [String: Any])?["unmarked"] as? Int == 3)
            let bob = try #require(people[1]["key"] as? String)

            // Someone leaving after the snapshot stays on the list.
            _ = try await client.post("/rooms/lab/people/unregister", jsonText(["name": "Alice"]))
            func mark(_ key: String, _ status: String, by: String, at: String? = nil) async throws -> TestResponse {
                var body: [String: Any] = ["status": status, "by": by]
                if let at { body["marked_at"] = at }
                return try await client.put("/api/roll-calls/\(id)/people/\(key)", jsonText(body), headers: Self.admin)
            }
            let marked = try await mark(bob, "safe", by: "warden-1", at: "2025-01-01T10:00:00Z")
            #expect(try marked.object()["status"] as? String == "safe")
            #expect(try marked.object()["marked_by"] as? String == "warden-1")
            // An older mark sent late (a phone back online) does not undo the newer one.
            let late = try await mark(bob, "missing", by: "warden-2", at: "2025-01-01T09:59:00Z")
            #expect(late.status == .ok)
            #expect(try late.object()["status"] as? String == "safe")
            #expect(try await mark(bob, "safe", by: "warden-1", at: "2025-01-01T10:00:00Z").status == .ok, "marking again is harmless")
            #expect(try await mark("99", "safe", by: "w").status == .notFound)
            #expect(try await mark(bob, "fine", by: "w").status == .unprocessableContent)
            #expect(try await client.put("/api/roll-calls/nope/people/1", #"{"status":"safe"}"#, headers: Self.admin).status == .notFound)

            let csv = String(buffer: try await client.get("/api/roll-calls/\(id).csv", headers: Self.admin).body)
            #expect(csv.hasPrefix("key,name,source,source_id,place_id,since,status,marked_by,marked_at\r\n"))
            #expect(csv.contains(",Bob,room,lab/Bob,f1,") && csv.contains(",safe,warden-1,2025-01-01T10:00:00Z\r\n"))
            #expect(try await client.get("/api/roll-calls/\(id).csv").status == .unauthorized)

            let open = try #require(try await client.get("/api/roll-calls?open=true", headers: Self.admin).object()["roll_calls"] as? [[String: Any]])
            #expect(open.map { $0["id"] as? String } == [id])
            let closed = try await client.post("/api/roll-calls/\(id)/close", "", headers: Self.admin).object()
            #expect(closed["closed_at"] is String)
            #expect(try await client.post("/api/roll-calls/\(id)/close", "", headers: Self.admin).object()["closed_at"] as? String == closed["closed_at"] as? String)
            let refused = try await mark(bob, "missing", by: "w")
            #expect(refused.status == .conflict)
            #expect(try refused.object()["reason"] as? String == "roll_call_closed")
            #expect((try await client.get("/api/roll-calls?open=true", headers: Self.admin).object()["roll_calls"] as? [Any])?.isEmpty == true)
            let summary = try await client.get("/api/roll-calls/\(id)", headers: Self.admin).object()["summary"] as? [String: Any]
            #expect(summary?["safe"] as? Int == 1 && summary?["unmarked"] as? Int == 2)
            #expect(try await client.post("/api/places/nowhere/roll-calls", "", headers: Self.admin).status == .notFound)
        }
    }

    /// Two phones marking one person at once: every mark is answered, and the one made last wins.
    @Test(arguments: Engine.available)
    func racingMarks(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            try await Self.tree(client)
            try await Self.link(client, "/api/rooms/lab/place", to: "f1")
            _ = try await client.post("/rooms/lab/people/register", #"{"name":"Alice"}"#)
            let id = try #require(try await client.post("/api/places/b1/roll-calls", "", headers: Self.admin).object()["id"] as? String)
            let bodies = (0..<16).map { i in
                jsonText(["status": i % 2 == 0 ? "safe" : "missing", "by": "phone-\(i)", "marked_at": "2025-01-01T10:00:\(String(format: "%02d", i))Z"])
            }
            let answers = try await withParallelClient { http in
                try await withThrowingTaskGroup(of: UInt.self) { group in
                    for body in bodies.shuffled() {
                        group.addTask {
                            try await send(
                                .PUT, port: port, "/api/roll-calls/\(id)/people/1", body: .init(string: body), headers: [("X-Admin-Token", WorkersTests.adminKey)], using: http
                            )
                            .status
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            #expect(answers.allSatisfy { $0 == 200 })
            let person = try #require((try await client.get("/api/roll-calls/\(id)", headers: Self.admin).object()["people"] as? [[String: Any]])?.first)
            #expect(person["marked_by"] as? String == "phone-15")
            #expect(person["status"] as? String == "missing")
        }
    }
}
