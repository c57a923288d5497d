import Foundation
import HTTPTypes
import Hummingbird

/// Cross-origin requests. Public routes answer any origin, as the originals did. Admin and device
/// routes act with a key, and so does the stream's attendance topic, so a browser may call them
/// only from the origins `--cors-origins` names (none by default: pages Headcount serves itself,
/// which need no CORS). A preflight is answered here, before routing.
struct CORSPolicy: RouterMiddleware {
    /// Origins allowed on admin and device routes; `*` allows any.
    let credentialedOrigins: Set<String>

    /// Paths that take the admin key or a device token, by their first two components.
    static let credentialedAreas: Set<[Substring]> = [
        ["api", "admin"], ["api", "devices"], ["api", "attendance"], ["api", "audit"], ["api", "workers"], ["api", "timestamps"],
    ]
    static let publicHeaders = "Accept, Content-Type, Origin, X-Request-Id, Last-Event-ID"
    static let credentialedHeaders = publicHeaders + ", Authorization, X-Admin-Token, X-Tenant-ID"

    static func isCredentialed(_ request: Request) -> Bool {
        let uri = request.uri
        let area = Array(uri.path.split(separator: "/").prefix(2))
        if area == ["api", "stream"] {
            return uri.queryParameters["topics"]?.contains("attendance") == true || uri.queryParameters["admin_key"] != nil
        }
        return credentialedAreas.contains(area)
    }

    func handle(_ request: Request, context: AppRequestContext, next: (Request, AppRequestContext) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin] else { return try await next(request, context) }
        var headers = HTTPFields()
        let allowedHeaders: String
        if Self.isCredentialed(request) {
            headers[.vary] = "Origin"
            guard credentialedOrigins.contains("*") || (try? Self.origin(origin)).map(credentialedOrigins.contains) == true else {
                // No grant: the browser keeps the answer from the page.
                if request.method == .options { return Response(status: .noContent, headers: headers) }
                var response = try await next(request, context)
                response.headers.append(contentsOf: headers)
                return response
            }
            headers[.accessControlAllowOrigin] = origin
            allowedHeaders = Self.credentialedHeaders
        } else {
            headers[.accessControlAllowOrigin] = "*"
            allowedHeaders = Self.publicHeaders
        }
        if request.method == .options {
            headers[.accessControlAllowMethods] = "GET, POST, PUT, DELETE, OPTIONS"
            headers[.accessControlAllowHeaders] = allowedHeaders
            headers[.accessControlMaxAge] = "600"
            return Response(status: .noContent, headers: headers)
        }
        var response = try await next(request, context)
        headers[.accessControlExposeHeaders] = "X-Request-Id"
        response.headers.append(contentsOf: headers)
        return response
    }

    /// An origin as browsers serialise it (`scheme://host[:port]`, lower case, no default port),
    /// from a `--cors-origins` entry or an `Origin` header; `*` stays `*`.
    static func origin(_ text: String) throws(ConfigurationError) -> String {
        let origin = text.trimmingCharacters(in: .whitespaces)
        if origin == "*" { return origin }
        guard let url = URLComponents(string: origin), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
            let host = url.host?.lowercased(), !host.isEmpty, url.path.isEmpty || url.path == "/", url.query == nil, url.fragment == nil, url.user == nil
        else {
            throw ConfigurationError("--cors-origins: '\(origin)' is not an origin; use scheme://host[:port] (e.g. https://admin.example.com), comma-separated, or *")
        }
        let port = url.port.flatMap { $0 == (scheme == "https" ? 443 : 80) ? nil : $0 }
        return "\(scheme)://\(host)" + (port.map { ":\($0)" } ?? "")
    }
}
