import Foundation
import Hummingbird

/// Seed 002's offline sync: devices push attendance records and audits in batches and pull every
/// change the server made to their tenant's records since their last pull.
struct RecordsController {
    let devices: DevicesRepository
    let records: RecordsRepository
    /// For the export's policy column: records at devices in places.
    let places: PlacesRepository
    let adminKey: String
    let privacy: Privacy

    func addRoutes(to router: Router<AppRequestContext>) {
        addReportRoutes(to: router)
        router.post("api/attendance/sync") { request, context in
            let device = try await request.device(devices)
            let items = try await Self.batch("records", request, context)
            let parsed = try items.enumerated().map { try SyncRecord(json: $1, index: $0) }
            let result = try await records.sync(parsed, device: device)
            return try json(result)
        }
        router.get("api/attendance/updates") { request, _ in
            let device = try await request.device(devices)
            let since = try request.integer("since", in: 0...Int64.max) ?? 0
            let limit = try request.integer("limit", in: 1...1000) ?? 500
            let (changes, more) = try await records.updates(tenant: device.tenant, since: since, limit: Int(limit))
            struct Updates: Encodable {
                let updates: [StoredRecord]
                let last_sync_timestamp: Int64
                let has_more: Bool
            }
            return try json(Updates(updates: changes, last_sync_timestamp: changes.last?.change ?? since, has_more: more))
        }
        router.post("api/audit/sync") { request, context in
            let device = try await request.device(devices)
            let items = try await Self.batch("audits", request, context)
            let audits = try items.enumerated().map { index, item -> (localID: Int64, body: String) in
                guard case .object(let body) = item, case .int(let local) = body["local_id"], body["action"]?.stringValue != nil,
                    case .int(let timestamp) = body["timestamp"], Timestamp.validMilliseconds.contains(timestamp)
                else {
                    let message = "audits[\(index)]: local_id, action and timestamp (epoch milliseconds, years 0001-9999) are required"
                    throw APIError.invalid("audits[\(index)]", message)
                }
                return (local, String(decoding: try JSONWriter.encode(item), as: UTF8.self))
            }
            let synced = audits.isEmpty ? [] : try await records.syncAudits(audits, device: device)
            struct Audits: Encodable {
                let success = true
                let synced_count: Int
                let synced_audits: [SyncResult.Synced]
            }
            return try json(Audits(synced_count: synced.count, synced_audits: synced))
        }

        router.delete("api/admin/attendance/{serverId}") { request, context in
            try request.requireAdmin(adminKey)
            let tenant = try request.adminTenant()
            guard let id = context.parameters.get("serverId").flatMap(Int64.init) else { throw APIError.notFound("Attendance record not found.") }
            let reason = await request.reason(context: context)
            guard try await records.delete(serverID: id, tenant: tenant, reason: reason) else { throw APIError.notFound("Attendance record not found.") }
            return try json(SuccessMessage(message: "Attendance record deleted."))
        }
        router.get("api/admin/attendance") { request, _ in
            try request.requireAdmin(adminKey)
            let (tenant, from, to) = try Self.period(request)
            var listed = try await records.records(tenant: tenant, from: from, to: to)
            let closed = try await places.closedByPolicy(records: listed.map(\.server_id))
            for index in listed.indices { listed[index].closed_by_policy_at = closed[listed[index].server_id]?.rfc3339 }
            return try json(["records": listed])
        }
        router.get("api/admin/attendance.csv") { request, _ in
            try request.requireAdmin(adminKey)
            let (tenant, from, to) = try Self.period(request)
            let (records, places) = (self.records, self.places)
            // closed_by_policy_at: when the place's stale policy closed an entry nobody signed out of.
            let header = ["server_id", "employee_id", "type", "timestamp", "time", "device_id", "closed_by_policy_at"]
            return CSV.stream(filename: "attendance.csv", header: header) { (cursor: (timestamp: Int64, serverID: Int64)?) in
                let page = try await records.records(tenant: tenant, from: from, to: to, after: cursor, limit: 2000)
                let closed = try await places.closedByPolicy(records: page.map(\.server_id))
                let rows = page.map {
                    [
                        String($0.server_id), $0.employee_id, $0.type, String($0.timestamp), Timestamp(milliseconds: $0.timestamp)?.rfc3339 ?? "", $0.device_id,
                        closed[$0.server_id]?.rfc3339 ?? "",
                    ]
                }
                return (rows, page.last.map { ($0.timestamp, $0.server_id) })
            }
        }
    }

    /// An admin's tenant and period: `from <= timestamp < to`, epoch milliseconds, both optional.
    private static func period(_ request: Request) throws -> (tenant: String, from: Int64, to: Int64) {
        let tenant = try request.adminTenant()
        let from = try request.integer("from", in: Timestamp.validMilliseconds) ?? Timestamp.validMilliseconds.lowerBound
        let to = try request.integer("to", in: Timestamp.validMilliseconds) ?? Int64.max
        guard from < to else { throw APIError.badRequest("from must be before to") }
        return (tenant, from, to)
    }

    /// The array `key` of a sync body: more than 100 items is a 413 before anything else is read.
    static func batch(_ key: String, _ request: Request, _ context: AppRequestContext) async throws -> [JSONValue] {
        guard case .array(let items) = try await request.validatedObject(context: context)[key] else {
            throw APIError(.unprocessableContent, "\(key) must be an array", fields: [.init(field: key, message: "must be an array")])
        }
        guard items.count <= SyncRecord.maxPerRequest else {
            throw APIError(.contentTooLarge, "at most \(SyncRecord.maxPerRequest) \(key) per request")
        }
        return items
    }
}
