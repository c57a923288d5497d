import Foundation
import SQLKit

/// The durable outbox: each outbound change is a row of `webhook_messages`, written in the
/// transaction that made the change, and only when an enabled subscription asks for its type (the
/// insert itself checks, so a subscription made on another instance a moment ago counts).
/// A sensor's count is a state, kept as one row per sensor (`webhook_counts`) rather than one
/// message per change. `WebhookDispatcher` fans messages out to deliveries and sends them.
enum Outbox {
    /// Of many messages, those an enabled subscription asks for: one read of the subscriptions,
    /// before the messages are encoded and bound, instead of hundreds nobody wants (a batch of
    /// syncs creates a message per record). Few messages go straight to `statements`.
    static func wanted(_ events: [OutboundEvent], db: any SQLDatabase) async throws -> [OutboundEvent] {
        guard events.count > 20 else { return events }
        var types = Set<Substring>()
        for row in try await db.raw("SELECT event_types FROM webhooks WHERE enabled = 1").all() {
            types.formUnion(try row.decode(column: "event_types", as: String.self).split(separator: ","))
        }
        return events.filter { types.contains(Substring($0.type.rawValue)) }
    }

    /// The statements that write `events`, each writing only what an enabled subscription asks for
    /// (none reads what another writes: they may run together, `runTogether`).
    static func statements(_ events: [OutboundEvent]) -> [SQLQueryString] {
        let now = Timestamp.now()
        var statements: [SQLQueryString] = []
        // Counts, the bulk of changes, cost one statement.
        let counts = events.filter { $0.type == .sensorOccupancyChanged && $0.count != nil }
        if !counts.isEmpty {
            let rows = counts.map { "(\(bind: $0.sensor!), \(bind: $0.count!), \(bind: now.microseconds))" as SQLQueryString }
            statements.append(
                """
                INSERT INTO webhook_counts (sensor, inside, changed_us)
                SELECT v.column1, v.column2, v.column3 FROM (VALUES \(rows.joined(separator: ", "))) AS v
                WHERE EXISTS (SELECT 1 FROM webhooks WHERE enabled = 1 AND event_types LIKE \(bind: "%," + WebhookEvent.sensorOccupancyChanged.rawValue + ",%"))
                ON CONFLICT (sensor) DO UPDATE SET inside = excluded.inside, changed_us = excluded.changed_us
                """)
        }
        for chunk in events.filter({ $0.type != .sensorOccupancyChanged }).chunks(of: 100) {
            statements.append(
                """
                INSERT INTO webhook_messages (message_uid, event_type, body, sensor, room, event_id, device_id, place_id, fanned_out, created_us)
                SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, v.column8, 0, v.column9
                FROM (VALUES \(rows(chunk, now: now).joined(separator: ", "))) AS v
                WHERE EXISTS (SELECT 1 FROM webhooks WHERE enabled = 1 AND event_types LIKE '%,' || v.column2 || ',%')
                """)
        }
        return statements
    }

    /// Messages as rows of `webhook_messages`, each body `{"data", "timestamp", "type"}`.
    private static func rows(_ events: ArraySlice<OutboundEvent>, now: Timestamp) -> [SQLQueryString] {
        let time = now.rfc3339
        return events.map { event in
            let body = #"{"data":\#(event.data),"timestamp":"\#(time)","type":"\#(event.type.rawValue)"}"#
            return """
                (\(bind: "msg_" + KeyFile.randomToken().prefix(24)), \(bind: event.type.rawValue), \(bind: body), \(bind: event.sensor), \(bind: event.room),
                 \(bind: event.eventID), \(bind: event.deviceID), \(bind: event.placeID), \(bind: now.microseconds))
                """
        }
    }

    /// Writes messages to be fanned out, whatever the subscriptions ask for.
    static func insert(_ events: [OutboundEvent], now: Timestamp, db: any SQLDatabase) async throws {
        for chunk in events.chunks(of: 100) {
            try await db.raw(
                """
                INSERT INTO webhook_messages (message_uid, event_type, body, sensor, room, event_id, device_id, place_id, fanned_out, created_us)
                SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, v.column8, 0, v.column9
                FROM (VALUES \(rows(chunk, now: now).joined(separator: ", "))) AS v
                """
            ).run()
        }
    }
}
