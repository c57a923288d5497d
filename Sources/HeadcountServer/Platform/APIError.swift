import Hummingbird

/// The one error type routes throw. The error middleware turns it into
/// `{"error": message, "detail": message, "fields"?: [...], "reason"?: code}`: both message keys,
/// because the originals' clients read `error` (rooms, reservations) or `detail` (sensors,
/// attendance, events); `reason` is a machine-readable code where a client branches on the cause.
public struct APIError: Error, Sendable {
    public struct FieldError: Codable, Sendable, Equatable {
        public let field: String
        public let message: String
    }

    public let status: HTTPResponse.Status
    public let message: String
    public let fields: [FieldError]?
    public let reason: String?

    public init(_ status: HTTPResponse.Status, _ message: String, fields: [FieldError]? = nil, reason: String? = nil) {
        self.status = status
        self.message = message
        self.fields = fields
        self.reason = reason
    }

    public static func badRequest(_ message: String) -> APIError { .init(.badRequest, message) }
    public static func notFound(_ message: String = "not found") -> APIError { .init(.notFound, message) }
    public static func conflict(_ message: String) -> APIError { .init(.conflict, message) }
    /// A 422 for one field at fault.
    public static func invalid(_ field: String, _ message: String) -> APIError {
        .init(.unprocessableContent, message, fields: [.init(field: field, message: message)])
    }
}

struct ErrorBody: Encodable {
    let error: String
    let detail: String
    let fields: [APIError.FieldError]?
    let reason: String?
    let requestId: String?

    init(message: String, fields: [APIError.FieldError]? = nil, reason: String? = nil, requestId: String? = nil) {
        self.error = message
        self.detail = message
        self.fields = fields
        self.reason = reason
        self.requestId = requestId
    }
}
