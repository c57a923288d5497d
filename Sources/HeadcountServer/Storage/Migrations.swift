import Logging
import SQLKit

/// A schema change, applied once, in order, on both engines.
struct Migration: Sendable {
    let version: Int
    let name: String
    let statements: @Sendable (any Database) -> [String]
}

/// The versioned schema. Append only: an applied migration is never edited.
public enum Migrations {
    static let all: [Migration] = [
        Migration(version: 1, name: "rooms") { db in [
            // The parent row: every action bumps `seq` under its row lock, so a room's actions
            // are numbered, and timed, in commit order even across instances.
            "CREATE TABLE rooms (room TEXT PRIMARY KEY, seq BIGINT NOT NULL, last_at_us BIGINT NOT NULL)",
            """
            CREATE TABLE room_actions (
                id \(db.serialPrimaryKey),
                room TEXT NOT NULL REFERENCES rooms (room),
                seq BIGINT NOT NULL,
                name TEXT NOT NULL,
                action TEXT NOT NULL CHECK (action IN ('register', 'unregister')),
                at_us BIGINT NOT NULL,
                day TEXT NOT NULL,
                UNIQUE (room, seq)
            )
            """,
            "CREATE INDEX room_actions_by_day ON room_actions (room, day, seq)",
            "CREATE INDEX room_actions_by_time ON room_actions (room, at_us, seq)",
            """
            CREATE TABLE room_occupants (
                room TEXT NOT NULL,
                name TEXT NOT NULL,
                since_us BIGINT NOT NULL,
                seq BIGINT NOT NULL,
                PRIMARY KEY (room, name)
            )
            """,
            "CREATE INDEX room_occupants_by_arrival ON room_occupants (room, seq)",
        ] },
        Migration(version: 2, name: "reservations") { db in [
            // The parent row, locked by bumping `version` before a device's reservations change.
            "CREATE TABLE reservation_devices (device_id TEXT PRIMARY KEY, version BIGINT NOT NULL)",
            """
            CREATE TABLE reservations (
                id \(db.serialPrimaryKey),
                device_id TEXT NOT NULL REFERENCES reservation_devices (device_id),
                start_us BIGINT NOT NULL,
                end_us BIGINT NOT NULL,
                credential TEXT NOT NULL,
                created_us BIGINT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('active', 'replaced')),
                CHECK (end_us > start_us)
            )
            """,
            "CREATE INDEX reservations_by_device ON reservations (device_id, status, start_us)",
        ] },
    ]

    /// Applies every migration not yet applied, in one transaction. On PostgreSQL an advisory lock
    /// makes instances that start together take turns; on SQLite the write gate does.
    public static func run(on database: any Database, logger: Logger) async throws {
        let applied = try await database.transaction { db in
            if database.engine == .postgres {
                try await db.raw("SELECT pg_advisory_xact_lock(4242001)").run()
            }
            try await db.raw("""
                CREATE TABLE IF NOT EXISTS headcount_migrations (
                    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_us BIGINT NOT NULL)
                """).run()
            let done = Set(try await db.raw("SELECT version FROM headcount_migrations").all().map { try $0.decode(column: "version", as: Int.self) })
            var applied: [String] = []
            for migration in all where !done.contains(migration.version) {
                for statement in migration.statements(database) {
                    try await db.raw(SQLQueryString(statement)).run()
                }
                try await db.raw("""
                    INSERT INTO headcount_migrations (version, name, applied_at_us)
                    VALUES (\(bind: migration.version), \(bind: migration.name), \(bind: Timestamp.now().microseconds))
                    """).run()
                applied.append(migration.name)
            }
            return applied
        }
        if !applied.isEmpty {
            logger.info("applied migrations", metadata: ["migrations": "\(applied.joined(separator: ", "))"])
        }
    }
}

/// `headcount migrate`: opens the database, applies pending migrations, closes it.
public func migrate(_ configuration: Configuration, logger: Logger) async throws {
    let database = try await openDatabase(configuration.database, logger: logger)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await database.run() }
        defer { group.cancelAll() }
        try await Migrations.run(on: database, logger: logger)
    }
}
