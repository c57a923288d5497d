import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// Turns every thrown error into a JSON error body. Unexpected errors become a 500 that names
/// the request id and nothing else; their cause goes to the log.
struct ErrorMiddleware: RouterMiddleware {
    let routes: RouteTable

    func handle(_ request: Request, context: AppRequestContext, next: (Request, AppRequestContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try Self.response(error.status, error.message, fields: error.fields)
        } catch let error as HTTPError {
            if error.status == .notFound, let allowed = routes.methods(for: request.uri.path), !allowed.isEmpty {
                var response = try Self.response(.methodNotAllowed, "method \(request.method.rawValue) is not allowed here")
                response.headers[.allow] = allowed.map(\.rawValue).sorted().joined(separator: ", ")
                return response
            }
            let message = error.status == .notFound ? "no route for \(request.method.rawValue) \(request.uri.path)" : (error.body ?? error.status.reasonPhrase)
            return try Self.response(error.status, message)
        } catch is NIOTooManyBytesError {
            return try Self.response(.contentTooLarge, "request body is larger than \(context.maxUploadSize) bytes")
        } catch {
            context.logger.error("unexpected error", metadata: ["error": "\(String(reflecting: error))"])
            return try json(
                ErrorBody(message: "internal error (request id \(context.requestID))", requestId: context.requestID),
                status: .internalServerError
            )
        }
    }

    static func response(_ status: HTTPResponse.Status, _ message: String, fields: [APIError.FieldError]? = nil) throws -> Response {
        try json(ErrorBody(message: message, fields: fields), status: status)
    }
}

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
        context.maxUploadSize = uploadLimits[request.uri.path] ?? maxBodySize
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
