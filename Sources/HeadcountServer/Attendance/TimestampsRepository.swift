import Foundation
import SQLKit

/// A worker's entry or exit, recorded by an admin (seed 002's timestamps).
struct WorkerTimestamp: Sendable, Encodable {
    let id: String
    let worker_id: String
    let timestamp: Int64
    let event_type: String
}

struct TimestampsRepository: Sendable {
    let database: any Database

    /// Records an entry or exit; nil when there is no such worker.
    func create(worker: String, eventType: String, timestamp: Int64) async throws -> WorkerTimestamp? {
        try await database.transaction { db in
            // The worker's lock: a worker being deleted is either gone or deletes this one too.
            guard try await WorkersRepository.lock(worker, db: db) else { return nil }
            let id = UUID().uuidString.lowercased()
            try await db.raw(
                """
                INSERT INTO worker_timestamps (timestamp_id, worker_id, timestamp_ms, event_type, created_us)
                VALUES (\(bind: id), \(bind: worker), \(bind: timestamp), \(bind: eventType), \(bind: Timestamp.now().microseconds))
                """
            ).run()
            return WorkerTimestamp(id: id, worker_id: worker, timestamp: timestamp, event_type: eventType)
        }
    }

    /// Every timestamp, or one worker's, in time order.
    func timestamps(worker: String?) async throws -> [WorkerTimestamp] {
        try await database.read { db in
            let filter: SQLQueryString = worker.map { "WHERE worker_id = \(bind: $0)" } ?? ""
            return try await db.raw("SELECT \(unsafeRaw: Self.columns) FROM worker_timestamps \(filter) ORDER BY timestamp_ms, timestamp_id")
                .all().map(Self.timestamp)
        }
    }

    func timestamp(_ id: String) async throws -> WorkerTimestamp? {
        try await database.read { db in
            try await db.raw("SELECT \(unsafeRaw: Self.columns) FROM worker_timestamps WHERE timestamp_id = \(bind: id)").first().map(Self.timestamp)
        }
    }

    /// Changes what is given; nil when there is no such timestamp.
    func update(_ id: String, eventType: String?, timestamp: Int64?) async throws -> WorkerTimestamp? {
        try await database.transaction { db in
            try await db.raw(
                """
                UPDATE worker_timestamps SET event_type = COALESCE(CAST(\(bind: eventType) AS TEXT), event_type), timestamp_ms = COALESCE(CAST(\(bind: timestamp) AS BIGINT), timestamp_ms)
                WHERE timestamp_id = \(bind: id) RETURNING \(unsafeRaw: Self.columns)
                """
            ).first().map(Self.timestamp)
        }
    }

    func delete(_ id: String) async throws -> Bool {
        try await database.transaction { db in
            try await db.raw("DELETE FROM worker_timestamps WHERE timestamp_id = \(bind: id) RETURNING timestamp_id").first() != nil
        }
    }

    private static let columns = "timestamp_id, worker_id, timestamp_ms, event_type"

    private static func timestamp(_ row: any SQLRow) throws -> WorkerTimestamp {
        WorkerTimestamp(
            id: try row.decode(column: "timestamp_id", as: String.self),
            worker_id: try row.decode(column: "worker_id", as: String.self),
            timestamp: try row.decode(column: "timestamp_ms", as: Int64.self),
            event_type: try row.decode(column: "event_type", as: String.self)
        )
    }
}
