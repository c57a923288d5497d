import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import Testing

@testable import HeadcountServer

/// The production layout: two instances behind nginx, one PostgreSQL, one S3 server, as
/// `eval "$(scripts/cluster start 2)"` sets it up (`.ci/run` does). Every request goes through
/// nginx, which spreads them round-robin. Runs when `HEADCOUNT_CLUSTER_URL` is set.
@Suite("Cluster", .serialized) struct ClusterTests {
    static let environment = ProcessInfo.processInfo.environment
    static let port = environment["HEADCOUNT_CLUSTER_URL"].flatMap { URL(string: $0)?.port }
    static var enabled: Bool { port != nil }
    static var admin: [(String, String)] { [("X-Admin-Token", environment["HEADCOUNT_CLUSTER_ADMIN_KEY"] ?? "")] }

    /// Names of this run's rows: the cluster's database outlives a test.
    let tag = "-" + UUID().uuidString.prefix(8).lowercased()

    /// A request through nginx, its body read as JSON.
    static func call(_ method: HTTPMethod, _ path: String, _ body: String? = nil, headers: [(String, String)] = [], using http: HTTPClient = .shared) async throws -> (
        status: UInt, json: Any?
    ) {
        let response = try await send(method, port: port!, path, body: body.map { ByteBuffer(string: $0) }, headers: headers, using: http)
        return (response.status, try? JSONSerialization.jsonObject(with: Data(response.body.utf8), options: [.fragmentsAllowed]))
    }

    @Test(.enabled(if: enabled))
    func eventsRaceNeverOverbooks() async throws {
        try await TwoInstancesTests.race(Self.port!, Self.port!, tag: tag)
    }

    @Test(.enabled(if: enabled))
    func aOneTimeCodeGoesToOneDevice() async throws {
        let code = "T\(tag.dropFirst())-RACE"
        #expect(try await Self.call(.POST, "/api/admin/activation-codes", jsonText(["code": code]), headers: Self.admin).status == 201)
        let results = try await postInParallel(
            port: Self.port!, path: "/api/devices/register",
            bodies: (0..<20).map { jsonText(["activation_code": code, "device_id": "racer-\($0)\(tag)"]) })
        #expect(results.filter { $0.status == 201 }.count == 1)
        #expect(results.filter { $0.status == 400 }.count == 19)
    }

    /// 200 people arrive at once through both instances: every one is a row of the day's CSV, in
    /// the database and, within a few seconds, in the S3 object both instances rewrite.
    @Test(.enabled(if: enabled))
    func parallelRoomRegistrationsAreAllInTheDaysCSV() async throws {
        let room = "cluster\(tag)", names = Set((0..<200).map { "person \($0)" })
        let results = try await postInParallel(port: Self.port!, path: "/rooms/\(room)/people/register", bodies: names.map { jsonText(["name": $0]) })
        #expect(results.allSatisfy { $0.status == 200 })
        let day = Timestamp.now().day
        func logged(_ csv: String?) -> [String] {
            (csv ?? "").components(separatedBy: "\r\n").dropFirst().filter { !$0.isEmpty }.map { String($0.split(separator: ",")[2]) }
        }
        let served = try await send(.GET, port: Self.port!, "/rooms/\(room)/people/logs/\(day).csv").body
        #expect(logged(served).count == 200 && Set(logged(served)) == names)

        let location = try ObjectStoreLocation.parse(
            try #require(Self.environment["HEADCOUNT_CLUSTER_OBJECT_STORE"]),
            environment: Self.environment.merging(["HEADCOUNT_S3_ENDPOINT": Self.environment["HEADCOUNT_CLUSTER_S3_ENDPOINT"] ?? ""]) { $1 })
        let store = try await openObjectStore(location)
        var stored: String?
        for _ in 0..<50 where stored != served {
            try await Task.sleep(for: .milliseconds(100))
            stored = try await store.get("rooms/\(room)/\(day)-logs.csv").map { String(buffer: $0) }
        }
        #expect(stored == served)
    }

