import SQLKit

/// The dispatcher's SQL: messages fanned out to deliveries, deliveries claimed (one instance
/// each), outcomes recorded, old rows pruned. Every step is one transaction.
struct WebhookDeliveries: Sendable {
    let database: any Database

    /// Attempts stop three days after a delivery was queued, and a subscription failing that long is disabled.
    static let giveUpAfter: Int64 = 3 * 86_400 * 1_000_000
    /// An attempt in flight is another instance's for this long (a 10 s request, and margin).
    static let lease: Int64 = 60 * 1_000_000
    /// A sensor's count is sent at most this often.
    static let countInterval: Int64 = 1_000_000
    /// Delivery logs are kept this long.
    static let retention: Int64 = 30 * 86_400 * 1_000_000

    /// A delivery claimed for an attempt.
    struct Claimed: Sendable {
        let id: Int64
        let webhookID: String
        let url: String
        let messageUID: String
        let body: String
        let attempts: Int64
        let createdUs: Int64
        let secrets: [String]
    }

    /// Turns up to `limit` new messages, and the sensors' counts that changed, into deliveries for
    /// every enabled subscription that wants them. A newer count of a sensor supersedes its older
    /// ones still waiting. Messages nobody wants are dropped. Returns how many messages it handled.
    func fanOut(now: Int64, limit: Int = 500) async throws -> Int {
        let skipLocked: SQLQueryString = database.engine == .postgres ? " FOR UPDATE SKIP LOCKED" : ""
        return try await database.transaction { db in
            // Each sensor's latest count becomes a message at most once a second.
            let counts = try await db.raw(
                """
                SELECT sensor, inside FROM webhook_counts
                WHERE sent_us IS NULL OR (sent_us < changed_us AND sent_us <= \(bind: now - Self.countInterval)) ORDER BY sensor LIMIT 1000\(skipLocked)
                """
            ).all().map { (sensor: try $0.decode(column: "sensor", as: String.self), inside: try $0.decode(column: "inside", as: Int64.self)) }
            if !counts.isEmpty {
                let events = counts.map { OutboundEvent(.sensorOccupancyChanged, ["sensor": JSONValue.string($0.sensor), "inside": .int($0.inside)], sensor: $0.sensor) }
                try await Outbox.insert(events, now: Timestamp(microseconds: now), db: db)
                for chunk in counts.map(\.sensor).chunks(of: 500) {
                    try await db.raw("UPDATE webhook_counts SET sent_us = \(bind: now) WHERE sensor IN (\(binds: Array(chunk)))").run()
                }
            }
            let messages = try await db.raw(
                """
                SELECT message_id, event_type, sensor, room, event_id, device_id, place_id FROM webhook_messages
                WHERE fanned_out = 0 ORDER BY message_id LIMIT \(literal: limit)\(skipLocked)
                """
            ).all().map(Message.init)
            guard !messages.isEmpty else { return 0 }
            let subscriptions = try await db.raw("SELECT webhook_id, event_types, filter_sensor, filter_place FROM webhooks WHERE enabled = 1").all()
                .map(Subscription.init)
            let places = try await PlaceSubjects.load(for: messages, if: subscriptions.contains { $0.place != nil }, db: db)
            // Only the newest count of each sensor in this batch is sent; it supersedes those waiting.
            let occupancy = WebhookEvent.sensorOccupancyChanged.rawValue
            var newest: [String: Int64] = [:]
            for message in messages where message.type == occupancy { newest[message.sensor ?? ""] = message.id }
            if !newest.isEmpty {
                try await db.raw(
                    """
                    UPDATE webhook_deliveries SET status = 'superseded', updated_us = \(bind: now)
                    WHERE status = 'pending' AND (locked_until_us IS NULL OR locked_until_us <= \(bind: now)) AND message_id IN (
                        SELECT message_id FROM webhook_messages WHERE fanned_out = 1 AND event_type = \(bind: occupancy)
                        AND sensor IN (\(binds: Array(newest.keys))))
                    """
                ).run()
            }
            var rows: [SQLQueryString] = [], unwanted: [Int64] = []
            for message in messages {
                let takers =
                    message.type == occupancy && newest[message.sensor ?? ""] != message.id
                    ? [] : subscriptions.filter { $0.wants(message, places: places[message.id] ?? []) }
                if takers.isEmpty { unwanted.append(message.id) }
                rows += takers.map { "(\(bind: $0.id), \(bind: message.id), 'pending', 0, \(bind: now), \(bind: now), \(bind: now))" }
            }
            for chunk in rows.chunks(of: 200) {
                try await db.raw(
                    """
                    INSERT INTO webhook_deliveries (webhook_id, message_id, status, attempts, next_attempt_us, created_us, updated_us)
                    VALUES \(Array(chunk).joined(separator: ", "))
                    """
                ).run()
            }
            let ids = messages.map(\.id)
            for chunk in ids.chunks(of: 500) {
                try await db.raw("UPDATE webhook_messages SET fanned_out = 1 WHERE message_id IN (\(binds: Array(chunk)))").run()
            }
            for chunk in unwanted.chunks(of: 500) {
                try await db.raw("DELETE FROM webhook_messages WHERE message_id IN (\(binds: Array(chunk)))").run()
            }
            return messages.count
        }
    }

