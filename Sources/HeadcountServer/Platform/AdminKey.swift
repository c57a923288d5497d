import Crypto
import Foundation
import Logging

/// The admin key: given in the configuration, or generated once into `<data-dir>/admin.key` (0600).
enum AdminKey {
    static func resolve(_ configuration: Configuration, logger: Logger) throws -> String {
        if let key = configuration.adminKey { return key }
        let path = URL(fileURLWithPath: configuration.dataDirectory).appendingPathComponent("admin.key").path
        if let data = FileManager.default.contents(atPath: path),
            let key = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines), key.count >= 16
        {
            logger.info("admin key is in \(path)")
            return key
        }
        try prepareWritableDirectory(configuration.dataDirectory, setting: "--data-dir")
        let key = randomToken()
        guard FileManager.default.createFile(atPath: path, contents: Data((key + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw ConfigurationError("cannot write the admin key to \(path); check that --data-dir is writable, or give --admin-key")
        }
        logger.notice("generated an admin key into \(path)")
        return key
    }

    /// 32 random bytes, base64url without padding.
    static func randomToken() -> String {
        let bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        return bytes.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