    /// Two devices sync through both instances while a third polls: the poller gets every stored
    /// record exactly once, although records commit on two instances while it reads.
    @Test(.enabled(if: enabled))
    func attendanceUpdatesNeverMissOrRepeat() async throws {
        let tenant = "T\(tag.dropFirst())"
        func device(_ id: String) async throws -> String {
            let code = try await Self.call(.POST, "/api/admin/activation-codes", jsonText(["tenant_id": tenant]), headers: Self.admin).json as? [String: Any]
            let registered = try await Self.call(.POST, "/api/devices/register", jsonText(["activation_code": code?["code"] as? String ?? "", "device_id": id + tag]))
            return try #require(((registered.json as? [String: Any])?["data"] as? [String: Any])?["device_token"] as? String)
        }
        let writers = [try await device("w-1"), try await device("w-2")]
        let reader = try await device("r-1")
        let base = Timestamp.now().microseconds / 1000 - 86_400_000
        let seen = try await withParallelClient { http in
            try await withThrowingTaskGroup(of: [Int].self) { group in
                for (w, token) in writers.enumerated() {
                    group.addTask {
                        for batch in 0..<10 {
                            let records = (0..<10).map { i in
                                AttendanceTests.record(
                                    batch * 10 + i, employee: "w\(w)-e\(batch * 10 + i)", at: base + Int64(batch * 10 + i) * 60_000, device: "w-\(w + 1)\(self.tag)")
                            }
                            let synced = try await Self.call(
                                .POST, "/api/attendance/sync", jsonText(["records": records]), headers: [("Authorization", "Bearer \(token)")], using: http)
                            #expect(synced.status == 200)
                        }
                        return []
                    }
                }
                group.addTask {
                    var since = 0, ids: [Int] = [], lastRound = false
                    let deadline = ContinuousClock.now + .seconds(60)
                    while ContinuousClock.now < deadline {
                        let page = try await Self.call(.GET, "/api/attendance/updates?since=\(since)&limit=7", headers: [("Authorization", "Bearer \(reader)")], using: http)
                        let body = try #require(page.json as? [String: Any])
                        let updates = try #require(body["updates"] as? [[String: Any]])
                        ids += updates.compactMap { $0["server_id"] as? Int }
                        since = try #require(body["last_sync_timestamp"] as? Int)
                        if lastRound { break }
                        lastRound = ids.count >= 200
                        if updates.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
                    }
                    return ids
                }
                return try await group.reduce(into: [Int]()) { $0 += $1 }
            }
        }
        let stored = try #require(
            (try await Self.call(.GET, "/api/admin/attendance?tenant_id=\(tenant)", headers: Self.admin).json as? [String: Any])?["records"] as? [[String: Any]])
        #expect(stored.count == 200)
        #expect(seen.count == Set(seen).count, "no record twice")
        #expect(Set(seen) == Set(stored.compactMap { $0["server_id"] as? Int }), "no record missed")
    }

    /// Writers keep registering people while each instance in turn is restarted (SIGTERM, then a
    /// fresh process): every write that was acknowledged is there afterwards, and none was a 500.
    @Test(.enabled(if: enabled))
    func restartingInstancesUnderLoadLosesNoAcknowledgedWrite() async throws {
        let room = "restart\(tag)"
        let running = Running()
        let outcome = try await withParallelClient { http in
            try await withThrowingTaskGroup(of: (acknowledged: [String], statuses: [UInt]).self) { group in
                for writer in 0..<8 {
                    group.addTask {
                        var acknowledged: [String] = [], statuses: [UInt] = [], n = 0
                        while running.value.load(ordering: .relaxed) {
                            let name = "writer \(writer) #\(n)"
                            n += 1
                            // A failed connection is an unacknowledged write, like a 502 from nginx.
                            let status = (try? await Self.call(.POST, "/rooms/\(room)/people/register", jsonText(["name": name]), using: http))?.status ?? 0
                            statuses.append(status)
                            if status == 200 { acknowledged.append(name) }
                        }
                        return (acknowledged, statuses)
                    }
                }
                try await Task.sleep(for: .milliseconds(500))
                for instance in [1, 2] { try await Self.restart(instance) }
                try await Task.sleep(for: .milliseconds(500))
                running.value.store(false, ordering: .relaxed)
                return try await group.reduce(into: (acknowledged: [String](), statuses: [UInt]())) {
                    $0.acknowledged += $1.acknowledged
                    $0.statuses += $1.statuses
                }
            }
        }
        let status = try #require(try await Self.call(.GET, "/rooms/\(room)/people/status").json as? [String: Any])
        let inside = Set(status["occupants"] as? [String] ?? [])
        #expect(outcome.acknowledged.count > 100, "writes went on during the restarts: \(outcome.acknowledged.count)")
        #expect(Set(outcome.acknowledged).isSubset(of: inside), "lost: \(Set(outcome.acknowledged).subtracting(inside).sorted())")
        #expect(!outcome.statuses.contains(500))
        print(
            "restarts under load: \(outcome.statuses.count) writes, \(outcome.acknowledged.count) acknowledged, statuses \(Dictionary(grouping: outcome.statuses, by: { $0 }).mapValues(\.count))"
        )
    }

    final class Running: Sendable {
        let value = Atomic(true)
    }

    /// `scripts/cluster restart <instance>`, waited for without blocking the test's threads.
    /// (posix_spawn and waitpid: Foundation's `Process` left the finished script a zombie here,
    /// with `isRunning` true for good.)
    static func restart(_ instance: Int) async throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/cluster").path
        let arguments: [UnsafeMutablePointer<CChar>?] = ([script, "restart", "\(instance)"] as [String]).map { strdup($0) } + [nil]
        let variables: [UnsafeMutablePointer<CChar>?] = environment.merging(["CLUSTER_PORT": "\(port!)"]) { $1 }.map { strdup("\($0)=\($1)") } + [nil]
        defer { (arguments + variables).forEach { free($0) } }
        var pid: pid_t = 0
        try #require(posix_spawn(&pid, script, nil, nil, arguments, variables) == 0)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(status == 0, "scripts/cluster restart \(instance) failed (wait status \(status))")
    }
}
