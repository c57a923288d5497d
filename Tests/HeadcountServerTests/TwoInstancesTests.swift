import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
@testable import HeadcountServer

/// A `headcount serve` process of the built binary, on its own port and data directory.
final class ServerProcess {
    let port: Int
    private let process = Process()
    private let directory: URL

    init(database: String) async throws {
        let binary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/headcount")
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build the binary first: swift build")
        port = Int.random(in: 20_000...40_000)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("headcount-instance-\(UUID().uuidString)")
        process.executableURL = binary
        process.arguments = ["serve", "--port", "\(port)", "--database", database, "--data-dir", directory.path,
                             "--admin-key", "test-admin-key-0123456789", "--log-level", "warning"]
        try process.run()
        for _ in 0..<200 {
            if (try? await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/health"), timeout: .seconds(1)))?.status == .ok { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        stop()
        throw CancellationError()
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Several stateless instances on one PostgreSQL: the guarantees hold across processes.
@Suite("Two instances") struct TwoInstancesTests {
    static var enabled: Bool { Engine.available.contains(.postgres) }

    @Test(.enabled(if: enabled))
    func registrationsSpreadOverTwoInstancesNeverOverbook() async throws {
        guard let base = Engine.postgresURL else { throw MissingPostgres() }
        let database = try await createPostgresDatabase(base: base)
        let a = try await ServerProcess(database: database)
        defer { a.stop() }
        let b = try await ServerProcess(database: database)
        defer { b.stop() }

        @Sendable func post(_ port: Int, _ path: String, _ body: String) async throws -> (UInt, String) {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            return (response.status.code, String(buffer: try await response.body.collect(upTo: 1 << 20)))
        }
        for i in 0..<200 { _ = try await post(i % 2 == 0 ? a.port : b.port, "/users", jsonText(["userId": "u\(i)", "name": "User \(i)"])) }
        _ = try await post(a.port, "/events", jsonText(EventsTests.event("shared", capacity: 50, waitlist: true)))

        // 200 registrations at once, alternating between the instances.
        let (aPort, bPort) = (a.port, b.port)
        let responses = try await withThrowingTaskGroup(of: (UInt, String).self) { group in
            for i in 0..<200 {
                group.addTask { try await post(i % 2 == 0 ? aPort : bPort, "/events/shared/registrations", jsonText(["userId": "u\(i)"])) }
            }
            return try await group.reduce(into: [(UInt, String)]()) { $0.append($1) }
        }
        let results = responses.map { ($0.0, (try? JSONSerialization.jsonObject(with: Data($0.1.utf8)) as? [String: Any]) ?? [:]) }
        #expect(results.allSatisfy { $0.0 == 201 })
        #expect(results.filter { $0.1["status"] as? String == "confirmed" }.count == 50)
        #expect(Set(results.compactMap { $0.1["position"] as? Int }) == Set(1...150))

        // 25 confirmed leave at once through both instances: exactly the 25 oldest waitlisted move up.
        let confirmed = results.filter { $0.1["status"] as? String == "confirmed" }.compactMap { $0.1["userId"] as? String }
        try await withThrowingTaskGroup(of: UInt.self) { group in
            for (i, user) in confirmed.prefix(25).enumerated() {
                group.addTask {
                    var request = HTTPClientRequest(url: "http://127.0.0.1:\(i % 2 == 0 ? aPort : bPort)/events/shared/registrations/\(user)")
                    request.method = .DELETE
                    return try await HTTPClient.shared.execute(request, timeout: .seconds(60)).status.code
                }
            }
            for try await status in group { #expect(status == 200) }
        }
        let oldest = results.filter { ($0.1["position"] as? Int ?? .max) <= 25 }.compactMap { $0.1["userId"] as? String }
        let list = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(b.port)/events/shared/registrations?status=confirmed"), timeout: .seconds(60))
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(buffer: try await list.body.collect(upTo: 1 << 20))) as? [[String: Any]])
        #expect(rows.count == 50)
        #expect(Set(oldest).isSubset(of: Set(rows.compactMap { $0["userId"] as? String })))
    }
}
