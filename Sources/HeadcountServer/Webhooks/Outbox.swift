import Foundation
import SQLKit

/// The durable outbox: each outbound change is a row of `webhook_messages`, written in the
/// transaction that made the change, and only when an enabled subscription asks for its type (read
/// in the same transaction, so a subscription made on another instance a moment ago counts).
/// A sensor's count is a state, kept as one row per sensor (`webhook_counts`) rather than one
/// message per change. `WebhookDispatcher` fans messages out to deliveries and sends them.
enum Outbox {
    static func write(_ events: [OutboundEvent], db: any SQLDatabase) async throws {
        let now = Timestamp.now()
        // Counts, the bulk of changes, cost one statement that writes only if a subscription wants them.
        let counts = events.filter { $0.type == .sensorOccupancyChanged && $0.count != nil }
        if !counts.isEmpty {
            let rows = counts.map { "(\(bind: $0.sensor!), \(bind: $0.count!), \(bind: now.microseconds))" as SQLQueryString }
            try await db.raw(
                """
                INSERT INTO webhook_counts (sensor, inside, changed_us)
                SELECT v.column1, v.column2, v.column3 FROM (VALUES \(rows.joined(separator: ", "))) AS v
                WHERE EXISTS (SELECT 1 FROM webhooks WHERE enabled = 1 AND event_types LIKE \(bind: "%," + WebhookEvent.sensorOccupancyChanged.rawValue + ",%"))
                ON CONFLICT (sensor) DO UPDATE SET inside = excluded.inside, changed_us = excluded.changed_us
                """
            ).run()
        }
        let others = events.filter { $0.type != .sensorOccupancyChanged }
        guard !others.isEmpty else { return }
        let wanted = try await wantedTypes(db)
        try await insert(others.filter { wanted.contains($0.type.rawValue) }, now: now, db: db)
    }

    /// Writes messages, each `{"data", "timestamp", "type"}`, to be fanned out.
    static func insert(_ events: [OutboundEvent], now: Timestamp, db: any SQLDatabase) async throws {
        for chunk in events.chunks(of: 100) {
            let rows = chunk.map { event -> SQLQueryString in
                let body = #"{"data":\#(event.data),"timestamp":"\#(now.rfc3339)","type":"\#(event.type.rawValue)"}"#
                return """
                    (\(bind: "msg_" + KeyFile.randomToken().prefix(24)), \(bind: event.type.rawValue), \(bind: body), \(bind: event.sensor), \(bind: event.room),
                     \(bind: event.eventID), \(bind: event.deviceID), \(bind: event.placeID), 0, \(bind: now.microseconds))
                    """
            }
            try await db.raw(
                """
                INSERT INTO webhook_messages (message_uid, event_type, body, sensor, room, event_id, device_id, place_id, fanned_out, created_us)
                VALUES \(rows.joined(separator: ", "))
                """
            ).run()
        }
    }

    /// The event types some enabled subscription asks for.
    private static func wantedTypes(_ db: any SQLDatabase) async throws -> Set<String> {
        var wanted = Set<String>()
        for row in try await db.raw("SELECT event_types FROM webhooks WHERE enabled = 1").all() {
            wanted.formUnion(try row.decode(column: "event_types", as: String.self).split(separator: ",").map(String.init))
        }
        return wanted
    }
}
