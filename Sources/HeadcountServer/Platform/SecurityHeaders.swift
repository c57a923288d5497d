import HTTPTypes
import Hummingbird

/// Headers that keep a browser from reading an answer as something it is not: `nosniff` on every
/// answer, and on all but Headcount's own pages (dashboard, docs) a policy under which nothing runs,
/// so a served object (a worker image, a CSV log) cannot act as a page, whatever bytes it holds.
struct SecurityHeaders: RouterMiddleware {
    static let lockedDown = "default-src 'none'; frame-ancestors 'none'; sandbox"

    func handle(_ request: Request, context: AppRequestContext, next: (Request, AppRequestContext) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.xContentTypeOptions] = "nosniff"
        if !(response.headers[.contentType]?.hasPrefix("text/html") ?? false) {
            response.headers[.contentSecurityPolicy] = Self.lockedDown
        }
        return response
    }
}

extension HTTPField.Name {
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
}
