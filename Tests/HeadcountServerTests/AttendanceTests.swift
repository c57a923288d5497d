import AsyncHTTPClient
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

@testable import HeadcountServer

@Suite("Attendance") struct AttendanceTests {
    static let admin: HTTPFields = [.adminToken: "test-admin-key-0123456789", .contentType: "application/json"]

    static func bearer(_ token: String) -> HTTPFields {
        [.authorization: "Bearer \(token)", .contentType: "application/json"]
    }

    static func record(_ local: Int, employee: String = "emp-1", type: String = "ENTRY", at ms: Int64, device: String) -> [String: Any] {
        [
            "local_id": local, "employee_id": employee, "type": type, "timestamp": ms, "confidence": 0.97, "liveness_passed": true,
            "device_id": device, "created_at": ms,
        ]
    }

    /// Creates a code for `tenant` and registers `device` with it; returns the device token.
    static func device(_ client: any TestClientProtocol, _ device: String, tenant: String = "ACME") async throws -> String {
        let code = try await client.post("/api/admin/activation-codes", jsonText(["tenant_id": tenant]), headers: admin).object()["code"] as? String
        let registered = try await client.post("/api/devices/register", jsonText(["activation_code": code ?? "", "device_id": device]))
        #expect(registered.status == .created)
        let data = try #require(try registered.object()["data"] as? [String: Any])
        return try #require(data["device_token"] as? String)
    }

    static func sync(_ client: any TestClientProtocol, _ token: String, _ records: [[String: Any]]) async throws -> TestResponse {
        try await client.post("/api/attendance/sync", jsonText(["records": records]), headers: bearer(token))
    }

