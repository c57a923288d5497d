import AsyncHTTPClient
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

@testable import HeadcountServer

@Suite("Workers and timestamps") struct WorkersTests {
    static let adminKey = "test-admin-key-0123456789"
    static let admin: HTTPFields = [.adminToken: adminKey, .contentType: "application/json"]
    static let boundary = "hc-test-7f3a9c"

    static func jpeg(_ size: Int = 600, seed: UInt8 = 1) -> [UInt8] {
        [0xFF, 0xD8, 0xFF, 0xE0, seed] + [UInt8](repeating: seed &+ 0x40, count: size) + [0xFF, 0xD9]
    }

    static func png(_ size: Int = 400) -> [UInt8] {
        [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    }

    struct Part {
        let name: String
        let filename: String?
        let bytes: [UInt8]
    }

    static func person(_ id: String? = nil, document: String = "CC-1001", email: String = "ana@example.com") -> Part {
        var data = ["document_id": document, "first_name": "Ana", "last_name": "Ríos", "email": email]
        data["id"] = id
        return Part(name: "personal_data_json", filename: nil, bytes: Array(jsonText(data).utf8))
    }

    static func image(_ bytes: [UInt8], _ filename: String = "face.jpg") -> Part {
        Part(name: "images", filename: filename, bytes: bytes)
    }

    static func form(_ parts: [Part]) -> ByteBuffer {
        var body = ByteBuffer()
        for part in parts {
            body.writeString("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(part.name)\"")
            if let filename = part.filename { body.writeString("; filename=\"\(filename)\"\r\nContent-Type: application/octet-stream") }
            body.writeString("\r\n\r\n")
            body.writeBytes(part.bytes)
            body.writeString("\r\n")
        }
        body.writeString("--\(boundary)--\r\n")
        return body
    }

    static let formHeaders: HTTPFields = [.adminToken: adminKey, .contentType: "multipart/form-data; boundary=\(boundary)"]

    static func upload(_ client: any TestClientProtocol, _ parts: [Part], headers: HTTPFields = formHeaders) async throws -> TestResponse {
        try await client.execute(uri: "/api/workers", method: .post, headers: headers, body: form(parts))
    }

    /// The objects stored under the store's `workers/` prefix.
    static func storedImages(_ environment: TestEnvironment) async throws -> [String] {
        try await environment.objects().list(prefix: "workers/")
    }

    @Test(arguments: Engine.available, Store.available)
    func workerLifecycle(engine: Engine, store: Store) async throws {
        let environment = try await TestEnvironment.make(engine, store: store)
        try await environment.withApp { client in
            // Well over the 1 MiB JSON limit, which a form of images does not have.
            let face = Self.jpeg(3 << 19), side = Self.png()
            let created = try await Self.upload(client, [Self.person("w/1"), Self.image(face), Self.image(side, "side.png")])
            #expect(created.status == .created)
            let worker = try created.object()
            #expect(worker["id"] as? String == "w/1")
            #expect(worker["document_id"] as? String == "CC-1001" && worker["last_name"] as? String == "Ríos")
            #expect((worker["created_at"] as? Int64 ?? 0) > 1_700_000_000_000)
            let urls = try #require(worker["image_urls"] as? [String])
            #expect(urls == ["/api/workers/w%2F1/images/1", "/api/workers/w%2F1/images/2"])
            #expect(try await Self.storedImages(environment).count == 2)

            // The images come back byte for byte, typed by their content, to the admin only.
            let first = try await client.get(urls[0], headers: Self.admin)
            #expect(first.status == .ok && first.headers[.contentType] == "image/jpeg" && Array(buffer: first.body) == face)
            let second = try await client.get(urls[1], headers: Self.admin)
            #expect(second.headers[.contentType] == "image/png" && Array(buffer: second.body) == side)
            #expect(try await client.get(urls[0]).status == .unauthorized)
            #expect(try await client.get("/api/workers/w%2F1/images/3", headers: Self.admin).status == .notFound)
            #expect(try await client.get("/api/workers/w%2F1/images/x", headers: Self.admin).status == .notFound)

            #expect(try await client.get("/api/workers").status == .unauthorized)
            let listed = try await client.get("/api/workers", headers: Self.admin)
            #expect((try JSONSerialization.jsonObject(with: Data(buffer: listed.body)) as? [[String: Any]])?.map { $0["id"] as? String } == ["w/1"])
            #expect(try await client.get("/api/workers/w%2F1", headers: Self.admin).object()["email"] as? String == "ana@example.com")

            // PUT changes only what it is given; {} is a 400 and a bad email a 422.
            let put = { (path: String, body: String) in
                try await client.put(path, body, headers: Self.admin)
            }
            let renamed = try await put("/api/workers/w%2F1", #"{"first_name": "  Anabel "}"#)
            #expect(renamed.status == .ok)
            #expect(try renamed.object()["first_name"] as? String == "Anabel")
            #expect(try renamed.object()["email"] as? String == "ana@example.com")
            #expect(try renamed.object()["image_urls"] as? [String] == urls)
            #expect(try await put("/api/workers/w%2F1", "{}").status == .badRequest)
            #expect(try await put("/api/workers/w%2F1", #"{"document_id": "X"}"#).status == .badRequest)
            for bad in ["ana", "ana@", "@x.com", "a b@x.com", "a@x", "a@x..com"] {
                #expect(try await put("/api/workers/w%2F1", jsonText(["email": bad])).status == .unprocessableContent, "\(bad)")
            }
            #expect(try await put("/api/workers/w%2F1", #"{"last_name": null}"#).status == .unprocessableContent)
            #expect(try await put("/api/workers/w%2F1", "{nope").status == .badRequest)
            // The original created junk on a PUT to a missing worker, which broke the list.
            #expect(try await put("/api/workers/ghost", #"{"first_name": "G"}"#).status == .notFound)
            #expect(try await client.get("/api/workers/ghost", headers: Self.admin).status == .notFound)
            let after = try await client.get("/api/workers/w%2F1", headers: Self.admin).object()
            #expect(after["first_name"] as? String == "Anabel" && after["last_name"] as? String == "Ríos")

            // DELETE removes the worker, their images and their timestamps.
            let stamp = try await client.post("/api/timestamps", #"{"worker_id": "w/1", "event_type": "entry"}"#, headers: Self.admin)
            #expect(stamp.status == .created)
            #expect(try await client.delete("/api/workers/w%2F1", headers: Self.admin).status == .noContent)
            #expect(try await Self.storedImages(environment).isEmpty)
            #expect(try await client.get(urls[0], headers: Self.admin).status == .notFound)
            #expect(try await client.get("/api/workers/w%2F1", headers: Self.admin).status == .notFound)
            #expect(try await client.get("/api/timestamps", headers: Self.admin).text == "[]")
            #expect(try await client.delete("/api/workers/w%2F1", headers: Self.admin).status == .notFound)
        }
    }

    @Test(arguments: Engine.available, Store.available)
    func badUploadsStoreNothing(engine: Engine, store: Store) async throws {
        let environment = try await TestEnvironment.make(engine, store: store)
        try await environment.withApp { client in
            #expect(try await Self.upload(client, [Self.person("keep"), Self.image(Self.jpeg())]).status == .created)
            let before = try await Self.storedImages(environment)

            let cases: [(String, [Part], HTTPResponse.Status)] = [
                ("no personal data", [Self.image(Self.jpeg())], .unprocessableContent),
                ("malformed personal data", [Part(name: "personal_data_json", filename: nil, bytes: Array("{no".utf8)), Self.image(Self.jpeg())], .badRequest),
                ("personal data not an object", [Part(name: "personal_data_json", filename: nil, bytes: Array("[1]".utf8)), Self.image(Self.jpeg())], .unprocessableContent),
                ("bad email", [Self.person(email: "not-an-email"), Self.image(Self.jpeg())], .unprocessableContent),
                (
                    "blank name",
                    [
                        Part(name: "personal_data_json", filename: nil, bytes: Array(#"{"document_id": "D", "first_name": " ", "last_name": "R", "email": "a@b.co"}"#.utf8)),
                        Self.image(Self.jpeg()),
                    ], .unprocessableContent
                ),
                ("no images", [Self.person()], .unprocessableContent),
                ("eight images", [Self.person()] + (0..<8).map { Self.image(Self.jpeg(seed: UInt8($0))) }, .unprocessableContent),
                ("a text file", [Self.person(), Self.image(Self.jpeg()), Self.image(Array("hello, not a picture".utf8), "face.jpg")], .unprocessableContent),
                ("a PNG signature and nothing else", [Self.person(), Self.image(Array(Self.png(0)))], .unprocessableContent),
                ("an image over 5 MiB", [Self.person(), Self.image(Self.jpeg(5 << 20))], .contentTooLarge),
                ("an existing id", [Self.person("keep", document: "CC-2"), Self.image(Self.jpeg())], .conflict),
                ("an existing document", [Self.person("other", document: "CC-1001"), Self.image(Self.jpeg())], .conflict),
            ]
            for (name, parts, status) in cases {
                let response = try await Self.upload(client, parts)
                #expect(response.status == status, "\(name): \(response.text)")
                #expect(try response.errorMessage().isEmpty == false)
            }
            var json = Self.formHeaders
            json[.contentType] = "application/json"
            #expect(try await Self.upload(client, [Self.person(), Self.image(Self.jpeg())], headers: json).status == .badRequest)
            var noKey = Self.formHeaders
            noKey[.adminToken] = nil
            #expect(try await Self.upload(client, [Self.person(), Self.image(Self.jpeg())], headers: noKey).status == .unauthorized)
            let truncated = ByteBuffer(string: "--\(Self.boundary)\r\nContent-Disposition: form-data; name=\"images\"\r\n\r\n\u{FF}")
            #expect(try await client.execute(uri: "/api/workers", method: .post, headers: Self.formHeaders, body: truncated).status == .unprocessableContent)

            let listed = try await client.get("/api/workers", headers: Self.admin)
            #expect((try JSONSerialization.jsonObject(with: Data(buffer: listed.body)) as? [[String: Any]])?.map { $0["id"] as? String } == ["keep"])
            #expect(try await Self.storedImages(environment) == before)
        }
    }

    @Test(arguments: Engine.available)
    func timestamps(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            for id in ["w1", "w2"] {
                #expect(try await Self.upload(client, [Self.person(id, document: "D-\(id)"), Self.image(Self.jpeg())]).status == .created)
            }
            let post = { (body: String) in try await client.post("/api/timestamps", body, headers: Self.admin) }
            #expect(try await client.post("/api/timestamps", #"{"worker_id": "w1", "event_type": "entry"}"#).status == .unauthorized)
            let entry = try await post(#"{"worker_id": "w1", "event_type": "entry", "timestamp": 1700000000000}"#)
            #expect(entry.status == .created)
            let stamp = try entry.object()
            let id = try #require(stamp["id"] as? String)
            #expect(stamp["worker_id"] as? String == "w1" && stamp["event_type"] as? String == "entry" && stamp["timestamp"] as? Int64 == 1_700_000_000_000)
            let now = try await post(#"{"worker_id": "w2", "event_type": "exit"}"#).object()
            #expect(abs((now["timestamp"] as? Int64 ?? 0) - Int64(Date().timeIntervalSince1970 * 1000)) < 60_000)

            #expect(try await post(#"{"worker_id": "ghost", "event_type": "entry"}"#).status == .notFound)
            for bad in [
                #"{"worker_id": "w1"}"#, #"{"event_type": "entry"}"#, #"{"worker_id": "w1", "event_type": "lunch"}"#,
                #"{"worker_id": "w1", "event_type": "entry", "timestamp": -5}"#, #"{"worker_id": "w1", "event_type": "entry", "timestamp": "noon"}"#, "[]",
            ] {
                #expect(try await post(bad).status == .unprocessableContent, "\(bad)")
            }
            #expect(try await post("{oops").status == .badRequest)

            let all = try await client.get("/api/timestamps", headers: Self.admin)
            #expect((try JSONSerialization.jsonObject(with: Data(buffer: all.body)) as? [[String: Any]])?.count == 2)
            let mine = try await client.get("/api/timestamps?worker_id=w1", headers: Self.admin)
            #expect((try JSONSerialization.jsonObject(with: Data(buffer: mine.body)) as? [[String: Any]])?.map { $0["id"] as? String } == [id])
            #expect(try await client.get("/api/timestamps/\(id)", headers: Self.admin).object()["event_type"] as? String == "entry")
            #expect(try await client.get("/api/timestamps/nope", headers: Self.admin).status == .notFound)
            #expect(try await client.get("/api/timestamps?worker_id=%00", headers: Self.admin).text == "[]")

            let put = { (path: String, body: String) in
                try await client.put(path, body, headers: Self.admin)
            }
            let changed = try await put("/api/timestamps/\(id)", #"{"event_type": "exit"}"#)
            #expect(try changed.object()["event_type"] as? String == "exit" && changed.object()["timestamp"] as? Int64 == 1_700_000_000_000)
            #expect(try await put("/api/timestamps/\(id)", "{}").status == .badRequest)
            #expect(try await put("/api/timestamps/\(id)", #"{"event_type": "nap"}"#).status == .unprocessableContent)
            #expect(try await put("/api/timestamps/nope", #"{"event_type": "entry"}"#).status == .notFound)
            #expect(try await client.get("/api/timestamps/\(id)", headers: Self.admin).object()["event_type"] as? String == "exit")

            #expect(try await client.delete("/api/timestamps/\(id)", headers: Self.admin).status == .noContent)
            #expect(try await client.delete("/api/timestamps/\(id)", headers: Self.admin).status == .notFound)
            #expect(try await client.get("/api/timestamps?worker_id=w1", headers: Self.admin).text == "[]")
        }
    }

    /// Ten uploads race for one worker id: one wins, and the losers' images are not left behind.
    @Test(arguments: Engine.available, Store.available)
    func oneWorkerPerID(engine: Engine, store: Store) async throws {
        let environment = try await TestEnvironment.make(engine, store: store)
        try await environment.withApp(.live) { client in
            let port = try #require(client.port)
            let bodies = (0..<10).map { Self.form([Self.person("racer", document: "D-\($0)"), Self.image(Self.jpeg(seed: UInt8($0)))]) }
            let results = try await postInParallel(
                port: port, path: "/api/workers", bodies: bodies,
                headers: [
                    ("X-Admin-Token", Self.adminKey), ("Content-Type", "multipart/form-data; boundary=\(Self.boundary)"),
                ])
            #expect(results.filter { $0.status == 201 }.count == 1)
            #expect(results.filter { $0.status == 409 }.count == 9)
            #expect(try await Self.storedImages(environment).count == 1)
        }
    }

    /// Timestamps are added while their worker is deleted: each is either refused as 404 or
    /// deleted with the worker, never a 500 and never left pointing at nobody.
    @Test(arguments: Engine.available)
    func timestampsRaceTheirWorkersDeletion(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            #expect(try await Self.upload(client, [Self.person("leaving"), Self.image(Self.jpeg())]).status == .created)
            let statuses = try await withParallelClient { http in
                try await withThrowingTaskGroup(of: UInt.self) { group in
                    for index in 0..<30 {
                        group.addTask {
                            let admin = [("X-Admin-Token", Self.adminKey)]
                            return index == 10
                                ? try await send(.DELETE, port: port, "/api/workers/leaving", headers: admin, using: http).status
                                : try await send(
                                    .POST, port: port, "/api/timestamps", body: ByteBuffer(string: #"{"worker_id": "leaving", "event_type": "entry"}"#),
                                    headers: admin, using: http
                                ).status
                        }
                    }
                    return try await group.reduce(into: [UInt]()) { $0.append($1) }
                }
            }
            #expect(statuses.filter { $0 == 204 }.count == 1)
            #expect(statuses.allSatisfy { [201, 204, 404].contains($0) }, "\(statuses)")
            #expect(try await client.get("/api/timestamps", headers: Self.admin).text == "[]")
        }
    }
}
