import Foundation
import SQLKit

/// A stored attendance record as devices and admins see it; `action` is its latest change.
struct StoredRecord: Encodable, Sendable {
    let server_id: Int64
    let employee_id: String
    let type: String
    let timestamp: Int64
    let device_id: String
    let action: String
    let deleted_by_admin_id: String?
    let deletion_reason: String?
    let change: Int64
    /// In an admin's listing: when the stale policy of the device's place closed this entry.
    var closed_by_policy_at: String?

    static let columns: SQLQueryString = "server_id, employee_id, type, timestamp_ms, device_id, change_ms, deleted_us, deleted_reason"

    enum CodingKeys: String, CodingKey {
        case server_id, employee_id, type, timestamp, device_id, action, deleted_by_admin_id, deletion_reason, closed_by_policy_at
    }

    init(row: any SQLRow) throws {
        server_id = try row.decode(column: "server_id", as: Int64.self)
        employee_id = try row.decode(column: "employee_id", as: String.self)
        type = try row.decode(column: "type", as: String.self)
        timestamp = try row.decode(column: "timestamp_ms", as: Int64.self)
        device_id = try row.decode(column: "device_id", as: String.self)
        change = try row.decode(column: "change_ms", as: Int64.self)
        let deleted = try row.decode(column: "deleted_us", as: Int64?.self) != nil
        action = deleted ? "DELETED" : "CREATED"
        deleted_by_admin_id = deleted ? "admin" : nil
        deletion_reason = deleted ? try row.decode(column: "deleted_reason", as: String?.self) : nil
    }
}

/// Attendance records, their change feed and audits.
struct RecordsRepository: Sendable {
    let database: any Database
    let feed: ChangeFeed
    /// A tenant's syncs, decided together: each locks the tenant's row for its change stamps.
    let syncing: RowBatcher<(records: [SyncRecord], device: Device), SyncResult>

    init(database: any Database, feed: ChangeFeed) {
        self.database = database
        self.feed = feed
        // Ten syncs of 100 records keep every statement of a batch well inside both engines'
        // limits on bound parameters (11 a record in the insert).
        syncing = RowBatcher(maxBatch: 10) { tenant, syncs in try await Self.sync(syncs, tenant: tenant, database: database, feed: feed) }
    }

    /// Takes the tenant's lock and the stamp its next change must exceed: the later of its last
    /// stamp and the server's clock, so stamps read like epoch milliseconds yet only ever grow,
    /// and are handed out in commit order.
    static func lockTenant(_ tenant: String, now: Int64, db: any SQLDatabase) async throws -> Int64 {
        let last =
            try await db.raw(
                """
                UPDATE tenants SET change_ms = change_ms WHERE tenant_id = \(bind: tenant) RETURNING change_ms
                """
            ).first()?.decode(column: "change_ms", as: Int64.self) ?? 0
        return max(last, milliseconds(now))
    }

    static func saveStamp(_ stamp: Int64, tenant: String) -> SQLQueryString {
        "UPDATE tenants SET change_ms = \(bind: stamp) WHERE tenant_id = \(bind: tenant)"
    }

    /// The tenant's changes stamped after `since`, oldest first, at most `limit`, and whether more follow.
    func updates(tenant: String, since: Int64, limit: Int) async throws -> (records: [StoredRecord], more: Bool) {
        let rows = try await database.read { db in
            try await db.raw(
                """
                SELECT \(StoredRecord.columns) FROM attendance_records WHERE tenant_id = \(bind: tenant) AND change_ms > \(bind: since)
                ORDER BY change_ms LIMIT \(literal: limit + 1)
                """
            ).all().map(StoredRecord.init)
        }
        return (Array(rows.prefix(limit)), rows.count > limit)
    }

    /// Soft-deletes a tenant's record, as a new change devices will see; false if there is none.
    func delete(serverID: Int64, tenant: String, reason: String?) async throws -> Bool {
        let now = Timestamp.now().microseconds
        return try await database.transaction(publishingTo: feed, sharing: "tenant:\(tenant)") { db, changes in
            let stamp = try await Self.lockTenant(tenant, now: now, db: db) + 1
            guard
                let row = try await db.raw(
                    """
                    SELECT deleted_us, device_id FROM attendance_records WHERE server_id = \(bind: serverID) AND tenant_id = \(bind: tenant)
                    """
                ).first()
            else { return false }
            let change: [String: JSONValue] = ["tenant_id": .string(tenant), "server_id": .int(serverID)]
            changes.publish(.attendanceDeleted, change)
            guard try row.decode(column: "deleted_us", as: Int64?.self) == nil else { return true }
            changes.send(OutboundEvent(.attendanceRecordDeleted, change, deviceID: try row.decode(column: "device_id", as: String.self)))
            try await db.raw(
                """
                UPDATE attendance_records SET deleted_us = \(bind: now), deleted_reason = \(bind: reason), change_ms = \(bind: stamp)
                WHERE server_id = \(bind: serverID)
                """
            ).run()
            try await db.raw(Self.saveStamp(stamp, tenant: tenant)).run()
            return true
        }
    }

    /// A tenant's live records with `from <= timestamp < to` (epoch ms), in time order; with a
    /// cursor, those after it, and at most `limit`.
    func records(tenant: String, from: Int64, to: Int64, after cursor: (timestamp: Int64, serverID: Int64)? = nil, limit: Int? = nil) async throws -> [StoredRecord] {
        try await database.read { db in
            let after: SQLQueryString =
                cursor.map {
                    " AND (timestamp_ms > \(bind: $0.timestamp) OR (timestamp_ms = \(bind: $0.timestamp) AND server_id > \(bind: $0.serverID)))"
                } ?? ""
            let page: SQLQueryString = limit.map { " LIMIT \(literal: $0)" } ?? ""
            return try await db.raw(
                """
                SELECT \(StoredRecord.columns) FROM attendance_records WHERE tenant_id = \(bind: tenant) AND deleted_us IS NULL
                    AND timestamp_ms >= \(bind: from) AND timestamp_ms < \(bind: to)\(after) ORDER BY timestamp_ms, server_id\(page)
                """
            ).all().map(StoredRecord.init)
        }
    }

    /// Stores audits once per (device, local_id); returns each one's server id and sync time.
    func syncAudits(_ audits: [(localID: Int64, body: String)], device: Device) async throws -> [SyncResult.Synced] {
        let now = Timestamp.now().microseconds
        return try await database.transaction { db in
            let rows = audits.map { a -> SQLQueryString in
                "(\(bind: device.tenant), \(bind: device.id), \(bind: a.localID), \(bind: a.body), \(bind: now))"
            }
            try await db.raw(
                """
                INSERT INTO attendance_audits (tenant_id, device_id, local_id, body, synced_us) VALUES \(rows.joined(separator: ", "))
                ON CONFLICT (device_id, local_id) DO NOTHING
                """
            ).run()
            var stored: [Int64: SyncResult.Synced] = [:]
            for row in try await db.raw(
                """
                SELECT local_id, server_id, synced_us FROM attendance_audits
                WHERE device_id = \(bind: device.id) AND local_id IN (\(binds: audits.map(\.localID)))
                """
            ).all() {
                let local = try row.decode(column: "local_id", as: Int64.self)
                stored[local] = .init(
                    local_id: local, server_id: try row.decode(column: "server_id", as: Int64.self),
                    synced_at: milliseconds(try row.decode(column: "synced_us", as: Int64.self)))
            }
            try await db.raw("UPDATE devices SET last_sync_us = \(bind: now) WHERE device_id = \(bind: device.id)").run()
            return audits.compactMap { stored[$0.localID] }
        }
    }
}
