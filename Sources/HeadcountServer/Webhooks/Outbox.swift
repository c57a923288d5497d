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
    static func statements(_ events: [OutboundEvent], db: any SQLDatabase) -> [SQLQueryString] {
        let now = Timestamp.now()
        var statements: [SQLQueryString] = []
        // Counts, the bulk of changes, cost one statement.
        let counts = events.filter { $0.type == .sensorOccupancyChanged && $0.count != nil }
        if !counts.isEmpty {
            var rows = BulkRows(["sensor": .text, "inside": .integer])
            for event in counts { rows.append(.text(event.sensor!), .integer(event.count!)) }
            statements.append(
                """
                INSERT INTO webhook_counts (sensor, inside, changed_us)
                SELECT v.sensor, v.inside, \(bind: now.microseconds) FROM \(rows.table("v", in: db))
                WHERE \(subscribed("'\(unsafeRaw: WebhookEvent.sensorOccupancyChanged.rawValue)'"))
                ON CONFLICT (sensor) DO UPDATE SET inside = excluded.inside, changed_us = excluded.changed_us
                """)
        }
        let messages = events.filter { $0.type != .sensorOccupancyChanged }
        if !messages.isEmpty {
            statements.append("\(messagesInsert(messages, now: now, db: db)) WHERE \(subscribed("v.event_type"))")
        }
        return statements
    }

    /// Whether an enabled subscription asks for the type that SQL expression `type` gives. The
    /// type is never a bound value: SQLite prepares a statement again whenever a LIKE's bound
    /// pattern is bound anew.
    private static func subscribed(_ type: SQLQueryString) -> SQLQueryString {
        "EXISTS (SELECT 1 FROM webhooks WHERE enabled = 1 AND event_types LIKE '%,' || \(type) || ',%')"
    }

    /// Writes messages to be fanned out, whatever the subscriptions ask for.
    static func insert(_ events: [OutboundEvent], now: Timestamp, db: any SQLDatabase) async throws {
        try await db.raw(messagesInsert(events, now: now, db: db)).run()
    }

    /// The statement that writes `events` as messages, reading them as the table `v`.
    private static func messagesInsert(_ events: [OutboundEvent], now: Timestamp, db: any SQLDatabase) -> SQLQueryString {
        let time = now.rfc3339
        var rows = BulkRows([
            "message_uid": .text, "event_type": .text, "body": .text, "sensor": .text, "room": .text, "event_id": .text, "device_id": .text, "place_id": .text,
        ])
        for event in events {
            let body = #"{"data":\#(event.data),"timestamp":"\#(time)","type":"\#(event.type.rawValue)"}"#
            rows.append(
                .text("msg_" + KeyFile.randomToken().prefix(24)), .text(event.type.rawValue), .text(body), event.sensor.map { .text($0) },
                event.room.map { .text($0) }, event.eventID.map { .text($0) }, event.deviceID.map { .text($0) }, event.placeID.map { .text($0) })
        }
        return """
            INSERT INTO webhook_messages (message_uid, event_type, body, sensor, room, event_id, device_id, place_id, fanned_out, created_us)
            SELECT v.message_uid, v.event_type, v.body, v.sensor, v.room, v.event_id, v.device_id, v.place_id, 0, \(bind: now.microseconds)
            FROM \(rows.table("v", in: db))
            """
    }
}
