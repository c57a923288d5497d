import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// Turns every thrown error into a JSON error body. Unexpected errors become a 500 that names
/// the request id and nothing else; their cause goes to the log.
struct ErrorMiddleware: RouterMiddleware {
    let routes: RouteTable

    func handle(_ request: Request, context: AppRequestContext, next: (Request, AppRequestContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try json(ErrorBody(message: error.message, fields: error.fields, reason: error.reason), status: error.status)
        } catch let error as HTTPError {
            if error.status == .notFound, let allowed = routes.methods(for: request.uri.path), !allowed.isEmpty {
                var response = try Self.response(.methodNotAllowed, "method \(request.method.rawValue) is not allowed here")
                response.headers[.allow] = allowed.map(\.rawValue).sorted().joined(separator: ", ")
                return response
            }
            let message = error.status == .notFound ? "no route for \(request.method.rawValue) \(request.uri.path)" : (error.body ?? error.status.reasonPhrase)
            return try Self.response(error.status, message)
        } catch let error as DatabaseUnavailable {
            // Not carried out (or, if the database went away while committing, of unknown outcome);
            // the engine says once when the database goes and comes back, so each refusal is a debug line.
            context.logger.debug("database unavailable", metadata: ["reason": "\(error.reason)"])
            var response = try Self.response(.serviceUnavailable, "database unavailable; retry in a few seconds")
            response.headers[.retryAfter] = "2"
            return response
        } catch is NIOTooManyBytesError {
            return try Self.response(.contentTooLarge, "request body is larger than \(context.maxUploadSize) bytes")
        } catch let error as HTTPParserError {
            // The body broke off or was malformed mid-way (a bad chunk size): the client's fault,
            // and the connection cannot be read further.
            var response = try Self.response(.badRequest, "malformed request body (\(error))")
            response.headers[.connection] = "close"
            return response
        } catch is CancellationError {
            // Shutting down: the request was given up on.
            var response = try Self.response(.serviceUnavailable, "shutting down; retry on another instance or shortly")
            response.headers[.retryAfter] = "2"
            return response
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
