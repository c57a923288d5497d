import CompressNIO
import Crypto
import HTTPTypes
import Hummingbird

/// What a client may save on a `GET` whose answer is in hand (not a stream: CSV exports and
/// `/api/stream` go out as written): every such answer carries an `ETag` (a digest of its bytes,
/// so it moves exactly when the answer does, on any instance; its gzip form has its own), a
/// matching `If-None-Match` is answered `304 Not Modified` without a body, and a body over 1 KiB
/// goes out gzipped when the client accepts it (compressed once per answer: the same bytes are
/// served from memory by their digest).
struct AnswerEncoding: RouterMiddleware {
    static let compressFrom = 1024
    static let compressed = MemoryCache<String, ByteBuffer>(budget: 16 << 20)

    func handle(_ request: Request, context: AppRequestContext, next: (Request, AppRequestContext) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        guard request.method == .get, response.status == .ok, let length = response.body.contentLength, length > 0 else { return response }
        var body = try await Self.collect(response.body)
        // Each encoding is its own representation, with its own tag; the answer varies by
        // Accept-Encoding whenever it is large enough to be compressed.
        let compressible = body.readableBytes >= Self.compressFrom
        let gzip = compressible && Self.acceptsGzip(request.headers[.acceptEncoding])
        if compressible { response.headers[values: .vary].append("Accept-Encoding") }
        let digest = Self.digest(of: body)
        let tag = "\"" + digest + (gzip ? "-gzip" : "") + "\""
        response.headers[.eTag] = tag
        if let wanted = request.headers[.ifNoneMatch], Self.matches(wanted, tag) {
            // A cache updates its stored headers from a 304: it carries the answer's own (its
            // Content-Type too, so that the page's security policy stays the page's), less the length.
            var headers = response.headers
            headers[.contentLength] = nil
            return Response(status: .notModified, headers: headers)
        }
        if gzip {
            if let held = Self.compressed[digest] {
                body = held
            } else {
                body = try body.compress(with: .gzip())
                Self.compressed.store(body, for: digest, weight: body.capacity)
            }
            response.headers[.contentEncoding] = "gzip"
        }
        response.body = ResponseBody(byteBuffer: body)
        return response
    }

    /// The first 96 bits of the answer's SHA-256 in hex: its strong tag (marked `-gzip` for its
    /// gzip form), and the key of that form in memory.
    static func digest(of body: ByteBuffer) -> String {
        let hex = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for byte in SHA256.hash(data: body.readableBytesView).prefix(12) { text += [hex[Int(byte >> 4)], hex[Int(byte & 15)]] }
        return String(decoding: text, as: UTF8.self)
    }

    /// `If-None-Match`: `*` or a list of tags, weak ones (`W/"…"`) compared by their opaque part.
    static func matches(_ header: String, _ tag: String) -> Bool {
        header.split(separator: ",").contains { candidate in
            let trimmed = candidate.trimmingCharacters(in: .whitespaces)
            return trimmed == "*" || trimmed == tag || trimmed == "W/" + tag
        }
    }

    /// Whether `Accept-Encoding` allows gzip: named with a weight above zero, or, when gzip is not
    /// named, `*` with a weight above zero.
    static func acceptsGzip(_ header: String?) -> Bool {
        guard let header else { return false }
        var (gzip, any): (Double?, Double?) = (nil, nil)
        for item in header.split(separator: ",") {
            let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            let weight = parts.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            if parts.first == "gzip" { gzip = weight } else if parts.first == "*" { any = weight }
        }
        return (gzip ?? any ?? 0) > 0
    }

    /// The bytes of a body that is in hand already (it has a length).
    private static func collect(_ body: ResponseBody) async throws -> ByteBuffer {
        let sink = Sink()
        try await body.write(Collector(sink: sink))
        return sink.buffer
    }

    private final class Sink {
        var buffer = ByteBuffer()
    }

    private struct Collector: ResponseBodyWriter {
        let sink: Sink
        mutating func write(_ buffer: ByteBuffer) async throws {
            var buffer = buffer
            sink.buffer.writeBuffer(&buffer)
        }
        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }
}
