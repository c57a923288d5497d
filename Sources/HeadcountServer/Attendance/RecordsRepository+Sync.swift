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

extension RecordsRepository {
    /// Stores a device's records, each judged on its own: replays answer their first `server_id`,
    /// a record of the same employee within ±30 s (inclusive) of a stored one is a conflict.
    /// Syncs of one tenant that arrive together are decided together, each as if alone, in order.
    func sync(_ records: [SyncRecord], device: Device) async throws -> SyncResult {
        try await syncing.ask((records, device), key: device.tenant)
    }

    /// A record's identity for replays.
    private struct Local: Hashable {
        let device: String
        let id: Int64
    }

    /// Decides `syncs` of `tenant` (in arrival order) in one transaction: the tenant's lock, one
    /// read of what each record replays or clashes with (and one more of those records, when
    /// any), one insert. Each is answered as if it ran alone after those before it: a record an
    /// earlier sync of the batch stored is a replay or a conflict for a later one, as it would be
    /// once committed.
    static func sync(
        _ syncs: [(records: [SyncRecord], device: Device)], tenant: String, database: any Database, feed: ChangeFeed
    ) async throws -> [Result<SyncResult, any Error>] {
        let now = Timestamp.now().microseconds
        return try await database.transaction(publishingTo: feed) { db, changes in
            var stamp = try await Self.lockTenant(tenant, now: now, db: db)
            let postgres = database.engine == .postgres
            let valid = syncs.map { sync in sync.records.filter { $0.problem(device: sync.device.id, nowMs: milliseconds(now)) == nil } }
            let all = Array(valid.joined())
            // Per record of `all`: the stored record it replays, or a live one of its employee within
            // the window; and those records, with when they were synced.
            var replays: [Int: Int64] = [:]
            var clashes: [Int: Int64] = [:]
            var found: [Int64: (record: StoredRecord, syncedAt: Int64)] = [:]
            if !all.isEmpty {
                let window = SyncRecord.duplicateWindowMs
                var keys = BulkRows([
                    "position": .integer, "device_id": .text, "local_id": .integer, "employee_id": .text, "earliest": .integer, "latest": .integer,
                ])
                for (position, record) in all.enumerated() {
                    keys.append(
                        .integer(Int64(position)), .text(record.deviceID), .integer(record.localID), .text(record.employeeID),
                        .integer(record.timestamp - window), .integer(record.timestamp + window))
                }
                // Two probes per record, each of one index: the unique key it would replay, and its
                // employee's earliest live record in the window, ordered as the employee index is.
                // Statistics taken before a tenant had records make any plan over its rows look
                // like one row, and PostgreSQL took the tenant's change index and scanned it whole
                // per record (6 syncs a second in a full bench run); with sorting off for this read,
                // the employee index is the only plan without a sort. Only records that found
                // something come back, probed once (`MATERIALIZED`: inlined, the filter ran the
                // probes again). Sorting stays off to the commit: nothing after sorts, and
                // `enable_sort` only steers plans.
                if postgres { try await db.raw("SET LOCAL enable_sort = off").run() }
                let probes = try await db.raw(
                    """
                    WITH probes AS MATERIALIZED (
                        SELECT k.position,
                            (SELECT server_id FROM attendance_records r WHERE r.device_id = k.device_id AND r.local_id = k.local_id) AS replayed,
                            (SELECT server_id FROM attendance_records r
                             WHERE r.tenant_id = \(bind: tenant) AND r.employee_id = k.employee_id AND r.timestamp_ms BETWEEN k.earliest AND k.latest
                                AND r.deleted_us IS NULL
                             ORDER BY r.timestamp_ms LIMIT 1) AS clash
                        FROM \(keys.table("k", in: db))
                    )
                    SELECT position, replayed, clash FROM probes WHERE replayed IS NOT NULL OR clash IS NOT NULL
                    """
                ).all()
                for row in probes {
                    let position = try row.decode(column: "position", as: Int.self)
                    replays[position] = try row.decode(column: "replayed", as: Int64?.self)
                    clashes[position] = try row.decode(column: "clash", as: Int64?.self)
                }
            }
            let ids = Set(replays.values).union(clashes.values)
            if !ids.isEmpty {
                for row in try await db.raw(
                    "SELECT \(StoredRecord.columns), synced_us FROM attendance_records WHERE server_id IN (\(binds: Array(ids)))"
                ).all() {
                    let stored = try StoredRecord(row: row)
                    found[stored.server_id] = (stored, milliseconds(try row.decode(column: "synced_us", as: Int64.self)))
                }
            }

            // Records this batch stores, in stamp order; each sync's answer refers to them by index
            // until the insert gives them their server ids.
            var fresh: [(record: SyncRecord, sync: Int, stamp: Int64)] = []
            var freshByLocal: [Local: Int] = [:]
            var freshByEmployee: [String: [Int]] = [:]
            enum Synced {
                case stored(SyncResult.Synced)
                case fresh(Int)
            }
            enum Existing {
                case stored(StoredRecord)
                case fresh(Int)
            }
            var answers: [(result: SyncResult, synced: [Synced], conflicts: [(SyncRecord, Existing)])] = []
            var position = 0  // in `all`
            for (index, sync) in syncs.enumerated() {
                var result = SyncResult()
                var (synced, conflicts) = ([Synced](), [(SyncRecord, Existing)]())
                for record in sync.records {
                    if let problem = record.problem(device: sync.device.id, nowMs: milliseconds(now)) {
                        result.errors.append(.init(local_id: record.localID, error: problem.code, message: problem.message))
                    }
                }
                var seenLocal = Set<Int64>()
                for record in valid[index] {
                    defer { position += 1 }
                    let local = Local(device: record.deviceID, id: record.localID)
                    if let serverID = replays[position], let at = found[serverID]?.syncedAt {
                        synced.append(.stored(.init(local_id: record.localID, server_id: serverID, synced_at: at)))
                        continue
                    }
                    if let earlier = freshByLocal[local], fresh[earlier].sync < index {
                        synced.append(.fresh(earlier))
                        continue
                    }
                    guard seenLocal.insert(record.localID).inserted else {
                        result.errors.append(.init(local_id: record.localID, error: "DUPLICATE_LOCAL_ID", message: "local_id appears twice in this request"))
                        continue
                    }
                    if let clash = clashes[position], let existing = found[clash]?.record {
                        conflicts.append((record, .stored(existing)))
                        continue
                    }
                    if let earlier = freshByEmployee[record.employeeID]?.first(where: {
                        abs(fresh[$0].record.timestamp - record.timestamp) <= SyncRecord.duplicateWindowMs
                    }) {
                        conflicts.append((record, .fresh(earlier)))
                        continue
                    }
                    stamp += 1
                    freshByLocal[local] = fresh.count
                    freshByEmployee[record.employeeID, default: []].append(fresh.count)
                    synced.append(.fresh(fresh.count))
                    fresh.append((record, index, stamp))
                }
                answers.append((result, synced, conflicts))
            }

            // Each stored record's server id, by its stamp (unique in the tenant).
            var serverIDs: [Int64: Int64] = [:]
            if !fresh.isEmpty {
                var rows = BulkRows([
                    "device_id": .text, "local_id": .integer, "employee_id": .text, "type": .text, "timestamp_ms": .integer,
                    "confidence": .real, "liveness_passed": .integer, "created_ms": .integer, "change_ms": .integer,
                ])
                for (r, _, stamp) in fresh {
                    rows.append(
                        .text(r.deviceID), .integer(r.localID), .text(r.employeeID), .text(r.type), .integer(r.timestamp), r.confidence.map { .real($0) },
                        r.livenessPassed.map { .integer($0 ? 1 : 0) }, r.createdAt.map { .integer($0) }, .integer(stamp))
                }
                let insert: SQLQueryString = """
                    INSERT INTO attendance_records (tenant_id, device_id, local_id, employee_id, type, timestamp_ms, confidence,
                        liveness_passed, created_ms, synced_us, change_ms)
                    SELECT \(bind: tenant), k.device_id, k.local_id, k.employee_id, k.type, k.timestamp_ms, k.confidence,
                        k.liveness_passed, k.created_ms, \(bind: now), k.change_ms
                    FROM \(rows.table("k", in: db)) RETURNING server_id, change_ms
                    """
                if postgres {
                    // As one row of two arrays: through PostgresKit, decoding a row per record took
                    // longer on the server than the database took to insert it.
                    let row = try await db.raw("WITH stored AS (\(insert)) SELECT array_agg(server_id) AS ids, array_agg(change_ms) AS stamps FROM stored")
                        .first()
                    let (ids, stamps) = (try row?.decode(column: "ids", as: [Int64].self) ?? [], try row?.decode(column: "stamps", as: [Int64].self) ?? [])
                    serverIDs = Dictionary(zip(stamps, ids)) { first, _ in first }
                } else {
                    for row in try await db.raw(insert).all() {
                        serverIDs[try row.decode(column: "change_ms", as: Int64.self)] = try row.decode(column: "server_id", as: Int64.self)
                    }
                }
                changes.write([Self.saveStamp(stamp, tenant: tenant)])
            }
            let serverID = { (index: Int) in serverIDs[fresh[index].stamp]! }
            for (index, record) in fresh.map(\.record).enumerated() {
                let created = CreatedRecord(
                    device_id: record.deviceID, employee_id: record.employeeID, local_id: record.localID, server_id: serverID(index),
                    tenant_id: tenant, timestamp: record.timestamp, type: record.type)
                changes.send(OutboundEvent(.attendanceRecordCreated, created, deviceID: record.deviceID))
            }
            let synced = Array(Set(syncs.indices.filter { !valid[$0].isEmpty }.map { syncs[$0].device.id }))
            if !synced.isEmpty {
                changes.write(["UPDATE devices SET last_sync_us = \(bind: now) WHERE device_id IN (\(binds: synced))"])
            }
            return zip(syncs, answers).map { sync, answer in
                var result = answer.result
                result.synced_records = answer.synced.map {
                    switch $0 {
                    case .stored(let stored): stored
                    case .fresh(let index): .init(local_id: fresh[index].record.localID, server_id: serverID(index), synced_at: milliseconds(now))
                    }
                }
                result.conflicts = answer.conflicts.map { record, existing in
                    switch existing {
                    case .stored(let stored): Self.conflict(record, stored)
                    case .fresh(let index): Self.conflict(record, StoredRecord(fresh[index].record, serverID: serverID(index), change: fresh[index].stamp))
                    }
                }
                result.synced_count = result.synced_records.count
                changes.publish(
                    .attendanceSync,
                    [
                        "tenant_id": JSONValue.string(tenant), "device_id": .string(sync.device.id), "synced_count": .int(Int64(result.synced_records.count)),
                        "conflicts": .int(Int64(result.conflicts.count)), "errors": .int(Int64(result.errors.count)),
                    ])
                return .success(result)
            }
        }
    }

    /// The body of `attendance.record_created`; a struct, as a dictionary per record cost more
    /// than the outbox's filter that usually drops it.
    private struct CreatedRecord: Encodable, Sendable {
        let device_id: String
        let employee_id: String
        let local_id: Int64
        let server_id: Int64
        let tenant_id: String
        let timestamp: Int64
        let type: String
    }

    private static func conflict(_ record: SyncRecord, _ existing: StoredRecord) -> SyncResult.Conflict {
        .init(
            local_id: record.localID, reason: "DUPLICATE_TIMESTAMP",
            message: "employee \(record.employeeID) already has a record within 30 seconds", existing_record: existing)
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
