import Crypto
import Foundation

/// Standard Webhooks signing: a `whsec_` secret encodes the key's bytes in base64, and a message
/// is signed `v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">`.
enum WebhookSecret {
    static let prefix = "whsec_"

    /// A new secret of 32 random bytes.
    static func generate() -> String {
        prefix + SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString()
    }

    /// The `webhook-signature` value for one secret; nil for a secret that is not `whsec_<base64>`.
    static func signature(secret: String, id: String, timestamp: Int64, body: String) -> String? {
        guard secret.hasPrefix(prefix), let key = Data(base64Encoded: String(secret.dropFirst(prefix.count))), !key.isEmpty else { return nil }
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(id).\(timestamp).\(body)".utf8), using: SymmetricKey(data: key))
        return "v1," + Data(mac).base64EncodedString()
    }
}

/// Webhook secrets at rest: sealed with AES-GCM under a key derived from the server's secret key,
/// so that a copy of the database alone cannot sign as Headcount.
struct SecretBox: Sendable {
    private let key: SymmetricKey

    init(secretKey: String) {
        key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: Data(secretKey.utf8)), info: Data("headcount webhook secrets v1".utf8), outputByteCount: 32)
    }

    func seal(_ secret: String) throws -> String {
        try AES.GCM.seal(Data(secret.utf8), using: key).combined!.base64EncodedString()
    }

    /// nil when this server's key did not seal it (instances must share the secret key).
    func open(_ sealed: String) -> String? {
        guard let data = Data(base64Encoded: sealed), let box = try? AES.GCM.SealedBox(combined: data),
            let plain = try? AES.GCM.open(box, using: key)
        else { return nil }
        return String(data: plain, encoding: .utf8)
    }
}
