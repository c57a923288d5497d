import HTTPTypes
import Hummingbird

/// What wraps every request, outermost: its id (`X-Request-Id` echoed or made, put in the log
/// metadata and on the answer), its body limit (applied before a byte of an oversized body is
/// read), and the headers every answer carries so that a browser never reads it as something it
/// is not: `nosniff`, and on all but Headcount's own pages (dashboard, docs) a policy under which
/// nothing runs, so a served object (a worker image, a CSV log) cannot act as a page whatever
/// bytes it holds. One middleware rather than three: each layer costs every request.
struct RequestEnvelope: RouterMiddleware {
    static let lockedDown = "default-src 'none'; frame-ancestors 'none'; sandbox"

    let maxBodySize: Int
    /// Larger limits for the few routes that take files, by path.
    var uploadLimits: [String: Int] = [:]

    func handle(_ request: Request, context: AppRequestContext, next: (Request, AppRequestContext) async throws -> Response) async throws -> Response {
        var context = context
        let given = request.headers[.requestID].flatMap { $0.count <= 128 && $0.allSatisfy { $0.isASCII && !$0.isWhitespace } ? $0 : nil }
        context.requestID = given ?? Self.makeID()
        context.logger[metadataKey: "request_id"] = .string(context.requestID)
        context.maxUploadSize = uploadLimit(request.uri.path)
        var response: Response
        if let length = request.headers[.contentLength].flatMap(Int.init), length > context.maxUploadSize {
            response = try ErrorMiddleware.response(.contentTooLarge, "request body is larger than \(context.maxUploadSize) bytes")
            // Rather than read and drop the whole declared body.
            response.headers[.connection] = "close"
        } else {
            response = try await next(request, context)
        }
        response.headers[.requestID] = context.requestID
        response.headers[.xContentTypeOptions] = "nosniff"
        if !(response.headers[.contentType]?.hasPrefix("text/html") ?? false) {
            response.headers[.contentSecurityPolicy] = Self.lockedDown
        }
        return response
    }

    /// The body limit of a path, matched as the router matches paths: `/api/workers/` and
    /// `//api/workers` are the same route (spelled so rarely that only then is the path rewritten).
    func uploadLimit(_ path: String) -> Int {
        if let limit = uploadLimits[path] { return limit }
        guard path.hasSuffix("/") || path.contains("//") else { return maxBodySize }
        return uploadLimits["/" + path.split(separator: "/").joined(separator: "/")] ?? maxBodySize
    }

    /// 12 random bytes as 24 hex digits.
    static func makeID() -> String {
        (0..<12).map { _ in
            let byte = UInt8.random(in: .min ... .max)
            return (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }.joined()
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
}
