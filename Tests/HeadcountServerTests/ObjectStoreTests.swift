import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

@testable import HeadcountServer

/// Both stores keep the same contract; S3 runs against the real S3 API server `scripts/dev-s3`
/// starts, which checks every request's signature.
@Suite("Object stores") struct ObjectStoreTests {
    static func makeStore(_ store: Store) async throws -> any ObjectStore {
        switch store {
        case .file: try FileObjectStore(root: FileManager.default.temporaryDirectory.appendingPathComponent("objects-\(UUID().uuidString)").path)
        case .s3: try await openObjectStore(try Store.freshS3Location())
        }
    }

    @Test(arguments: Store.available)
    func putGetListDelete(store: Store) async throws {
        let objects = try await Self.makeStore(store)
        try await objects.put("2024-01-01-logs.csv", ByteBuffer(string: "a"), contentType: "text/csv")
        try await objects.put("rooms/lab/2024-01-01-logs.csv", ByteBuffer(string: "b"), contentType: "text/csv")
        try await objects.put("with space/é ü+%&=?#.csv", ByteBuffer(string: "c"), contentType: "text/csv")
        try await objects.put("2024-01-01-logs.csv", ByteBuffer(string: "replaced"), contentType: "text/csv")
        #expect(try await objects.get("2024-01-01-logs.csv").map { String(buffer: $0) } == "replaced")
        #expect(try await objects.get("with space/é ü+%&=?#.csv").map { String(buffer: $0) } == "c")
        #expect(try await objects.get("missing") == nil)
        #expect(try await objects.list(prefix: "") == ["2024-01-01-logs.csv", "rooms/lab/2024-01-01-logs.csv", "with space/é ü+%&=?#.csv"])
        #expect(try await objects.list(prefix: "rooms/") == ["rooms/lab/2024-01-01-logs.csv"])
        #expect(try await objects.list(prefix: "with space/é") == ["with space/é ü+%&=?#.csv"])
        try await objects.delete("rooms/lab/2024-01-01-logs.csv")
        try await objects.delete("never-there")
        #expect(try await objects.list(prefix: "rooms/") == [])
        if let files = objects as? FileObjectStore {
            // Writes leave no temporary files behind.
            #expect(try !FileManager.default.contentsOfDirectory(atPath: files.root.path).contains { $0.hasPrefix(".tmp-") })
        }
    }

    /// Over S3's 5 MiB multipart threshold, in one request, byte for byte.
    @Test(arguments: Store.available)
    func largeObjectsRoundTrip(store: Store) async throws {
        let objects = try await Self.makeStore(store)
        // Read and compared in bulk: byte-by-byte loops in a debug build would hold a test thread for seconds.
        let bytes = ByteBuffer(data: try #require(FileHandle(forReadingAtPath: "/dev/urandom")).readData(ofLength: 6 << 20))
        try await objects.put("workers/big.jpg", bytes, contentType: "image/jpeg")
        #expect(try await objects.get("workers/big.jpg") == bytes)
    }

    @Test(arguments: Store.available, ["", "../escape", "a/../../escape", "/absolute", "a//b", "./a", "a/.", "nul\0byte", String(repeating: "k", count: 1025)])
    func invalidKeysAreRefused(store: Store, key: String) async throws {
        let objects = try await Self.makeStore(store)
        await #expect(throws: InvalidObjectKey.self) {
            try await objects.put(key, ByteBuffer(string: "x"), contentType: "text/plain")
        }
        await #expect(throws: InvalidObjectKey.self) { _ = try await objects.get(key) }
        await #expect(throws: InvalidObjectKey.self) { try await objects.delete(key) }
    }

    /// A listing longer than a page is followed to its end; stores under other prefixes of the same
    /// bucket are not seen.
    @Test(.enabled(if: Store.available.contains(.s3)))
    func s3ListingsFollowPagesAndKeepToTheirPrefix() async throws {
        var objects = try #require(try await Self.makeStore(.s3) as? S3ObjectStore)
        objects.pageSize = 2
        let neighbour = try await Self.makeStore(.s3)
        try await neighbour.put("a/0", ByteBuffer(string: "n"), contentType: "text/plain")
        let keys = (1...5).map { "a/\($0) &<>\"'" }
        for key in keys { try await objects.put(key, ByteBuffer(string: key), contentType: "text/plain") }
        #expect(try await objects.list(prefix: "a/") == keys)
        #expect(try await neighbour.list(prefix: "") == ["a/0"])
    }

