import ArgumentParser
import Foundation
import HeadcountServer
import Logging

/// Flags shared by every subcommand; each is also read from its `HEADCOUNT_*` variable.
struct Settings: ParsableArguments {
    @Option(help: "Address to listen on (HEADCOUNT_HOST; default 127.0.0.1).") var host: String?
    @Option(help: "Port to listen on (HEADCOUNT_PORT; default 8080).") var port: String?
    @Option(help: "sqlite://path.sqlite, a bare path, or postgres://user:pass@host:5432/db (HEADCOUNT_DATABASE; default sqlite://<data-dir>/headcount.sqlite).") var database:
        String?
    @Option(name: .customLong("data-dir"), help: "Directory for the SQLite file, objects and admin key (HEADCOUNT_DATA_DIR; default headcount-data).") var dataDir: String?
    @Option(
        name: .customLong("object-store"),
        help:
            "file://<directory>, or s3://bucket/prefix with HEADCOUNT_S3_ENDPOINT, HEADCOUNT_S3_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (HEADCOUNT_OBJECT_STORE; default file://<data-dir>/objects)."
    ) var objectStore: String?
    @Option(name: .customLong("admin-key"), help: "Admin key (HEADCOUNT_ADMIN_KEY; default generated into <data-dir>/admin.key).") var adminKey: String?
    @Option(name: .customLong("secret-key"), help: "Key that seals webhook signing secrets at rest (HEADCOUNT_SECRET_KEY; default generated into <data-dir>/secret.key).")
    var secretKey: String?
    @Option(
        name: .customLong("webhook-private-networks"),
        help: "allow or deny webhooks to loopback, link-local and private addresses (HEADCOUNT_WEBHOOK_PRIVATE_NETWORKS; default deny).")
    var webhookPrivateNetworks: String?
    @Option(
        name: .customLong("privacy-k"),
        help: "Reports withhold any figure computed from fewer than this many people, e.g. 5 (HEADCOUNT_PRIVACY_K; default off).")
    var privacyK: String?
    @Option(
        name: .customLong("keep-sensor-events"),
        help: "Days of raw sensor events to keep, or forever; counts, series and reports read the rollups (HEADCOUNT_KEEP_SENSOR_EVENTS; default forever).")
    var keepSensorEvents: String?
    @Option(
        name: .customLong("keep-sensor-minutes"),
        help: "Days of per-minute sensor rows to keep, or forever; at least --keep-sensor-events (HEADCOUNT_KEEP_SENSOR_MINUTES; default forever).")
    var keepSensorMinutes: String?
    @Option(
        name: .customLong("keep-sensor-hours"),
        help: "Days of hourly sensor rows to keep, or forever; at least --keep-sensor-minutes; daily rows stay (HEADCOUNT_KEEP_SENSOR_HOURS; default forever).")
    var keepSensorHours: String?
    @Option(name: .customLong("max-body-size"), help: "Largest JSON body, e.g. 1MiB (HEADCOUNT_MAX_BODY_SIZE; default 1MiB).") var maxBodySize: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (HEADCOUNT_LOG_LEVEL; default info).") var logLevel: String?
    @Option(name: .customLong("idle-timeout"), help: "Close a connection with no request in progress after this long, e.g. 75s (HEADCOUNT_IDLE_TIMEOUT; default 75s).")
    var idleTimeout: String?
    @Option(name: .customLong("header-timeout"), help: "Close a connection whose request head takes longer than this from its first byte (HEADCOUNT_HEADER_TIMEOUT; default 10s).")
    var headerTimeout: String?
    @Option(name: .customLong("body-timeout"), help: "Close a connection whose request body takes longer than this from its head (HEADCOUNT_BODY_TIMEOUT; default 5m).")
    var bodyTimeout: String?
    @Option(
        name: .customLong("cors-origins"),
        help: "Comma-separated browser origins allowed to call admin and device routes, or * (HEADCOUNT_CORS_ORIGINS; default none: same origin only).") var corsOrigins: String?

    func configuration() async throws -> Configuration {
        let flags: [String: String?] = [
            "host": host, "port": port, "database": database, "data-dir": dataDir, "object-store": objectStore,
            "admin-key": adminKey, "max-body-size": maxBodySize, "log-level": logLevel, "idle-timeout": idleTimeout,
            "header-timeout": headerTimeout, "body-timeout": bodyTimeout, "cors-origins": corsOrigins, "secret-key": secretKey,
            "webhook-private-networks": webhookPrivateNetworks, "privacy-k": privacyK,
            "keep-sensor-events": keepSensorEvents, "keep-sensor-minutes": keepSensorMinutes, "keep-sensor-hours": keepSensorHours,
        ]
        return try await exitOnBadSetting {
            try Configuration.resolve(flags: flags.compactMapValues { $0 }, environment: ProcessInfo.processInfo.environment)
        }
    }
}

@main
struct Headcount: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Who, and how many, are where — now and at any past instant.",
        subcommands: [Serve.self, Migrate.self],
        defaultSubcommand: Serve.self
    )
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the server (the default).")
    @OptionGroup var settings: Settings

    func run() async throws {
        let configuration = try await settings.configuration()
        try await exitOnBadSetting { try await serve(configuration) }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply database migrations, then exit.")
    @OptionGroup var settings: Settings

    func run() async throws {
        let configuration = try await settings.configuration()
        var logger = Logger(label: "headcount")
        logger.logLevel = configuration.logLevel
        try await exitOnBadSetting { try await migrate(configuration, logger: logger) }
    }
}

/// A setting found bad while starting (an unusable path, refused database credentials): one
/// line and exit code 2, like a bad flag.
func exitOnBadSetting<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as ConfigurationError {
        FileHandle.standardError.write(Data("headcount: \(error.description)\n".utf8))
        throw ExitCode(2)
    }
}
