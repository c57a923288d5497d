import AsyncHTTPClient
import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import PostgresNIO
import Synchronization
import Testing

@testable import HeadcountServer

/// The engines every storage-touching test runs on. PostgreSQL comes from
/// `HEADCOUNT_TEST_POSTGRES_URL`; in CI (`CI=true`) a missing server fails the run instead of skipping.
enum Engine: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres

    var testDescription: String { rawValue }

    static let postgresURL = ProcessInfo.processInfo.environment["HEADCOUNT_TEST_POSTGRES_URL"]
    static let available: [Engine] =
        postgresURL != nil || ProcessInfo.processInfo.environment["CI"] != nil ? [.sqlite, .postgres] : [.sqlite]
}

struct MissingPostgres: Error, CustomStringConvertible {
    var description: String { "HEADCOUNT_TEST_POSTGRES_URL is not set: start one with scripts/dev-postgres" }
}

/// The object stores the tests of objects (room logs, worker images) run on. S3 is the server
/// `scripts/dev-s3` starts (`HEADCOUNT_S3_ENDPOINT`, `HEADCOUNT_TEST_S3_BUCKET`, AWS credentials);
/// in CI (`CI=true`) a missing one fails the run instead of skipping.
enum Store: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case file, s3

    var testDescription: String { rawValue }

    static let s3Bucket = ProcessInfo.processInfo.environment["HEADCOUNT_TEST_S3_BUCKET"]
    static let available: [Store] =
        s3Bucket != nil || ProcessInfo.processInfo.environment["CI"] != nil ? [.file, .s3] : [.file]

    /// A location of its own in the test bucket, under a fresh prefix.
    static func freshS3Location() throws -> ObjectStoreLocation {
        guard let bucket = s3Bucket else { throw MissingS3() }
        return try ObjectStoreLocation.parse("s3://\(bucket)/test-\(UUID().uuidString.lowercased())", environment: ProcessInfo.processInfo.environment)
    }
}

struct MissingS3: Error, CustomStringConvertible {
    var description: String { "HEADCOUNT_TEST_S3_BUCKET is not set: start an S3 server with eval \"$(scripts/dev-s3)\"" }
}

/// A fresh, empty database, data directory and object store for one test.
struct TestEnvironment: Sendable {
    let engine: Engine
    var configuration: Configuration
    let directory: URL

    static func make(_ engine: Engine, store: Store = .file) async throws -> TestEnvironment {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("headcount-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let database: String
        switch engine {
        case .sqlite:
            database = "sqlite://\(directory.path)/headcount.sqlite"
        case .postgres:
            guard let base = Engine.postgresURL else { throw MissingPostgres() }
            database = try await createPostgresDatabase(base: base)
        }
        var configuration = try Configuration.resolve(
            flags: ["database": database, "data-dir": directory.path, "admin-key": "test-admin-key-0123456789", "log-level": "warning"],
            environment: [:]
        )
        if store == .s3 { configuration.objectStore = try Store.freshS3Location() }
        return TestEnvironment(engine: engine, configuration: configuration, directory: directory)
    }

    var objectRoot: URL { directory.appendingPathComponent("objects") }

    /// The environment's object store, opened as the application opens it.
    func objects() async throws -> any ObjectStore { try await openObjectStore(configuration.objectStore) }

    /// The object under `key` as text, nil when there is none.
    func storedText(_ key: String) async throws -> String? {
        try await objects().get(key).map { String(buffer: $0) }
    }

    /// The environment's database, migrated, without an application around it: for writing what
    /// an instance that then died would have written, or reading what no route shows.
    func withDatabase<T: Sendable>(_ body: @Sendable (any Database) async throws -> T) async throws -> T {
        let database = try await openDatabase(configuration.database, logger: Logger(label: "test"))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await database.run() }
            defer { group.cancelAll() }
            try await database.start(migrating: { try await Migrations.run(on: database, logger: Logger(label: "test")) }, waitForServer: true)
            return try await body(database)
        }
    }

    /// Builds the application on this environment and runs `test` against it.
    func withApp<T: Sendable>(_ setup: TestingSetup = .router, _ test: @Sendable (any TestClientProtocol) async throws -> T) async throws -> T {
        let app = try await buildApplication(configuration)
        return try await app.test(setup, test)
    }
}

/// Creates a uniquely named database on the server at `base` and returns its URL.
func createPostgresDatabase(base: String) async throws -> String {
    guard var components = URLComponents(string: base), let host = components.host else { throw MissingPostgres() }
    let name = "hc_test_\(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16))"
    let configuration = PostgresClient.Configuration(
        host: host, port: components.port ?? 5432, username: components.user ?? "postgres",
        password: components.password, database: String(components.path.dropFirst()), tls: .disable
    )
    let client = PostgresClient(configuration: configuration)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await client.run() }
        defer { group.cancelAll() }
        try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
    }
    components.path = "/\(name)"
    return components.string!
}

extension TestClientProtocol {
    func post(_ uri: String, _ body: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        var headers = headers
        headers[.contentType] = headers[.contentType] ?? "application/json"
        return try await execute(uri: uri, method: .post, headers: headers, body: ByteBuffer(string: body))
    }

    func get(_ uri: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await execute(uri: uri, method: .get, headers: headers)
    }

    func put(_ uri: String, _ body: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        var headers = headers
        headers[.contentType] = headers[.contentType] ?? "application/json"
        return try await execute(uri: uri, method: .put, headers: headers, body: ByteBuffer(string: body))
    }