    /// Claims, for `lease`, up to `perSubscription` due deliveries of each subscription, the oldest
    /// first and none past one that waits for a retry or is in flight (so that a subscription gets
    /// its messages in order), up to `limit` in all. On PostgreSQL, rows another instance is claiming
    /// are skipped, so each attempt is made by exactly one instance.
    func claim(now: Int64, limit: Int, perSubscription: Int, box: SecretBox) async throws -> [Claimed] {
        let skipLocked: SQLQueryString = database.engine == .postgres ? " FOR UPDATE OF d SKIP LOCKED" : ""
        return try await database.transaction { db in
            let rows = try await db.raw(
                """
                SELECT d.delivery_id, d.webhook_id, d.attempts, d.created_us, m.message_uid, m.body, w.url, w.secret_sealed,
                    w.previous_secret_sealed, w.previous_until_us
                FROM webhook_deliveries d JOIN webhooks w ON w.webhook_id = d.webhook_id JOIN webhook_messages m ON m.message_id = d.message_id
                WHERE d.status = 'pending' AND w.enabled = 1 AND d.next_attempt_us <= \(bind: now)
                AND (d.locked_until_us IS NULL OR d.locked_until_us <= \(bind: now))
                AND NOT EXISTS (
                    SELECT 1 FROM webhook_deliveries x WHERE x.webhook_id = d.webhook_id AND x.status = 'pending' AND x.delivery_id < d.delivery_id
                    AND (x.next_attempt_us > \(bind: now) OR x.locked_until_us > \(bind: now)))
                ORDER BY d.webhook_id, d.delivery_id LIMIT \(literal: limit)\(skipLocked)
                """
            ).all()
            var taken: [String: Int] = [:]
            let claimed = try rows.compactMap { row -> Claimed? in
                let webhook = try row.decode(column: "webhook_id", as: String.self)
                guard taken[webhook, default: 0] < perSubscription else { return nil }
                taken[webhook, default: 0] += 1
                var secrets = [try row.decode(column: "secret_sealed", as: String.self)]
                if let previous = try row.decode(column: "previous_secret_sealed", as: String?.self),
                    try row.decode(column: "previous_until_us", as: Int64?.self) ?? 0 > now
                {
                    secrets.append(previous)
                }
                return Claimed(
                    id: try row.decode(column: "delivery_id", as: Int64.self), webhookID: webhook, url: try row.decode(column: "url", as: String.self),
                    messageUID: try row.decode(column: "message_uid", as: String.self), body: try row.decode(column: "body", as: String.self),
                    attempts: try row.decode(column: "attempts", as: Int64.self) + 1, createdUs: try row.decode(column: "created_us", as: Int64.self),
                    secrets: secrets.compactMap(box.open))
            }
            for chunk in claimed.map(\.id).chunks(of: 500) {
                try await db.raw("UPDATE webhook_deliveries SET locked_until_us = \(bind: now + Self.lease) WHERE delivery_id IN (\(binds: Array(chunk)))").run()
            }
            return claimed
        }
    }

    /// An attempt's outcome.
    struct Outcome: Sendable {
        /// The HTTP status, nil when there was no answer.
        let status: Int?
        let latencyMs: Int64
        let error: String?

        var succeeded: Bool { (200..<300).contains(status ?? 0) }
    }

