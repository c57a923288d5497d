import Foundation
import SQLKit

struct SyncResult: Encodable, Sendable {
    struct Synced: Encodable, Sendable {
        let local_id: Int64
        let server_id: Int64
        let synced_at: Int64
    }
    struct Conflict: Encodable, Sendable {
        let local_id: Int64
        let reason: String
        let message: String
        let existing_record: StoredRecord
    }
    struct Failure: Encodable, Sendable {
        let local_id: Int64
        let error: String
        let message: String
    }

    let success = true
    var synced_count = 0
    var synced_records: [Synced] = []
    var conflicts: [Conflict] = []
    var errors: [Failure] = []
}

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

    /// Takes the tenant's lock and the stamp its next change must exceed: the later of its last
    /// stamp and the server's clock, so stamps read like epoch milliseconds yet only ever grow,
    /// and are handed out in commit order.
    private static func lockTenant(_ tenant: String, now: Int64, db: any SQLDatabase) async throws -> Int64 {
        let last =
            try await db.raw(
                """
                UPDATE tenants SET change_ms = change_ms WHERE tenant_id = \(bind: tenant) RETURNING change_ms
                """
            ).first()?.decode(column: "change_ms", as: Int64.self) ?? 0
        return max(last, milliseconds(now))
    }

    private static func saveStamp(_ stamp: Int64, tenant: String, db: any SQLDatabase) async throws {
        try await db.raw("UPDATE tenants SET change_ms = \(bind: stamp) WHERE tenant_id = \(bind: tenant)").run()
    }

    /// Stores a device's records, each judged on its own: replays answer their first `server_id`,
    /// a record of the same employee within ±30 s (inclusive) of a stored one is a conflict.
    func sync(_ records: [SyncRecord], device: Device) async throws -> SyncResult {
        let now = Timestamp.now().microseconds
        return try await database.transaction(publishingTo: feed, sharing: "tenant:\(device.tenant)") { db, changes in
            var stamp = try await Self.lockTenant(device.tenant, now: now, db: db)
            var result = SyncResult()
            defer {
                changes.publish(
                    .attendanceSync,
                    [
                        "tenant_id": JSONValue.string(device.tenant), "device_id": .string(device.id), "synced_count": .int(Int64(result.synced_records.count)),
                        "conflicts": .int(Int64(result.conflicts.count)), "errors": .int(Int64(result.errors.count)),
                    ])
            }
            let valid = records.filter { $0.problem(device: device.id, nowMs: milliseconds(now)) == nil }
            for record in records {
                if let problem = record.problem(device: device.id, nowMs: milliseconds(now)) {
                    result.errors.append(.init(local_id: record.localID, error: problem.code, message: problem.message))
                }
            }
            guard !valid.isEmpty else { return result }

            var replayed: [Int64: (Int64, Int64)] = [:]
            for row in try await db.raw(
                """
                SELECT local_id, server_id, synced_us FROM attendance_records
                WHERE device_id = \(bind: device.id) AND local_id IN (\(binds: valid.map(\.localID)))
                """
            ).all() {
                replayed[try row.decode(column: "local_id", as: Int64.self)] =
                    (try row.decode(column: "server_id", as: Int64.self), milliseconds(try row.decode(column: "synced_us", as: Int64.self)))
            }
            let window = SyncRecord.duplicateWindowMs
            let nearby = try await db.raw(
                """
                SELECT \(StoredRecord.columns) FROM attendance_records
                WHERE tenant_id = \(bind: device.tenant) AND deleted_us IS NULL AND employee_id IN (\(binds: Array(Set(valid.map(\.employeeID)))))
                    AND timestamp_ms BETWEEN \(bind: valid.map(\.timestamp).min()! - window) AND \(bind: valid.map(\.timestamp).max()! + window)
                """
            ).all().map(StoredRecord.init)

            var fresh: [SyncRecord] = []
            var seenLocal = Set<Int64>()
            // Conflicts with a record of this same request, answered once it has its server id.
            var pendingConflicts: [(record: SyncRecord, existing: SyncRecord, change: Int64)] = []
            for record in valid {
                if let (serverID, syncedAt) = replayed[record.localID] {
                    result.synced_records.append(.init(local_id: record.localID, server_id: serverID, synced_at: syncedAt))
                    continue
                }
                guard seenLocal.insert(record.localID).inserted else {
                    result.errors.append(.init(local_id: record.localID, error: "DUPLICATE_LOCAL_ID", message: "local_id appears twice in this request"))
                    continue
                }
                let close = { (employee: String, timestamp: Int64) in employee == record.employeeID && abs(timestamp - record.timestamp) <= window }
                if let existing = nearby.first(where: { close($0.employee_id, $0.timestamp) }) {
                    result.conflicts.append(Self.conflict(record, existing))
                    continue
                }
                if let (index, existing) = fresh.enumerated().first(where: { close($0.element.employeeID, $0.element.timestamp) }) {
                    pendingConflicts.append((record, existing, stamp - Int64(fresh.count - 1 - index)))
                    continue
                }
                stamp += 1
                fresh.append(record)
            }
            if !fresh.isEmpty {
                let rows = fresh.enumerated().map { offset, r -> SQLQueryString in
                    let live: Int64? = r.livenessPassed.map { $0 ? 1 : 0 }
                    return """
                        (\(bind: device.tenant), \(bind: device.id), \(bind: r.localID), \(bind: r.employeeID), \(bind: r.type), \(bind: r.timestamp), \
                        \(bind: r.confidence), \(bind: live), \(bind: r.createdAt), \(bind: now), \(bind: stamp - Int64(fresh.count - 1 - offset)))
                        """
                }
                let stored = try await db.raw(
                    """
                    INSERT INTO attendance_records (tenant_id, device_id, local_id, employee_id, type, timestamp_ms, confidence,
                        liveness_passed, created_ms, synced_us, change_ms)
                    VALUES \(rows.joined(separator: ", ")) RETURNING local_id, server_id
                    """
                ).all()
                var serverIDs: [Int64: Int64] = [:]
                for row in stored {
                    serverIDs[try row.decode(column: "local_id", as: Int64.self)] = try row.decode(column: "server_id", as: Int64.self)
                }
                for record in fresh {
                    result.synced_records.append(.init(local_id: record.localID, server_id: serverIDs[record.localID]!, synced_at: milliseconds(now)))
                    let created: [String: JSONValue] = [
                        "tenant_id": .string(device.tenant), "device_id": .string(device.id), "server_id": .int(serverIDs[record.localID]!),
                        "local_id": .int(record.localID), "employee_id": .string(record.employeeID), "type": .string(record.type), "timestamp": .int(record.timestamp),
                    ]
                    changes.send(OutboundEvent(.attendanceRecordCreated, created, deviceID: device.id))
                }
                for (record, existing, change) in pendingConflicts {
                    result.conflicts.append(Self.conflict(record, StoredRecord(existing, serverID: serverIDs[existing.localID]!, change: change)))
                }
                try await Self.saveStamp(stamp, tenant: device.tenant, db: db)
            }
            try await db.raw("UPDATE devices SET last_sync_us = \(bind: now) WHERE device_id = \(bind: device.id)").run()
            result.synced_count = result.synced_records.count
            return result
        }
    }

    private static func conflict(_ record: SyncRecord, _ existing: StoredRecord) -> SyncResult.Conflict {
        .init(
            local_id: record.localID, reason: "DUPLICATE_TIMESTAMP",
            message: "employee \(record.employeeID) already has a record within 30 seconds", existing_record: existing)
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
            try await Self.saveStamp(stamp, tenant: tenant, db: db)
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

extension StoredRecord {
    /// A record stored by this same request.
    init(_ record: SyncRecord, serverID: Int64, change: Int64) {
        server_id = serverID
        employee_id = record.employeeID
        type = record.type
        timestamp = record.timestamp
        device_id = record.deviceID
        action = "CREATED"
        deleted_by_admin_id = nil
        deletion_reason = nil
        self.change = change
    }
}