    func delete(_ uri: String, _ body: String? = nil, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await execute(uri: uri, method: .delete, headers: headers, body: body.map { ByteBuffer(string: $0) })
    }
}

extension TestResponse {
    var text: String { String(buffer: body) }

    /// The body as a JSON object.
    func object() throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any], "not a JSON object: \(text)")
    }

    /// The `error` message, after checking that the body is the shared error shape.
    func errorMessage() throws -> String {
        let object = try object()
        let error = try #require(object["error"] as? String, "no error key in \(text)")
        #expect(object["detail"] as? String == error)
        return error
    }
}

/// JSON text for a value (for building request bodies).
func jsonText(_ value: Any) -> String {
    String(data: try! JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed]), encoding: .utf8)!
}

/// An HTTP client with a connection pool large enough to really send requests in parallel.
func withParallelClient<T>(_ body: (HTTPClient) async throws -> T) async throws -> T {
    var configuration = HTTPClient.Configuration()
    configuration.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 32)
    // Requests queue for one of the 32 connections; on two cores busy with other suites (debug
    // builds) the default 10 s wait is not always enough.
    configuration.timeout.connect = .seconds(120)
    let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    do {
        let result = try await body(client)
        try await client.shutdown()
        return result
    } catch {
        try? await client.shutdown()
        throw error
    }
}

/// POSTs every body to `path` on the live server at `port`, all at once; returns the statuses and
/// bodies in the order of `bodies`.
func postInParallel(port: Int, path: String, bodies: [String], headers: [(String, String)] = []) async throws -> [(status: UInt, body: String)] {
    try await postInParallel(port: port, path: path, bodies: bodies.map { ByteBuffer(string: $0) }, headers: headers)
}

func postInParallel(port: Int, path: String, bodies: [ByteBuffer], headers: [(String, String)] = []) async throws -> [(status: UInt, body: String)] {
    try await withParallelClient { http in
        try await withThrowingTaskGroup(of: (Int, UInt, String).self) { group in
            for (index, body) in bodies.enumerated() {
                group.addTask {
                    let response = try await send(.POST, port: port, path, body: body, headers: headers, using: http)
                    return (index, response.status, response.body)
                }
            }
            var results = Array(repeating: (status: UInt(0), body: ""), count: bodies.count)
            for try await (index, status, text) in group { results[index] = (status, text) }
            return results
        }
    }
}

/// One request to the live server at `port` over a real socket; a body is JSON unless `headers`
/// give a `Content-Type`.
func send(
    _ method: HTTPMethod, port: Int, _ path: String, body: ByteBuffer? = nil, headers: [(String, String)] = [],
    using http: HTTPClient = .shared
) async throws -> (status: UInt, body: String) {
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
    request.method = method
    if body != nil, !headers.contains(where: { $0.0.lowercased() == "content-type" }) {
        request.headers.add(name: "Content-Type", value: "application/json")
    }
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    if let body { request.body = .bytes(body) }
    let response = try await http.execute(request, timeout: .seconds(60))
    return (response.status.code, String(buffer: try await response.body.collect(upTo: 16 << 20)))
}

/// Sends `parts` over a raw TCP connection to the live server at `port` (each after its delay),
/// for requests no HTTP client would send, and reads until the server closes the connection or
/// `timeout` passes after the last part. Returns what was read and, if the server closed the
/// connection, when (from connecting).
func rawExchange(port: Int, _ parts: [(after: Duration, bytes: String)], timeout: Duration) async throws -> (text: String, closedAfter: Duration?) {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port) { channel in
        channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
    }
    let start = ContinuousClock.now
    final class Received: Sendable { let text = Mutex("") }
    let received = Received()
    let closedAfter = try await channel.executeThenClose { inbound, outbound in
        try await withThrowingTaskGroup(of: Duration?.self) { group in
            group.addTask {
                for try await buffer in inbound { received.text.withLock { $0 += String(buffer: buffer) } }
                return ContinuousClock.now - start
            }
            group.addTask {
                for part in parts {
                    try await Task.sleep(for: part.after)
                    // The server may already have closed the connection: that is what some tests wait for.
                    try? await outbound.write(ByteBuffer(string: part.bytes))
                }
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }
    return (received.text.withLock { $0 }, closedAfter)
}

extension ChangeFeed {
    /// A feed for repositories used without an application; nobody subscribes.
    static func unheard() -> ChangeFeed { ChangeFeed(logger: Logger(label: "test")) }
}

extension TestResponse {
    /// The body decoded as one of the response types below, as a typed client would read it.
    func decoded<T: Decodable>(as type: T.Type) throws -> T {
        do { return try JSONDecoder().decode(type, from: Data(buffer: body)) } catch {
            Issue.record("not a \(type): \(text)")
            throw error
        }
    }
}

/// Seed 003's event, as clients read it.
struct EventBody: Decodable, Equatable {
    let eventId: String
    let title: String
    let capacity: Int
    let status: String
    let hasWaitlist: Bool
    let confirmedCount: Int
    let waitlistCount: Int
}

/// A registration, as clients read it (`eventTitle` only in a user's list).
struct RegistrationBody: Decodable, Equatable {
    let userId: String
    let eventId: String
    let status: String
    let registeredAt: String
    let position: Int?
    let eventTitle: String?
}
