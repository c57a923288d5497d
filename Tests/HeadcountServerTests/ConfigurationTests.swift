import Foundation
import Testing

@testable import HeadcountServer

@Suite("Configuration") struct ConfigurationTests {
    @Test func defaults() throws {
        let c = try Configuration.resolve(flags: [:], environment: [:])
        #expect(c.host == "127.0.0.1" && c.port == 8080)
        #expect(c.database == .sqlite(path: "headcount-data/headcount.sqlite"))
        #expect(c.objectStore == .file(root: "headcount-data/objects"))
        #expect(c.dataDirectory == "headcount-data")
        #expect(c.adminKey == nil)
        #expect(c.maxBodySize == 1 << 20)
        #expect(c.logLevel == .info)
        #expect(c.keepSensor == SensorKeep())
        #expect(try Configuration.resolve(flags: ["keep-sensor-events": "400"], environment: [:]).keepSensor == SensorKeep(events: 400))
        #expect(try Configuration.resolve(flags: [:], environment: ["HEADCOUNT_KEEP_SENSOR_EVENTS": "30"]).keepSensor == SensorKeep(events: 30))
        let all = try Configuration.resolve(
            flags: ["keep-sensor-events": "30", "keep-sensor-hours": "400"], environment: ["HEADCOUNT_KEEP_SENSOR_MINUTES": "30"])
        #expect(all.keepSensor == SensorKeep(events: 30, minutes: 30, hours: 400))
    }

    @Test func flagsWinOverEnvironmentWhichWinsOverDefaults() throws {
        let environment = [
            "HEADCOUNT_PORT": "9000", "HEADCOUNT_HOST": "0.0.0.0", "HEADCOUNT_DATA_DIR": "/var/lib/hc",
            "HEADCOUNT_DATABASE": "postgres://u:p@db:5432/hc", "HEADCOUNT_MAX_BODY_SIZE": "512KiB", "HEADCOUNT_LOG_LEVEL": "DEBUG",
        ]
        let c = try Configuration.resolve(flags: ["port": "9100"], environment: environment)
        #expect(c.port == 9100 && c.host == "0.0.0.0")
        #expect(c.database == .postgres(url: "postgres://u:p@db:5432/hc"))
        #expect(c.objectStore == .file(root: "/var/lib/hc/objects"), "the object store follows the data directory")
        #expect(c.maxBodySize == 512 << 10)
        #expect(c.logLevel == .debug)
        #expect(try Configuration.resolve(flags: ["database": "/tmp/x.sqlite"], environment: [:]).database == .sqlite(path: "/tmp/x.sqlite"))
        #expect(try Configuration.resolve(flags: ["database": "sqlite:///abs/h.sqlite"], environment: [:]).database == .sqlite(path: "/abs/h.sqlite"))
    }

