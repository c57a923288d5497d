import Crypto
import Foundation
import Hummingbird

/// Secrets: stored as SHA-256, compared in constant time.
enum Secret {
    static func sha256Hex(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether two secrets are equal, in a time that does not depend on where they differ
    /// (both are hashed first, so not on their lengths either).
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(SHA256.hash(data: Data(a.utf8))), y = Array(SHA256.hash(data: Data(b.utf8)))
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

extension Request {
    /// The token of `Authorization: Bearer <token>`.
    var bearerToken: String? {
        guard let value = headers[.authorization], value.lowercased().hasPrefix("bearer ") else { return nil }
        let token = value.dropFirst(7).trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    /// Admin routes take the admin key as `X-Admin-Token` or as a bearer token; else 401.
    func requireAdmin(_ key: String) throws {
        guard let given = headers[.adminToken] ?? bearerToken, Secret.equal(given, key) else {
            throw APIError(.unauthorized, "admin key required: send X-Admin-Token or Authorization: Bearer")
        }
    }

    /// The tenant an admin route acts on: `X-Tenant-ID` or `?tenant_id=`; else 400. No tenant has
    /// control characters (and PostgreSQL cannot even compare U+0000), so one with them is a 400 too.
    func adminTenant() throws -> String {
        guard let tenant = headers[.tenantID] ?? uri.queryParameters["tenant_id"].map(String.init), !tenant.isEmpty else {
            throw APIError.badRequest("tenant required: send X-Tenant-ID or ?tenant_id=")
        }
        guard !tenant.hasControlCharacters else { throw APIError.badRequest("tenant must not contain control characters") }
        return tenant
    }
}

extension Request {
    /// The optional `reason` an admin may give with a change: at most 500 characters, ignored when
    /// the body is absent, malformed or the reason holds control characters.
    func reason(context: AppRequestContext) async -> String? {
        guard let text = (try? await validatedObject(context: context))?["reason"]?.stringValue, !text.hasControlCharacters else { return nil }
        return String(text.prefix(500))
    }
}
