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
    /// Seals webhook signing secrets at rest; nil: read or generate `<data-dir>/secret.key` at start.
    public var secretKey: String?
    /// Whether webhooks may be sent to loopback, link-local and private addresses (off: a webhook
    /// cannot be used to reach internal services).
    public var webhooksReachPrivateNetworks = false
    /// Reports withhold any figure computed from fewer than this many people; nil: off.
    public var privacyK: Int64?
    /// Days of raw sensor events, minute rows and hour rows kept (day rows are kept forever).
    public var keepSensor = SensorKeep()
    public var maxBodySize: Int
    public var logLevel: Logger.Level
    /// A connection with no request in progress is closed after this long.
    public var idleTimeout: Duration
    /// A request's head must have arrived this long after its first byte, or its connection is closed.
    public var headerTimeout: Duration
    /// A request's body must have arrived this long after its head, or its connection is closed.
    public var bodyTimeout: Duration
    /// Browser origins that may call the admin and device routes (`*`: any); none by default, so
    /// only pages served by Headcount itself can. Public routes answer any origin.
    public var corsOrigins: [String]
    /// How often `/api/stream` sends a heartbeat comment (and so notices a client that left).
    public var streamHeartbeat: Duration = .seconds(15)

    /// The settings, by flag name, with their environment variables.
    public static let settings: [(flag: String, env: String)] = [
        ("host", "HEADCOUNT_HOST"), ("port", "HEADCOUNT_PORT"), ("database", "HEADCOUNT_DATABASE"),
        ("data-dir", "HEADCOUNT_DATA_DIR"), ("object-store", "HEADCOUNT_OBJECT_STORE"),
        ("admin-key", "HEADCOUNT_ADMIN_KEY"), ("max-body-size", "HEADCOUNT_MAX_BODY_SIZE"),
        ("log-level", "HEADCOUNT_LOG_LEVEL"), ("idle-timeout", "HEADCOUNT_IDLE_TIMEOUT"),
        ("header-timeout", "HEADCOUNT_HEADER_TIMEOUT"), ("body-timeout", "HEADCOUNT_BODY_TIMEOUT"), ("cors-origins", "HEADCOUNT_CORS_ORIGINS"),
        ("secret-key", "HEADCOUNT_SECRET_KEY"), ("webhook-private-networks", "HEADCOUNT_WEBHOOK_PRIVATE_NETWORKS"),
        ("privacy-k", "HEADCOUNT_PRIVACY_K"), ("keep-sensor-events", "HEADCOUNT_KEEP_SENSOR_EVENTS"),
        ("keep-sensor-minutes", "HEADCOUNT_KEEP_SENSOR_MINUTES"), ("keep-sensor-hours", "HEADCOUNT_KEEP_SENSOR_HOURS"),
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
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw ConfigurationError("--port '\(portText)' is not a port number; use 1-65535, e.g. --port 8080")
        }
        let database = try DatabaseLocation.parse(value("database") ?? "sqlite://\(dataDirectory)/headcount.sqlite")
        let objectStore = try ObjectStoreLocation.parse(value("object-store") ?? "file://\(dataDirectory)/objects", environment: environment)
        let adminKey = value("admin-key"), secretKey = value("secret-key")
        for (flag, key) in [("admin-key", adminKey), ("secret-key", secretKey)] {
            if let key, key.count < 16 { throw ConfigurationError("--\(flag) is too short (\(key.count) characters); use at least 16") }
        }
        let privateText = value("webhook-private-networks") ?? "deny"
        guard ["allow", "deny"].contains(privateText) else {
            throw ConfigurationError("--webhook-private-networks '\(privateText)' is neither allow nor deny")
        }
        /// A setting that is `none` (nil) or a number in `range` of `unit`.
        func number(_ flag: String, none: String, _ range: ClosedRange<Int>, of unit: String, example: Int) throws(ConfigurationError) -> Int? {
            let text = value(flag) ?? none
            guard text != none else { return nil }
            guard let number = Int(text), range.contains(number) else {
                throw ConfigurationError(
                    "--\(flag) '\(text)' is neither \(none) nor a number of \(unit) from \(range.lowerBound) to \(range.upperBound); use e.g. --\(flag) \(example)")
            }
            return number
        }
        let privacyK = try number("privacy-k", none: "off", 2...1000, of: "people", example: 5).map(Int64.init)
        let keepSensor = SensorKeep(
            events: try number("keep-sensor-events", none: "forever", 1...36_500, of: "days", example: 400),
            minutes: try number("keep-sensor-minutes", none: "forever", 1...36_500, of: "days", example: 800),
            hours: try number("keep-sensor-hours", none: "forever", 1...36_500, of: "days", example: 1600))
        // A finer kind never outlives a coarser one: a minute's row is rebuilt from its events when a
        // late one comes, an hour's from its minutes.
        for (finer, coarser, days, longer) in [
            ("events", "minutes", keepSensor.events, keepSensor.minutes), ("minutes", "hours", keepSensor.minutes, keepSensor.hours),
        ] {
            guard let longer else { continue }
            guard let days, days <= longer else {
                throw ConfigurationError(
                    "--keep-sensor-\(coarser) \(longer) needs --keep-sensor-\(finer) of at most \(longer) days (a row is rebuilt from the \(finer) it sums); e.g. --keep-sensor-\(finer) \(longer / 2)"
                )
            }
        }
        let sizeText = value("max-body-size") ?? "1MiB"
        guard let maxBodySize = ByteSize.parse(sizeText), maxBodySize >= 1024 else {
            throw ConfigurationError("--max-body-size '\(sizeText)' is not a size of at least 1KiB; use e.g. 1MiB, 512KiB or 1048576")
        }
        let levelText = value("log-level") ?? "info"
        guard let logLevel = Logger.Level(rawValue: levelText.lowercased()) else {
            throw ConfigurationError("--log-level '\(levelText)' is unknown; use trace, debug, info, notice, warning, error or critical")
        }
        func timeout(_ flag: String, default text: String) throws(ConfigurationError) -> Duration {
            let given = value(flag) ?? text
            guard let duration = parseDuration(given), duration >= .milliseconds(100), duration <= .seconds(86_400) else {
                throw ConfigurationError("--\(flag) '\(given)' is not a duration from 100ms to 24h; use e.g. 75s, 2m or 500ms")
            }
            return duration
        }
        let idleTimeout = try timeout("idle-timeout", default: "75s")
        let headerTimeout = try timeout("header-timeout", default: "10s")
        let bodyTimeout = try timeout("body-timeout", default: "5m")
        var corsOrigins: [String] = []
        for origin in (value("cors-origins") ?? "").split(separator: ",") { corsOrigins.append(try CORSPolicy.origin(String(origin))) }
        var configuration = Configuration(
            host: host, port: port, database: database, dataDirectory: dataDirectory, objectStore: objectStore,
            adminKey: adminKey, secretKey: secretKey, webhooksReachPrivateNetworks: privateText == "allow", maxBodySize: maxBodySize,
            logLevel: logLevel, idleTimeout: idleTimeout, headerTimeout: headerTimeout, bodyTimeout: bodyTimeout, corsOrigins: corsOrigins
        )
        configuration.privacyK = privacyK
        configuration.keepSensor = keepSensor
        return configuration
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
            guard let url = URLComponents(string: text), let host = url.host, !host.isEmpty else {
                throw ConfigurationError("--database '\(redacted(text))' is not a PostgreSQL URL; use postgres://user:pass@host:5432/db")
            }
            // Foundation reads any digits as a port, and a socket address keeps only 16 bits of it.
            if let port = url.port, !(1...65535).contains(port) {
                throw ConfigurationError("--database '\(redacted(text))' has port \(port); use 1-65535, e.g. postgres://user:pass@host:5432/db")
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

/// A database URL fit for a log line: any password replaced by `***`.
func redacted(_ url: String) -> String {
    guard var components = URLComponents(string: url), components.password != nil else { return url }
    components.password = "***"
    return components.string ?? url
}

public enum ObjectStoreLocation: Sendable, Equatable {
    case file(root: String)
    case s3(S3Location)

    /// `file://<directory>`, or `s3://bucket[/prefix]` with the endpoint, region and credentials
    /// read from `HEADCOUNT_S3_ENDPOINT`, `HEADCOUNT_S3_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and (optional) `AWS_SESSION_TOKEN`.
    public static func parse(_ text: String, environment: [String: String] = [:]) throws(ConfigurationError) -> ObjectStoreLocation {
        if text.hasPrefix("s3://") { return .s3(try S3Location.parse(text, environment: environment)) }
        guard text.hasPrefix("file://") else {
            throw ConfigurationError("--object-store '\(text)' is not supported; use file://<directory> or s3://bucket/prefix")
        }
        let root = String(text.dropFirst("file://".count))
        guard !root.isEmpty else {
            throw ConfigurationError("--object-store '\(text)' names no directory; use e.g. file://headcount-data/objects")
        }
        return .file(root: root)
    }
}

/// An S3-compatible bucket, addressed path-style (`<endpoint>/<bucket>/<prefix><key>`), which every
/// S3-compatible server understands.
public struct S3Location: Sendable, Equatable, CustomStringConvertible {
    public var endpoint: URL
    public var region: String
    public var bucket: String
    /// Empty, or ends with `/`.
    public var prefix: String
    public var accessKey: String
    public var secretKey: String
    public var sessionToken: String?

    /// Never the secret.
    public var description: String { "s3://\(bucket)/\(prefix) at \(endpoint.absoluteString)" }

    static func parse(_ text: String, environment: [String: String]) throws(ConfigurationError) -> S3Location {
        func env(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let path = text.dropFirst("s3://".count)
        let bucket = String(path.prefix { $0 != "/" })
        // S3's bucket naming rules: 3-63 lowercase letters, digits, dots and hyphens.
        guard (3...63).contains(bucket.count),
            bucket.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "." || $0 == "-") }),
            bucket.first!.isLetter || bucket.first!.isNumber
        else {
            throw ConfigurationError("--object-store '\(text)' has no valid bucket name (3-63 lowercase letters, digits, dots, hyphens); use e.g. s3://headcount/prod")
        }
        let prefixPath = path.dropFirst(bucket.count).split(separator: "/").joined(separator: "/")
        let region = env("HEADCOUNT_S3_REGION") ?? env("AWS_REGION") ?? "us-east-1"
        let endpointText = env("HEADCOUNT_S3_ENDPOINT") ?? "https://s3.\(region).amazonaws.com"
        guard let endpoint = URL(string: endpointText), ["http", "https"].contains(endpoint.scheme ?? ""), endpoint.host != nil,
            endpoint.path.isEmpty || endpoint.path == "/", endpoint.query == nil
        else {
            throw ConfigurationError("HEADCOUNT_S3_ENDPOINT '\(endpointText)' is not an http(s) URL without a path; use e.g. http://127.0.0.1:9000")
        }
        guard let accessKey = env("AWS_ACCESS_KEY_ID"), let secretKey = env("AWS_SECRET_ACCESS_KEY") else {
            throw ConfigurationError("--object-store \(text) needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        }
        return S3Location(
            endpoint: endpoint, region: region, bucket: bucket, prefix: prefixPath.isEmpty ? "" : prefixPath + "/",
            accessKey: accessKey, secretKey: secretKey, sessionToken: env("AWS_SESSION_TOKEN")
        )
    }
}

/// Parses `75s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
func parseDuration(_ text: String) -> Duration? {
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("", 1000)]
    for (suffix, milliseconds) in units where trimmed.hasSuffix(suffix) {
        guard let n = Int64(trimmed.dropLast(suffix.count)), (0...86_400_000).contains(n) else { return nil }
        return .milliseconds(n * milliseconds)
    }
    return nil
}

enum ByteSize {
    /// Parses `1048576`, `512KiB`, `1MiB`, `8MB` (decimal units are read as binary ones).
    static func parse(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Int)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30), ("K", 1 << 10), ("M", 1 << 20), ("B", 1),
        ]
        for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
            guard let n = Int(trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), n >= 0 else { return nil }
            return n.multipliedReportingOverflow(by: factor).overflow ? nil : n * factor
        }
        return Int(trimmed)
    }
}