    @Test func s3ObjectStoresTakeTheirEndpointAndCredentialsFromTheEnvironment() throws {
        let credentials = ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret"]
        let aws = try Configuration.resolve(flags: ["object-store": "s3://hc-logs"], environment: credentials)
        #expect(
            aws.objectStore
                == .s3(
                    S3Location(
                        endpoint: URL(string: "https://s3.us-east-1.amazonaws.com")!, region: "us-east-1", bucket: "hc-logs", prefix: "",
                        accessKey: "AKID", secretKey: "secret")))
        let local = try Configuration.resolve(
            flags: [:],
            environment: credentials.merging([
                "HEADCOUNT_OBJECT_STORE": "s3://hc-logs//prod/eu/", "HEADCOUNT_S3_ENDPOINT": "http://127.0.0.1:9000",
                "HEADCOUNT_S3_REGION": "eu-west-1", "AWS_SESSION_TOKEN": "token",
            ]) { $1 })
        guard case .s3(let s3) = local.objectStore else {
            Issue.record("not S3")
            return
        }
        #expect(s3.endpoint.absoluteString == "http://127.0.0.1:9000" && s3.region == "eu-west-1")
        #expect(s3.prefix == "prod/eu/" && s3.sessionToken == "token")
        #expect(!"\(s3)".contains("secret"), "the secret is never printed")
    }

    @Test(arguments: [
        ("s3://Bad_Bucket", ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"], "no valid bucket name"),
        ("s3://hc-data", ["AWS_ACCESS_KEY_ID": "a"], "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        ("s3://hc-data", ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "HEADCOUNT_S3_ENDPOINT": "ftp://x"], "HEADCOUNT_S3_ENDPOINT 'ftp://x'"),
        ("s3://hc-data", ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "HEADCOUNT_S3_ENDPOINT": "http://h/path"], "without a path"),
    ])
    func badS3SettingsSayWhatAndHow(store: String, environment: [String: String], expected: String) {
        #expect {
            _ = try Configuration.resolve(flags: ["object-store": store], environment: environment)
        } throws: { error in
            let text = (error as? ConfigurationError)?.description ?? ""
            return text.contains(expected) && !text.contains("\n")
        }
    }

    @Test(arguments: [
        ("port", "eighty", "--port 'eighty'"), ("port", "70000", "--port '70000'"), ("port", "0", "use 1-65535"), ("port", "-1", "use 1-65535"),
        // Ports wrap to 16 bits in a socket address: 99999 would have reached port 34463.
        ("database", "postgres://u:secret@db:99999/x", "has port 99999; use 1-65535"), ("database", "postgres://u@db:0/x", "has port 0"),
        ("database", "postgresql://u@db:121968/x", "has port 121968"),
        ("database", "mysql://x", "unknown scheme"), ("database", "postgres://", "not a PostgreSQL URL"),
        ("object-store", "ftp://x", "not supported"), ("admin-key", "short", "too short"),
        ("max-body-size", "lots", "--max-body-size 'lots'"), ("max-body-size", "10", "at least 1KiB"),
        ("log-level", "loud", "--log-level 'loud' is unknown"),
        ("keep-sensor-events", "0", "from 1 to 36500"), ("keep-sensor-events", "36501", "from 1 to 36500"), ("keep-sensor-events", "90d", "neither forever"),
        ("keep-sensor-hours", "0", "from 1 to 36500"),
        // A finer kind never outlives a coarser one (keep-sensor-events is 60 in these cases).
        ("keep-sensor-minutes", "59", "--keep-sensor-minutes 59 needs --keep-sensor-events of at most 59 days"),
        ("keep-sensor-hours", "90", "--keep-sensor-hours 90 needs --keep-sensor-minutes of at most 90 days"),
    ])
    func badSettingsSayWhatAndHow(flag: String, value: String, expected: String) {
        #expect {
            _ = try Configuration.resolve(flags: [flag: value], environment: ["HEADCOUNT_KEEP_SENSOR_EVENTS": "60"])
        } throws: { error in
            let text = (error as? ConfigurationError)?.description ?? ""
            return text.contains(expected) && !text.contains("\n") && !text.contains("secret")
        }
    }

    /// The binary stops at once, with one line and exit code 2, on a bad setting.
    @Test func theBinaryExitsWithCode2OnABadSetting() throws {
        let (status, output) = try runBinary(["serve", "--port", "nope"])
        #expect(status == 2)
        #expect(output == "headcount: --port 'nope' is not a port number; use 1-65535, e.g. --port 8080\n")
    }

    /// Paths that cannot be used are bad settings too, said in one line, not as Foundation's or
    /// SQLite's error codes.
    @Test(arguments: [
        ("database is a directory", "is a directory; give a SQLite file in it"),
        ("database is not a database", "file is not a database"),
        ("database under a file", "is a file"),
        ("data dir is a file", "is a file"),
        ("data dir under a file", "is a file"),
    ])
    func theBinaryExitsWithCode2OnAnUnusablePath(situation: String, expected: String) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("headcount-paths-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("file.txt")
        try Data("not a database, just some text that is long enough for SQLite to read a header from it..........".utf8).write(to: file)
        let data = directory.appendingPathComponent("data").path
        let arguments: [String] =
            switch situation {
            case "database is a directory": ["--database", directory.path, "--data-dir", data]
            case "database is not a database": ["--database", file.path, "--data-dir", data]
            case "database under a file": ["--database", file.path + "/headcount.sqlite", "--data-dir", data]
            case "data dir is a file": ["--data-dir", file.path]
            default: ["--data-dir", file.path + "/data"]
            }
        let (status, output) = try runBinary(["serve", "--admin-key", "test-admin-key-0123456789", "--port", "1"] + arguments)
        #expect(status == 2, "\(output)")
        #expect(output.hasPrefix("headcount: ") && output.contains(expected), "\(output)")
        #expect(output.filter { $0 == "\n" }.count == 1, "one line: \(output)")
    }

    /// Runs the built binary with no environment; its exit status and standard error.
    func runBinary(_ arguments: [String]) throws -> (Int32, String) {
        let binary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/headcount")
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build the binary first: swift build")
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.environment = [:]
        let stderr = Pipe()
        process.standardError = stderr
        process.standardOutput = Pipe()
        try process.run()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }
}