    /// Records a round's attempts in one transaction (a claimed delivery without an outcome was
    /// not attempted: it is released). A failure is retried at `retryAt` until three days after the
    /// delivery was queued; `410 Gone` disables the subscription at once, and so does failing for
    /// three days.
    func record(_ attempts: [(delivery: Claimed, outcome: Outcome?, retryAt: Int64)], now: Int64) async throws {
        guard !attempts.isEmpty else { return }
        try await database.transaction { db in
            // Successes, the usual case, in one statement; a round can hold hundreds.
            let succeeded = attempts.compactMap { attempt in attempt.outcome.flatMap { $0.succeeded ? (attempt.delivery, $0) : nil } }
            for chunk in succeeded.chunks(of: 200) {
                let rows = chunk.map { "(\(bind: $0.0.id), \(bind: $0.1.status.map(Int64.init) ?? 0), \(bind: $0.1.latencyMs))" as SQLQueryString }
                try await db.raw(
                    """
                    UPDATE webhook_deliveries SET status = 'succeeded', attempts = attempts + 1, response_code = v.column2, latency_ms = v.column3,
                        last_error = NULL, locked_until_us = NULL, updated_us = \(bind: now)
                    FROM (VALUES \(rows.joined(separator: ", "))) AS v WHERE webhook_deliveries.delivery_id = v.column1
                    """
                ).run()
                try await db.raw(
                    "UPDATE webhooks SET failing_since_us = NULL WHERE webhook_id IN (\(binds: Array(Set(chunk.map(\.0.webhookID))))) AND failing_since_us IS NOT NULL"
                ).run()
            }
            let released = attempts.filter { $0.outcome == nil }.map(\.delivery.id)
            for chunk in released.chunks(of: 500) {
                try await db.raw("UPDATE webhook_deliveries SET locked_until_us = NULL WHERE delivery_id IN (\(binds: Array(chunk)))").run()
            }
            for (delivery, outcome, retryAt) in attempts {
                guard let outcome, !outcome.succeeded else { continue }
                let code = outcome.status.map(Int64.init)
                let gone = outcome.status == 410
                let status = gone || now - delivery.createdUs >= Self.giveUpAfter ? "failed" : "pending"
                try await db.raw(
                    """
                    UPDATE webhook_deliveries SET status = \(bind: status), attempts = attempts + 1, response_code = \(bind: code),
                        latency_ms = \(bind: outcome.latencyMs), last_error = \(bind: outcome.error), next_attempt_us = \(bind: retryAt),
                        locked_until_us = NULL, updated_us = \(bind: now) WHERE delivery_id = \(bind: delivery.id)
                    """
                ).run()
                let reason =
                    gone
                    ? "the endpoint answered 410 Gone" : "failing since more than 3 days: \(outcome.error ?? outcome.status.map { "HTTP \($0)" } ?? "no answer")"
                let disable: SQLQueryString = "\(bind: gone ? 1 : 0) = 1 OR COALESCE(failing_since_us, \(bind: now)) <= \(bind: now - Self.giveUpAfter)"
                try await db.raw(
                    """
                    UPDATE webhooks SET failing_since_us = COALESCE(failing_since_us, \(bind: now)),
                        enabled = CASE WHEN \(disable) THEN 0 ELSE enabled END,
                        disabled_reason = CASE WHEN \(disable) THEN \(bind: reason) ELSE disabled_reason END
                    WHERE webhook_id = \(bind: delivery.webhookID)
                    """
                ).run()
            }
        }
    }

    /// Deletes finished deliveries, and messages nothing waits for, older than the retention.
    func prune(now: Int64) async throws {
        try await database.transaction { db in
            try await db.raw("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND updated_us < \(bind: now - Self.retention)").run()
            try await db.raw(
                """
                DELETE FROM webhook_messages WHERE fanned_out = 1 AND created_us < \(bind: now - Self.retention)
                AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.message_id = webhook_messages.message_id)
                """
            ).run()
        }
    }
}

extension WebhookDeliveries {
    struct Message: Sendable {
        let id: Int64
        let type: String
        let sensor, room, eventID, deviceID, placeID: String?

        init(row: any SQLRow) throws {
            id = try row.decode(column: "message_id", as: Int64.self)
            type = try row.decode(column: "event_type", as: String.self)
            sensor = try row.decode(column: "sensor", as: String?.self)
            room = try row.decode(column: "room", as: String?.self)
            eventID = try row.decode(column: "event_id", as: String?.self)
            deviceID = try row.decode(column: "device_id", as: String?.self)
            placeID = try row.decode(column: "place_id", as: String?.self)
        }
    }

    struct Subscription: Sendable {
        let id: String
        let types: Set<String>
        let sensor: String?
        let place: String?

        init(row: any SQLRow) throws {
            id = try row.decode(column: "webhook_id", as: String.self)
            types = Set(try row.decode(column: "event_types", as: String.self).split(separator: ",").map(String.init))
            sensor = try row.decode(column: "filter_sensor", as: String?.self)
            place = try row.decode(column: "filter_place", as: String?.self)
        }

        /// Its type, and its filters: the sensor itself, or a place the message touches.
        func wants(_ message: Message, places: Set<String>) -> Bool {
            types.contains(message.type) && (sensor == nil || message.sensor == sensor) && (place.map(places.contains) ?? true)
        }
    }
}
