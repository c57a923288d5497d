import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Objects in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, moto...), addressed path-style and
/// signed with SigV4. Requests answered with a 5xx or lost to a connection error are retried with
/// exponential backoff; every other answer is final.
public struct S3ObjectStore: ObjectStore {
    let location: S3Location
    private let signer: SigV4
    private let http: HTTPClient
    /// Keys asked for per list request (S3 answers at most 1,000).
    var pageSize = 1000
    var attempts = 4
    var firstBackoff: Duration = .milliseconds(100)
    /// The largest object read back (worker images are ≤ 5 MiB, room logs a day of one room).
    static let maxObjectBytes = 256 << 20

    /// The process's S3 connections. No redirects (a 301 means a wrong region), and a failed
    /// connection fails its request at once: `send` does the retrying, with backoff.
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(5), read: .seconds(30)))
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    init(_ location: S3Location, http: HTTPClient = client) {
        self.location = location
        self.http = http
        signer = SigV4(accessKey: location.accessKey, secretKey: location.secretKey, sessionToken: location.sessionToken, region: location.region)
    }

    /// The store, once its bucket has answered; else a `ConfigurationError` that says what to fix.
    static func open(_ location: S3Location) async throws -> S3ObjectStore {
        let store = S3ObjectStore(location)
        let status: UInt
        do {
            status = try await store.send("HEAD", key: nil).status
        } catch {
            throw ConfigurationError("the object store \(location) cannot be reached (\(error)); check HEADCOUNT_S3_ENDPOINT")
        }
        switch status {
        case 200: return store
        case 404: throw ConfigurationError("the bucket '\(location.bucket)' does not exist at \(location.endpoint.absoluteString); create it first")
        case 401, 403: throw ConfigurationError("the object store \(location) refused the credentials (\(status)); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        case 301, 307: throw ConfigurationError("the bucket '\(location.bucket)' is in another region (\(status)); set HEADCOUNT_S3_REGION")
        default: throw ConfigurationError("the object store \(location) answered \(status) to a bucket check")
        }
    }

    public func put(_ key: String, _ data: ByteBuffer, contentType: String) async throws {
        let response = try await send("PUT", key: key, body: data, headers: [("Content-Type", contentType)])
        guard response.status == 200 else { throw S3Error("PUT", key, response) }
    }

    public func get(_ key: String) async throws -> ByteBuffer? {
        let response = try await send("GET", key: key)
        switch response.status {
        case 200: return response.body
        case 404: return nil
        default: throw S3Error("GET", key, response)
        }
    }

    public func list(prefix: String) async throws -> [String] {
        var keys: [String] = []
        var continuation: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", location.prefix + prefix), ("max-keys", "\(pageSize)")]
            if let continuation { query.append(("continuation-token", continuation)) }
            let response = try await send("GET", key: nil, query: query)
            guard response.status == 200 else { throw S3Error("LIST", prefix, response) }
            let xml = String(buffer: response.body)
            keys += XMLElements.texts("Key", in: xml).map { String($0.dropFirst(location.prefix.count)) }
            continuation =
                XMLElements.texts("IsTruncated", in: xml).first == "true"
                ? XMLElements.texts("NextContinuationToken", in: xml).first : nil
        } while continuation != nil
        return keys.sorted()
    }

    public func delete(_ key: String) async throws {
        let response = try await send("DELETE", key: key)
        // 404: already gone, which is what was asked.
        guard [200, 204, 404].contains(response.status) else { throw S3Error("DELETE", key, response) }
    }

    struct Response {
        let status: UInt
        let body: ByteBuffer
    }

    /// Sends one signed request for the bucket (`key` nil) or one of its objects, retrying 5xx
    /// answers and connection errors.
    func send(_ method: String, key: String?, query: [(String, String)] = [], body: ByteBuffer? = nil, headers: [(String, String)] = []) async throws -> Response {
        var path = "/" + SigV4.encode(location.bucket)
        if let key {
            _ = try validateObjectKey(key)
            path += "/" + SigV4.encode(location.prefix + key, keepSlash: true)
        }
        let payloadHash = body.map { $0.withUnsafeReadableBytes { SigV4.hexSHA256($0) } } ?? SigV4.hexSHA256([UInt8]())
        var attempt = 1
        var delay = firstBackoff
        while true {
            do {
                let response = try await sendOnce(method, path: path, query: query, body: body, headers: headers, payloadHash: payloadHash)
                if response.status < 500 || attempt == attempts { return response }
            } catch  where attempt < attempts && !(error is CancellationError) {}
            // Full jitter, so instances that failed together do not retry together.
            try await Task.sleep(for: delay * Double.random(in: 0.5...1.5))
            delay *= 2
            attempt += 1
        }
    }

    private func sendOnce(
        _ method: String, path: String, query: [(String, String)], body: ByteBuffer?, headers: [(String, String)], payloadHash: String
    ) async throws -> Response {
        let endpoint = location.endpoint
        let host = endpoint.port.map { "\(endpoint.host!):\($0)" } ?? endpoint.host!
        let queryText = query.map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(separator: "&")
        var request = HTTPClientRequest(url: "\(endpoint.scheme!)://\(host)\(path)" + (queryText.isEmpty ? "" : "?" + queryText))
        request.method = HTTPMethod(rawValue: method)
        request.headers.add(name: "Host", value: host)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        for (name, value) in signer.sign(method: method, host: host, path: path, query: query, payloadHash: payloadHash, date: Date()) {
            request.headers.add(name: name, value: value)
        }
        if let body { request.body = .bytes(body) }
        let response = try await http.execute(request, timeout: .seconds(30))
        let bytes = method == "HEAD" ? ByteBuffer() : try await response.body.collect(upTo: Self.maxObjectBytes)
        return Response(status: response.status.code, body: bytes)
    }
}

/// An answer the store did not expect, with S3's error code when it sent one.
public struct S3Error: Error, CustomStringConvertible {
    public let description: String

    init(_ operation: String, _ key: String, _ response: S3ObjectStore.Response) {
        let code = XMLElements.texts("Code", in: String(buffer: response.body)).first.map { " \($0)" } ?? ""
        description = "S3 \(operation) '\(key)' answered \(response.status)\(code)"
    }
}

/// The text of simple XML elements in S3's answers: enough for `<Key>`, `<Code>` and friends,
/// which hold text only.
enum XMLElements {
    static func texts(_ name: String, in xml: String) -> [String] {
        var texts: [String] = []
        var rest = xml[...]
        while let open = rest.range(of: "<\(name)>"), let close = rest[open.upperBound...].range(of: "</\(name)>") {
            texts.append(unescape(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return texts
    }

    static func unescape(_ text: Substring) -> String {
        guard text.contains("&") else { return String(text) }
        var result = ""
        var rest = text
        while let amp = rest.firstIndex(of: "&") {
            result += rest[..<amp]
            guard let semicolon = rest[amp...].firstIndex(of: ";") else { break }
            let entity = rest[rest.index(after: amp)..<semicolon]
            switch entity {
            case "amp": result += "&"
            case "lt": result += "<"
            case "gt": result += ">"
            case "quot": result += "\""
            case "apos": result += "'"
            default:
                let number = entity.hasPrefix("#x") ? UInt32(entity.dropFirst(2), radix: 16) : entity.hasPrefix("#") ? UInt32(entity.dropFirst()) : nil
                if let number, let scalar = Unicode.Scalar(number) { result.unicodeScalars.append(scalar) } else { result += "&\(entity);" }
            }
            rest = rest[rest.index(after: semicolon)...]
        }
        return result + rest
    }
}