    @Test(arguments: Engine.available)
    func codesAndDeviceRegistration(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let body = #"{"code": "ACME-ABC123", "description": "lobby tablet"}"#
            #expect(try await client.post("/api/admin/activation-codes", body).status == .unauthorized)
            #expect(try await client.post("/api/admin/activation-codes", body, headers: [.adminToken: "wrong"]).status == .unauthorized)
            let created = try await client.post("/api/admin/activation-codes", body, headers: [.authorization: "Bearer test-admin-key-0123456789"])
            #expect(created.status == .created)
            let code = try created.object()
            #expect(code["tenant_id"] as? String == "ACME")
            #expect(code["status"] as? String == "pending")
            #expect(code["description"] as? String == "lobby tablet")
            // The original silently re-armed an existing code.
            #expect(try await client.post("/api/admin/activation-codes", body, headers: Self.admin).status == .conflict)
            for bad in [#"{"code": "AC ME-1"}"#, #"{"code": "NOPREFIX"}"#, #"{"code": "-X1"}"#, "{}", #"{"tenant_id": "a-b"}"#, #"{"code": "ACME-2", "tenant_id": "OTHER"}"#] {
                #expect(try await client.post("/api/admin/activation-codes", bad, headers: Self.admin).status == .unprocessableContent, "\(bad)")
            }
            let past = try await client.post("/api/admin/activation-codes", #"{"code": "ACME-OLD", "expires_at": 1000}"#, headers: Self.admin)
            #expect(try past.object()["status"] as? String == "expired")

            let listed = try await client.get("/api/admin/activation-codes?tenant_id=ACME", headers: Self.admin).object()
            #expect((listed["codes"] as? [[String: Any]])?.map { $0["code"] as? String } == ["ACME-ABC123", "ACME-OLD"])
            #expect(try await client.get("/api/admin/activation-codes", headers: Self.admin).status == .badRequest)
            for path in ["/api/admin/activation-codes", "/api/admin/devices", "/api/admin/attendance", "/api/admin/attendance.csv"] {
                #expect(try await client.get("\(path)?tenant_id=AC%00ME", headers: Self.admin).status == .badRequest, "\(path)")
            }

            let register = { (code: String, device: String) in
                try await client.post("/api/devices/register", jsonText(["activation_code": code, "device_id": device, "device_name": "Tab"]))
            }
            let registered = try await register("ACME-ABC123", "tab-1")
            #expect(registered.status == .created)
            let envelope = try registered.object()
            #expect(envelope["success"] as? Bool == true)
            let data = try #require(envelope["data"] as? [String: Any])
            #expect(data["tenant_id"] as? String == "ACME" && data["is_active"] as? Bool == true)
            #expect(data.keys.contains("token_expires_at"))
            let token = try #require(data["device_token"] as? String)

            #expect(try await register("ACME-ABC123", "tab-2").errorMessage() == "Activation code has already been used.")
            #expect(try await register("ACME-NOPE", "tab-2").errorMessage() == "Invalid activation code.")
            #expect(try await register("ACME-OLD", "tab-2").errorMessage() == "Activation code has expired.")
            #expect(try await client.post("/api/devices/register", #"{"device_id": "x"}"#).status == .unprocessableContent)
            // A taken device id is a 409, and the code it tried stays unspent.
            let spare = try await client.post("/api/admin/activation-codes", #"{"tenant_id": "ACME"}"#, headers: Self.admin).object()["code"] as! String
            #expect(try await register(spare, "tab-1").status == .conflict)
            #expect(try await register(spare, "tab-3").status == .created)

            let status = try await client.get("/api/devices/status", headers: Self.bearer(token))
            #expect(status.status == .ok)
            #expect(try status.object()["device_id"] as? String == "tab-1")
            #expect(try status.object()["last_sync_at"] is NSNull)
            #expect(try await client.get("/api/devices/status").status == .unauthorized)
            #expect(try await client.get("/api/devices/status", headers: Self.bearer("forged")).status == .unauthorized)
            #expect(try await client.get("/api/devices/status", headers: [.authorization: "Bearer \(token)", .tenantID: "OTHER"]).status == .forbidden)
        }
    }

    @Test(arguments: Engine.available)
    func syncJudgesEachRecord(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let token = try await Self.device(client, "tab-1")
            let now = Timestamp.now().microseconds / 1000
            let t = now - 3_600_000
            let first = try await Self.sync(
                client, token,
                [
                    Self.record(1, at: t, device: "tab-1"),
                    Self.record(2, at: t + 30_000, device: "tab-1"),  // within ±30 s, inclusive: conflict
                    Self.record(3, at: t + 30_001, device: "tab-1"),
                    Self.record(4, employee: "emp-2", at: t, device: "tab-9"),  // DEVICE_ID_MISMATCH
                    Self.record(5, employee: "emp-2", type: "LUNCH", at: t, device: "tab-1"),
                    Self.record(6, employee: "emp-2", at: now + 600_000, device: "tab-1"),
                ]
            ).object()
            #expect(first["success"] as? Bool == true)
            #expect(first["synced_count"] as? Int == 2)
            let synced = try #require(first["synced_records"] as? [[String: Any]])
            #expect(synced.map { $0["local_id"] as? Int } == [1, 3])
            let conflicts = try #require(first["conflicts"] as? [[String: Any]])
            #expect(conflicts.map { $0["local_id"] as? Int } == [2])
            #expect(conflicts.first?["reason"] as? String == "DUPLICATE_TIMESTAMP")
            #expect((conflicts.first?["existing_record"] as? [String: Any])?["server_id"] as? Int == synced[0]["server_id"] as? Int)
            let errors = try #require(first["errors"] as? [[String: Any]])
            #expect(errors.map { $0["error"] as? String } == ["DEVICE_ID_MISMATCH", "INVALID_TYPE", "FUTURE_TIMESTAMP"])

            // A retry answers the same server ids and stores nothing.
            let retry = try await Self.sync(client, token, [Self.record(1, at: t, device: "tab-1"), Self.record(3, at: t + 30_001, device: "tab-1")]).object()
            #expect((retry["synced_records"] as? [[String: Any]])?.map { $0["server_id"] as? Int } == synced.map { $0["server_id"] as? Int })

            // Too many, or malformed: nothing stored.
            let many = (0..<101).map { Self.record(100 + $0, employee: "bulk-\($0)", at: t, device: "tab-1") }
            #expect(try await Self.sync(client, token, many).status == .contentTooLarge)
            #expect(
                try await client.post(
                    "/api/attendance/sync", jsonText(["records": [Self.record(200, employee: "e", at: t, device: "tab-1"), ["local_id": "x"]]]),
                    headers: Self.bearer(token)
                ).status == .unprocessableContent)
            #expect(try await client.post("/api/attendance/sync", "{", headers: Self.bearer(token)).status == .badRequest)
            let listed = try await client.get("/api/admin/attendance?tenant_id=ACME", headers: Self.admin).object()["records"] as? [Any]
            #expect(listed?.count == 2)
            #expect(try await client.get("/api/devices/status", headers: Self.bearer(token)).object()["last_sync_at"] as? Int != nil)

            // A record within 30 s of two stored ones names the earlier; one a day before, in the same
            // sync, is judged by its own window, not the span of the sync.
            let near = try await Self.sync(client, token, [Self.record(7, at: t + 15_000, device: "tab-1"), Self.record(8, at: t - 86_400_000, device: "tab-1")])
                .object()
            let named = (near["conflicts"] as? [[String: Any]])?.map { ($0["existing_record"] as? [String: Any])?["server_id"] as? Int }
            #expect(named == [synced[0]["server_id"] as? Int])
            #expect((near["synced_records"] as? [[String: Any]])?.map { $0["local_id"] as? Int } == [8])

            let audits = try await client.post(
                "/api/audit/sync", jsonText(["audits": [["local_id": 1, "action": "MANUAL_FIX", "timestamp": t, "reason": "typo"]]]),
                headers: Self.bearer(token)
            ).object()
            let again = try await client.post(
                "/api/audit/sync", jsonText(["audits": [["local_id": 1, "action": "MANUAL_FIX", "timestamp": t]]]),
                headers: Self.bearer(token)
            ).object()
            #expect(audits["synced_count"] as? Int == 1)
            #expect(
                (audits["synced_audits"] as? [[String: Any]])?.first?["server_id"] as? Int
                    == (again["synced_audits"] as? [[String: Any]])?.first?["server_id"] as? Int)
            #expect(try await client.post("/api/audit/sync", jsonText(["audits": [["action": "X"]]]), headers: Self.bearer(token)).status == .unprocessableContent)
        }
    }

    @Test(arguments: Engine.available)
    func updatesTombstonesAndTenants(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let a1 = try await Self.device(client, "a-1"), a2 = try await Self.device(client, "a-2")
            let b1 = try await Self.device(client, "b-1", tenant: "BETA")
            let t = Timestamp.now().microseconds / 1000 - 7_200_000
            _ = try await Self.sync(client, a1, (0..<5).map { Self.record($0, employee: "e\($0)", at: t, device: "a-1") })
            // Tenant B's employee e0 at the same instant is no duplicate of tenant A's.
            let beta = try await Self.sync(client, b1, [Self.record(0, employee: "e0", at: t, device: "b-1")]).object()
            #expect(beta["synced_count"] as? Int == 1)

            let page1 = try await client.get("/api/attendance/updates?since=0&limit=3", headers: Self.bearer(a2)).object()
            #expect((page1["updates"] as? [[String: Any]])?.map { $0["employee_id"] as? String } == ["e0", "e1", "e2"])
            #expect(page1["has_more"] as? Bool == true)
            let mark = try #require(page1["last_sync_timestamp"] as? Int)
            let page2 = try await client.get("/api/attendance/updates?since=\(mark)", headers: Self.bearer(a2)).object()
            #expect((page2["updates"] as? [[String: Any]])?.map { $0["employee_id"] as? String } == ["e3", "e4"])
            #expect(page2["has_more"] as? Bool == false)
            let mark2 = try #require(page2["last_sync_timestamp"] as? Int)

            let target = try #require((page1["updates"] as? [[String: Any]])?.first?["server_id"] as? Int)
            let deleteRequest = { (tenant: String) in
                try await client.delete("/api/admin/attendance/\(target)", #"{"reason": "wrong person"}"#, headers: Self.admin.merging([.tenantID: tenant]))
            }
            #expect(try await deleteRequest("BETA").status == .notFound)
            #expect(try await deleteRequest("ACME").status == .ok)
            let page3 = try await client.get("/api/attendance/updates?since=\(mark2)", headers: Self.bearer(a1)).object()
            let tombstone = try #require((page3["updates"] as? [[String: Any]])?.first)
            #expect(tombstone["action"] as? String == "DELETED")
            #expect(tombstone["deletion_reason"] as? String == "wrong person")
            #expect((page3["updates"] as? [Any])?.count == 1)

            let betaFeed = try await client.get("/api/attendance/updates?since=0", headers: Self.bearer(b1)).object()
            #expect((betaFeed["updates"] as? [[String: Any]])?.map { $0["device_id"] as? String } == ["b-1"])
            let betaDevices = try await client.get("/api/admin/devices", headers: Self.admin.merging([.tenantID: "BETA"])).object()
            #expect((betaDevices["devices"] as? [[String: Any]])?.map { $0["device_id"] as? String } == ["b-1"])
            #expect(try await client.get("/api/admin/devices", headers: Self.admin).status == .badRequest)
            #expect(try await client.get("/api/attendance/updates?since=-1", headers: Self.bearer(a1)).status == .badRequest)

            let csv = try await client.get("/api/admin/attendance.csv?tenant_id=ACME", headers: Self.admin).text
            #expect(csv.hasPrefix("server_id,employee_id,type,timestamp,time,device_id,closed_by_policy_at\r\n"))
            #expect(csv.components(separatedBy: "\r\n").filter { !$0.isEmpty }.count == 5)  // header + 4 live records
        }
    }

    @Test(arguments: Engine.available)
    func deactivatedDevicesAreRefusedEverywhere(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let token = try await Self.device(client, "tab-1")
            let deactivate = { (tenant: String) in
                try await client.put("/api/admin/devices/tab-1/deactivate", #"{"reason": "stolen"}"#, headers: Self.admin.merging([.tenantID: tenant]))
            }
            #expect(try await deactivate("BETA").status == .notFound)
            let done = try await deactivate("ACME")
            #expect(try done.object() as NSDictionary == ["success": true, "message": "Device deactivated."])
            #expect(try await deactivate("ACME").status == .ok)
            let t = Timestamp.now().microseconds / 1000
            for response in [
                try await client.get("/api/devices/status", headers: Self.bearer(token)),
                try await Self.sync(client, token, [Self.record(1, at: t, device: "tab-1")]),
                try await client.get("/api/attendance/updates", headers: Self.bearer(token)),
                try await client.post("/api/audit/sync", #"{"audits": []}"#, headers: Self.bearer(token)),
            ] {
                #expect(response.status == .forbidden)
                #expect(try response.errorMessage() == "Device is deactivated.")
            }
            #expect(try await client.get("/api/admin/attendance?tenant_id=ACME", headers: Self.admin).object()["records"] as? [Any] != nil)
            let devices = try await client.get("/api/admin/devices?tenant_id=ACME", headers: Self.admin).object()["devices"] as? [[String: Any]]
            #expect(devices?.first?["is_active"] as? Bool == false)
        }
    }

    /// Ten devices race for one code over real sockets: exactly one gets it.
    @Test(arguments: Engine.available)
    func oneCodeOneDevice(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            _ = try await client.post("/api/admin/activation-codes", #"{"code": "ACME-RACE"}"#, headers: Self.admin)
            let results = try await postInParallel(
                port: port, path: "/api/devices/register",
                bodies: (0..<10).map { jsonText(["activation_code": "ACME-RACE", "device_id": "racer-\($0)"]) })
            #expect(results.filter { $0.status == 201 }.count == 1)
            #expect(results.filter { $0.status == 400 }.count == 9)
            let devices = try await client.get("/api/admin/devices?tenant_id=ACME", headers: Self.admin).object()["devices"] as? [Any]
            #expect(devices?.count == 1)
        }
    }

    /// Two devices sync while a third polls: what the poller collects is exactly what was stored,
    /// each record once, although records commit while it reads.
    @Test(arguments: Engine.available)
    func pollingWhileOthersSyncMissesAndRepeatsNothing(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            let writers = [try await Self.device(client, "w-1"), try await Self.device(client, "w-2")]
            let reader = try await Self.device(client, "r-1")
            let base = Timestamp.now().microseconds / 1000 - 86_400_000
            let seen = try await withThrowingTaskGroup(of: [Int].self) { group in
                for (w, token) in writers.enumerated() {
                    group.addTask {
                        for batch in 0..<10 {
                            let records = (0..<10).map { i in
                                Self.record(batch * 10 + i, employee: "w\(w)-e\(batch * 10 + i)", at: base + Int64(batch * 10 + i) * 60_000, device: "w-\(w + 1)")
                            }
                            let results = try await postInParallel(
                                port: port, path: "/api/attendance/sync", bodies: [jsonText(["records": records])],
                                headers: [("Authorization", "Bearer \(token)")])
                            #expect(results.first?.status == 200)
                        }
                        return []
                    }
                }
                group.addTask {
                    // Until it has seen 200 records (or 30 s pass), then once more: a repeat would show.
                    var since = 0, ids: [Int] = [], lastRound = false
                    let deadline = ContinuousClock.now + .seconds(30)
                    while ContinuousClock.now < deadline {
                        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/attendance/updates?since=\(since)&limit=7")
                        request.headers.add(name: "Authorization", value: "Bearer \(reader)")
                        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
                        let body = try JSONSerialization.jsonObject(with: Data(buffer: try await response.body.collect(upTo: 1 << 20))) as! [String: Any]
                        let updates = body["updates"] as! [[String: Any]]
                        ids += updates.map { $0["server_id"] as! Int }
                        since = body["last_sync_timestamp"] as! Int
                        if lastRound { break }
                        lastRound = ids.count >= 200
                        if updates.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
                    }
                    return ids
                }
                return try await group.reduce(into: [Int]()) { $0 += $1 }
            }
            let stored = try await client.get("/api/admin/attendance?tenant_id=ACME", headers: Self.admin).object()["records"] as! [[String: Any]]
            #expect(stored.count == 200)
            #expect(seen.count == Set(seen).count)
            #expect(Set(seen) == Set(stored.map { $0["server_id"] as! Int }))
        }
    }

    /// Syncs of one tenant that arrive together are decided together; each must still get the
    /// answer it would alone, whatever the order: eight copies of one sync (each record stored
    /// once, every copy answered with its server ids), eight syncs each bringing a record of one
    /// employee within 30 s of the others (one stored, seven conflicts naming it) beside records
    /// of their own, and syncs repeating a local id inside themselves (the second is refused).
    @Test(arguments: Engine.available)
    func syncsAtOnceAreEachAnsweredAsAlone(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            let (copier, crowd, twice) = (try await Self.device(client, "copier"), try await Self.device(client, "crowd"), try await Self.device(client, "twice"))
            let base = Timestamp.now().microseconds / 1000 - 86_400_000
            var expectedStored = 0
            for round in 0..<5 {
                let at = base + Int64(round) * 3_600_000
                let copied = (0..<10).map { Self.record(round * 100 + $0, employee: "c\($0)", at: at, device: "copier") }
                var syncs: [(kind: String, token: String, records: [[String: Any]])] = (0..<8).map { _ in ("copy", copier, copied) }
                syncs += (0..<8).map { k in
                    let own = (0..<3).map { Self.record(round * 100 + k * 10 + $0 + 1, employee: "own-\(k)-\($0)", at: at, device: "crowd") }
                    return ("crowd", crowd, [Self.record(round * 100 + k * 10, employee: "shared", at: at + Int64(k) * 1000, device: "crowd")] + own)
                }
                syncs += (0..<4).map { k in
                    let local = round * 100 + k
                    return ("twice", twice, [Self.record(local, employee: "t\(k)", at: at, device: "twice"), Self.record(local, employee: "u\(k)", at: at, device: "twice")])
                }
                expectedStored += 10 + 1 + 8 * 3 + 4
                let replies = try await withThrowingTaskGroup(of: (String, String).self) { group in
                    for sync in syncs.shuffled() {
                        let (kind, token, body) = (sync.kind, sync.token, ByteBuffer(string: jsonText(["records": sync.records])))
                        group.addTask {
                            let response = try await send(.POST, port: port, "/api/attendance/sync", body: body, headers: [("Authorization", "Bearer \(token)")])
                            #expect(response.status == 200)
                            return (kind, response.body)
                        }
                    }
                    return try await group.reduce(into: [(String, String)]()) { $0.append($1) }
                }
                let answers = replies.map { kind, body in (kind, (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]) }
                func synced(_ answer: [String: Any]) -> [Int: Int] {
                    Dictionary(((answer["synced_records"] as? [[String: Any]]) ?? []).map { ($0["local_id"] as? Int ?? -1, $0["server_id"] as? Int ?? -1) }) { a, _ in a }
                }
                let copies = answers.filter { $0.0 == "copy" }.map { synced($0.1) }
                #expect(copies.count == 8 && copies.allSatisfy { $0.count == 10 && $0 == copies[0] })

                let crowds = answers.filter { $0.0 == "crowd" }.map(\.1)
                let sharedIDs = crowds.flatMap { synced($0).filter { $0.key % 10 == 0 }.values }
                #expect(sharedIDs.count == 1, "one of the crowd's shared records is stored")
                let conflicts = crowds.flatMap { ($0["conflicts"] as? [[String: Any]]) ?? [] }
                #expect(conflicts.count == 7)
                #expect(conflicts.allSatisfy { ($0["existing_record"] as? [String: Any])?["server_id"] as? Int == sharedIDs.first })
                #expect(crowds.allSatisfy { synced($0).count == 3 || synced($0).count == 4 })

                for answer in answers.filter({ $0.0 == "twice" }).map(\.1) {
                    #expect(synced(answer).count == 1)
                    #expect((answer["errors"] as? [[String: Any]])?.map { $0["error"] as? String } == ["DUPLICATE_LOCAL_ID"])
                }
            }
            let stored = try await client.get("/api/admin/attendance?tenant_id=ACME", headers: Self.admin).object()["records"] as? [[String: Any]] ?? []
            #expect(stored.count == expectedStored)
        }
    }

    /// Two instances on one database: one device sends the same 20 records twelve times at once,
    /// half through each, while a second device of the tenant syncs 20 of its own. Every answer
    /// gives each record the one server id it was stored under, and 40 records are stored, each
    /// under its own change stamp, so that devices paging through updates miss none (syncs of a
    /// tenant share transactions on PostgreSQL).
    @Test(arguments: Engine.available)
    func replaysRacingThroughTwoInstancesStoreEachRecordOnce(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        try await environment.withApp(.live) { a in
            try await environment.withApp(.live) { b in
                let (aPort, bPort) = (try #require(a.port), try #require(b.port))
                let tokens = [try await Self.device(a, "replayer"), try await Self.device(b, "other")]
                let base = Timestamp.now().microseconds / 1000 - 86_400_000
                let replayed = (0..<20).map { Self.record($0, employee: "e\($0)", at: base + Int64($0) * 60_000, device: "replayer") }
                let other = (0..<20).map { Self.record($0, employee: "o\($0)", at: base + Int64($0) * 60_000, device: "other") }
                let answers = try await withThrowingTaskGroup(of: (Int, UInt, String).self) { group in
                    for copy in 0..<13 {
                        let (records, token) = copy == 12 ? (other, tokens[1]) : (replayed, tokens[0])
                        let body = ByteBuffer(string: jsonText(["records": records]))
                        group.addTask {
                            let response = try await send(
                                .POST, port: copy % 2 == 0 ? aPort : bPort, "/api/attendance/sync", body: body, headers: [("Authorization", "Bearer \(token)")])
                            return (copy, response.status, response.body)
                        }
                    }
                    return try await group.reduce(into: [(Int, UInt, String)]()) { $0.append($1) }
                }
                #expect(answers.allSatisfy { $0.1 == 200 })
                let serverIDs = answers.filter { $0.0 != 12 }.map { answer in
                    let body = (try? JSONSerialization.jsonObject(with: Data(answer.2.utf8))) as? [String: Any]
                    let synced = body?["synced_records"] as? [[String: Any]] ?? []
                    return Dictionary(synced.map { ($0["local_id"] as? Int ?? -1, $0["server_id"] as? Int ?? -1) }) { first, _ in first }
                }
                #expect(serverIDs.allSatisfy { $0 == serverIDs[0] && $0.count == 20 })
                let stored = try await b.get("/api/admin/attendance?tenant_id=ACME", headers: Self.admin).object()["records"] as? [[String: Any]] ?? []
                #expect(stored.count == 40)
                #expect(Set(serverIDs[0].values).isSubset(of: Set(stored.compactMap { $0["server_id"] as? Int })))
                // One record a page: two records under one stamp would make a page boundary skip one.
                var (since, seen) = (0, [Int]())
                while seen.count <= 40 {
                    var request = HTTPClientRequest(url: "http://127.0.0.1:\(aPort)/api/attendance/updates?since=\(since)&limit=1")
                    request.headers.add(name: "Authorization", value: "Bearer \(tokens[1])")
                    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
                    let page = try JSONSerialization.jsonObject(with: Data(buffer: try await response.body.collect(upTo: 1 << 20))) as? [String: Any]
                    let updates = page?["updates"] as? [[String: Any]] ?? []
                    guard !updates.isEmpty, let next = page?["last_sync_timestamp"] as? Int else { break }
                    (since, seen) = (next, seen + updates.compactMap { $0["server_id"] as? Int })
                }
                #expect(seen.count == 40 && Set(seen).count == 40, "\(seen)")
            }
        }
    }
}

extension HTTPFields {
    func merging(_ other: HTTPFields) -> HTTPFields {
        var fields = self
        for field in other { fields[field.name] = field.value }
        return fields
    }
}
