import Foundation
import Logging

/// Every setting of the server, resolved once at start from flags, then `HEADCOUNT_*` variables, then defaults.
public struct Configuration: Sendable {
    public var host: String
    public var port: Int
    public var database: DatabaseLocation
    public var dataDirectory: String
    public var objectStore: ObjectStoreLocation
    /// nil: read or generate `<data-dir>/admin.key` at start.
    public var adminKey: String?
    public var maxBodySize: Int
    public var logLevel: Logger.Level
    /// How often `/api/stream` sends a heartbeat comment (and so notices a client that left).
    public var streamHeartbeat: Duration = .seconds(15)

    /// The settings, by flag name (`host`, `port`, `database`, `data-dir`, `object-store`, `admin-key`,
    /// `max-body-size`, `log-level`), with their environment variables.
    public static let settings: [(flag: String, env: String)] = [
        ("host", "HEADCOUNT_HOST"), ("port", "HEADCOUNT_PORT"), ("database", "HEADCOUNT_DATABASE"),
        ("data-dir", "HEADCOUNT_DATA_DIR"), ("object-store", "HEADCOUNT_OBJECT_STORE"),
        ("admin-key", "HEADCOUNT_ADMIN_KEY"), ("max-body-size", "HEADCOUNT_MAX_BODY_SIZE"),
        ("log-level", "HEADCOUNT_LOG_LEVEL"),
    ]

    /// Resolves flags (given by flag name) over environment variables over defaults.
    public static func resolve(flags: [String: String], environment: [String: String]) throws(ConfigurationError) -> Configuration {
        func value(_ flag: String) -> String? {
            if let v = flags[flag] { return v }
            let env = settings.first { $0.flag == flag }!.env
            return environment[env].flatMap { $0.isEmpty ? nil : $0 }
        }
        let dataDirectory = value("data-dir") ?? "headcount-data"
        guard !dataDirectory.isEmpty else {
            throw ConfigurationError("--data-dir is empty; give a directory, e.g. --data-dir headcount-data")
        }
        let host = value("host") ?? "127.0.0.1"
        let portText = value("port") ?? "8080"
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw ConfigurationError("--port '\(portText)' is not a port number; use 0-65535, e.g. --port 8080")
        }
        let database = try DatabaseLocation.parse(value("database") ?? "sqlite://\(dataDirectory)/headcount.sqlite")
        let objectStore = try ObjectStoreLocation.parse(value("object-store") ?? "file://\(dataDirectory)/objects")
        let adminKey = value("admin-key")
        if let adminKey, adminKey.count < 16 {
            throw ConfigurationError("--admin-key is too short (\(adminKey.count) characters); use at least 16")
        }
        let sizeText = value("max-body-size") ?? "1MiB"
        guard let maxBodySize = ByteSize.parse(sizeText), maxBodySize >= 1024 else {
            throw ConfigurationError("--max-body-size '\(sizeText)' is not a size of at least 1KiB; use e.g. 1MiB, 512KiB or 1048576")
        }
        let levelText = value("log-level") ?? "info"
        guard let logLevel = Logger.Level(rawValue: levelText.lowercased()) else {
            throw ConfigurationError("--log-level '\(levelText)' is unknown; use trace, debug, info, notice, warning, error or critical")
        }
        return Configuration(
            host: host, port: port, database: database, dataDirectory: dataDirectory, objectStore: objectStore,
            adminKey: adminKey, maxBodySize: maxBodySize, logLevel: logLevel
        )
    }
}

/// A bad setting: one line saying what, why and how to fix it.
public struct ConfigurationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum DatabaseLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(url: String)

    public static func parse(_ text: String) throws(ConfigurationError) -> DatabaseLocation {
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            guard let url = URL(string: text), url.host != nil else {
                throw ConfigurationError("--database '\(text)' is not a PostgreSQL URL; use postgres://user:pass@host:5432/db")
            }
            return .postgres(url: text)
        }
        var path = text
        if path.hasPrefix("sqlite://") { path.removeFirst("sqlite://".count) }
        if path.contains("://") {
            throw ConfigurationError("--database '\(text)' has an unknown scheme; use sqlite://path.sqlite, a bare path, or postgres://user:pass@host:5432/db")
        }
        guard !path.isEmpty else {
            throw ConfigurationError("--database '\(text)' names no file; use e.g. sqlite://headcount-data/headcount.sqlite")
        }
        return .sqlite(path: path)
    }
}

public enum ObjectStoreLocation: Sendable, Equatable {
    case file(root: String)

    public static func parse(_ text: String) throws(ConfigurationError) -> ObjectStoreLocation {
        guard text.hasPrefix("file://") else {
            throw ConfigurationError("--object-store '\(text)' is not supported; use file://<directory>")
        }
        let root = String(text.dropFirst("file://".count))
        guard !root.isEmpty else {
            throw ConfigurationError("--object-store '\(text)' names no directory; use e.g. file://headcount-data/objects")
        }
        return .file(root: root)
    }
}

enum ByteSize {
    /// Parses `1048576`, `512KiB`, `1MiB`, `8MB` (decimal units are read as binary ones).
    static func parse(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30), ("K", 1 << 10), ("M", 1 << 20), ("B", 1)]
        for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
            guard let n = Int(trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), n >= 0 else { return nil }
            return n.multipliedReportingOverflow(by: factor).overflow ? nil : n * factor
        }
        return Int(trimmed)
    }
}
