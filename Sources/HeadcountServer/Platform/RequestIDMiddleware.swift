import HTTPTypes
import Hummingbird

/// Echoes `X-Request-Id` (or makes one), puts it in the log metadata and on the response,
/// and applies the body limit before a byte of an oversized body is read.
struct RequestIDMiddleware: RouterMiddleware {
    let maxBodySize: Int
    /// Larger limits for the few routes that take files, by path.
    var uploadLimits: [String: Int] = [:]

    func handle(_ request: Request, context: AppRequestContext, next: (Request, AppRequestContext) async throws -> Response) async throws -> Response {
        var context = context
        let given = request.headers[.requestID].flatMap { $0.count <= 128 && $0.allSatisfy { $0.isASCII && !$0.isWhitespace } ? $0 : nil }
        context.requestID = given ?? Self.makeID()
        context.logger[metadataKey: "request_id"] = .string(context.requestID)
        // Matched as the router matches paths: `/api/workers/` and `//api/workers` are the same route.
        context.maxUploadSize = uploadLimits["/" + request.uri.path.split(separator: "/").joined(separator: "/")] ?? maxBodySize
        var response: Response
        if let length = request.headers[.contentLength].flatMap(Int.init), length > context.maxUploadSize {
            response = try ErrorMiddleware.response(.contentTooLarge, "request body is larger than \(context.maxUploadSize) bytes")
        } else {
            response = try await next(request, context)
        }
        response.headers[.requestID] = context.requestID
        return response
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
}