    @Test(.enabled(if: Store.available.contains(.s3)))
    func s3StartupSaysWhatIsWrong() async throws {
        guard case .s3(let good) = try Store.freshS3Location() else { throw MissingS3() }
        var missingBucket = good
        missingBucket.bucket = "no-such-bucket-\(UUID().uuidString.prefix(8).lowercased())"
        var unreachable = good
        unreachable.endpoint = URL(string: "http://127.0.0.1:9")!
        for (location, says) in [(missingBucket, "does not exist"), (unreachable, "cannot be reached")] {
            let error = await #expect(throws: ConfigurationError.self) { _ = try await openObjectStore(.s3(location)) }
            #expect(error?.description.contains(says) == true, "\(String(describing: error))")
            #expect(error?.description.contains(good.secretKey) == false)
        }
    }

    /// A 5xx is retried with backoff until the server recovers; a 403 is final, and says why, at
    /// startup too. (A stand-in server: moto neither fails on demand nor checks credentials.)
    @Test func s3RetriesServerErrorsOnly() async throws {
        let requests = Mutex(0)
        let router = Router()
        router.put("/flaky/**") { _, _ -> Response in
            requests.withLock {
                $0 += 1
                return $0
            } <= 2 ? Response(status: .serviceUnavailable) : Response(status: .ok)
        }
        router.head("/denied") { _, _ in Response(status: .forbidden) }
        router.put("/denied/**") { _, _ -> Response in
            requests.withLock { $0 += 1 }
            return Response(status: .forbidden, body: .init(byteBuffer: ByteBuffer(string: "<Error><Code>AccessDenied</Code></Error>")))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let endpoint = URL(string: "http://127.0.0.1:\(try #require(client.port))")!
            func store(_ bucket: String) -> S3ObjectStore {
                var store = S3ObjectStore(S3Location(endpoint: endpoint, region: "us-east-1", bucket: bucket, prefix: "", accessKey: "k", secretKey: "s"))
                store.firstBackoff = .milliseconds(5)
                return store
            }
            try await store("flaky").put("a.csv", ByteBuffer(string: "x"), contentType: "text/csv")
            #expect(requests.withLock { $0 } == 3)
            requests.withLock { $0 = 0 }
            let error = await #expect(throws: S3Error.self) { try await store("denied").put("a.csv", ByteBuffer(string: "x"), contentType: "text/csv") }
            #expect(error?.description == "S3 PUT 'a.csv' answered 403 AccessDenied")
            #expect(requests.withLock { $0 } == 1)
            let startup = await #expect(throws: ConfigurationError.self) { _ = try await openObjectStore(.s3(store("denied").location)) }
            #expect(startup?.description.contains("refused the credentials") == true)
        }
    }

    /// The signatures of AWS's published examples ("Signature Calculations for the Authorization
    /// Header" in the S3 API reference).
    @Test func sigV4MatchesAWSExamples() {
        let signer = SigV4(accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", sessionToken: nil, region: "us-east-1")
        let date = Date(timeIntervalSince1970: 1_369_353_600)  // 2013-05-24T00:00:00Z
        let host = "examplebucket.s3.amazonaws.com"
        let empty = SigV4.hexSHA256([UInt8]())
        func authorization(_ method: String, _ path: String, query: [(String, String)] = [], headers: [(String, String)] = [], payloadHash: String = empty) -> String? {
            signer.sign(method: method, host: host, path: path, query: query, headers: headers, payloadHash: payloadHash, date: date)
                .first { $0.0 == "authorization" }?.1
        }
        let credential = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
        #expect(
            authorization("GET", "/test.txt", headers: [("Range", "bytes=0-9")])
                == "\(credential),SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        let body = SigV4.hexSHA256(Array("Welcome to Amazon S3.".utf8))
        #expect(body == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        #expect(
            authorization(
                "PUT", "/" + SigV4.encode("test$file.text", keepSlash: true),
                headers: [("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")], payloadHash: body)
                == "\(credential),SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        )
        #expect(authorization("GET", "/", query: [("lifecycle", "")])?.hasSuffix("Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543") == true)
        #expect(
            authorization("GET", "/", query: [("prefix", "J"), ("max-keys", "2")])?.hasSuffix("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7") == true)
        #expect(SigV4.encode("a b/é~*", keepSlash: true) == "a%20b/%C3%A9~%2A")
    }
}
