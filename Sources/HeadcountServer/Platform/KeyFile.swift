import Crypto
import Foundation
import Logging

/// The server's keys: each given in the configuration, or generated once into a file of the data
/// directory (0600). The admin key guards the admin routes; the secret key seals webhook signing
/// secrets at rest. Instances sharing a database must share both (set them in the environment).
enum KeyFile {
    static func admin(_ configuration: Configuration, logger: Logger) throws -> String {
        try resolve(configuration.adminKey, file: "admin.key", flag: "--admin-key", configuration, logger: logger)
    }

    static func secret(_ configuration: Configuration, logger: Logger) throws -> String {
        try resolve(configuration.secretKey, file: "secret.key", flag: "--secret-key", configuration, logger: logger)
    }

    private static func resolve(_ configured: String?, file: String, flag: String, _ configuration: Configuration, logger: Logger) throws -> String {
        if let key = configured { return key }
        let path = URL(fileURLWithPath: configuration.dataDirectory).appendingPathComponent(file).path
        if let data = FileManager.default.contents(atPath: path),
            let key = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines), key.count >= 16
        {
            logger.info("\(flag.dropFirst(2)) is in \(path)")
            return key
        }
        try prepareWritableDirectory(configuration.dataDirectory, setting: "--data-dir")
        let key = randomToken()
        guard FileManager.default.createFile(atPath: path, contents: Data((key + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw ConfigurationError("cannot write the \(flag.dropFirst(2)) to \(path); check that --data-dir is writable, or give \(flag)")
        }
        logger.notice("generated the \(flag.dropFirst(2)) into \(path)")
        return key
    }

    /// 32 random bytes, base64url without padding.
    static func randomToken() -> String {
        let bytes = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        // URL-safe, unpadded (RFC 4648 §5); byte by byte, as it is made for every outbound message.
        let safe = bytes.base64EncodedString().utf8.compactMap { byte -> UInt8? in
            switch byte {
            case UInt8(ascii: "+"): UInt8(ascii: "-")
            case UInt8(ascii: "/"): UInt8(ascii: "_")
            case UInt8(ascii: "="): nil
            default: byte
            }
        }
        return String(decoding: safe, as: UTF8.self)
    }
}
