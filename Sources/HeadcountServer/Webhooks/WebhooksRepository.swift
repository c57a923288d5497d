import Foundation
import SQLKit

/// A subscription: where to send which outbound events, optionally only those touching a place (or
/// anything under it) or a sensor.
struct Webhook: Encodable, Sendable {
    static let columns: SQLQueryString = """
        webhook_id, url, event_types, filter_sensor, filter_place, enabled, disabled_reason, failing_since_us, previous_until_us, created_us, updated_us
        """

    let id: String
    let url: String
    let events: [String]
    @Nullable var filterSensor: String?
    @Nullable var filterPlace: String?
    let enabled: Bool
    /// Why the server disabled it (a 410, or three days of failures); nil when enabled by hand.
    @Nullable var disabledReason: String?
    @Nullable var failingSince: String?
    /// Until when the previous secret signs too, after a rotation.
    @Nullable var previousSecretExpiresAt: String?
    let createdAt: String
    let updatedAt: String

    enum CodingKeys: String, CodingKey {
        case id, url, events, enabled
        case filterSensor = "filter_sensor"
        case filterPlace = "filter_place"
        case disabledReason = "disabled_reason"
        case failingSince = "failing_since"
        case previousSecretExpiresAt = "previous_secret_expires_at"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    init(row: any SQLRow) throws {
        let instant = { (column: String) in try row.decode(column: column, as: Int64?.self).map { Timestamp(microseconds: $0).rfc3339 } }
        id = try row.decode(column: "webhook_id", as: String.self)
        url = try row.decode(column: "url", as: String.self)
        events = try row.decode(column: "event_types", as: String.self).split(separator: ",").map(String.init)
        filterSensor = try row.decode(column: "filter_sensor", as: String?.self)
        filterPlace = try row.decode(column: "filter_place", as: String?.self)
        enabled = try row.decode(column: "enabled", as: Int64.self) == 1
        disabledReason = try row.decode(column: "disabled_reason", as: String?.self)
        failingSince = try instant("failing_since_us")
        previousSecretExpiresAt = try instant("previous_until_us")
        createdAt = try instant("created_us")!
        updatedAt = try instant("updated_us")!
    }
}

/// One delivery of a message to a subscription, as its log shows it.
struct WebhookDelivery: Encodable, Sendable {
    static let columns: SQLQueryString = """
        d.delivery_id, d.status, d.attempts, d.next_attempt_us, d.response_code, d.latency_ms, d.last_error, d.created_us, d.updated_us,
        m.message_uid, m.event_type
        """

    let id: Int64
    let messageID: String
    let eventType: String
    /// `pending`, `succeeded`, `failed` (given up after three days) or `superseded` (a newer count
    /// of the same sensor replaced it).
    let status: String
    let attempts: Int64
    @Nullable var nextAttemptAt: String?
    @Nullable var responseCode: Int64?
    @Nullable var latencyMs: Int64?
    @Nullable var lastError: String?
    let createdAt: String
    let updatedAt: String

    enum CodingKeys: String, CodingKey {
        case id, status, attempts
        case messageID = "message_id"
        case eventType = "event_type"
        case nextAttemptAt = "next_attempt_at"
        case responseCode = "response_code"
        case latencyMs = "latency_ms"
        case lastError = "last_error"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    init(row: any SQLRow) throws {
        id = try row.decode(column: "delivery_id", as: Int64.self)
        messageID = try row.decode(column: "message_uid", as: String.self)
        eventType = try row.decode(column: "event_type", as: String.self)
        status = try row.decode(column: "status", as: String.self)
        attempts = try row.decode(column: "attempts", as: Int64.self)
        let next = try row.decode(column: "next_attempt_us", as: Int64.self)
        nextAttemptAt = status == "pending" ? Timestamp(microseconds: next).rfc3339 : nil
        responseCode = try row.decode(column: "response_code", as: Int64?.self)
        latencyMs = try row.decode(column: "latency_ms", as: Int64?.self)
        lastError = try row.decode(column: "last_error", as: String?.self)
        createdAt = Timestamp(microseconds: try row.decode(column: "created_us", as: Int64.self)).rfc3339
        updatedAt = Timestamp(microseconds: try row.decode(column: "updated_us", as: Int64.self)).rfc3339
    }
}

/// The SQL of subscriptions and their delivery logs. Secrets are sealed (`SecretBox`) before they
/// are stored and shown once: at creation and at rotation.
struct WebhooksRepository: Sendable {
    let database: any Database
    let box: SecretBox

    static let notFound = APIError.notFound("Webhook not found.")
    /// How long the previous secret signs beside the new one after a rotation.
    static let rotationOverlap: Int64 = 24 * 3600 * 1_000_000

    struct Fields: Sendable {
        var url: String?
        var events: [String]?
        var filterSensor: String??
        var filterPlace: String??
        var enabled: Bool?
    }

    /// Creates a subscription; returns it and its secret (shown this once).
    func create(_ fields: Fields, now: Int64 = Timestamp.now().microseconds) async throws -> (Webhook, secret: String) {
        let id = "wh_" + KeyFile.randomToken().prefix(20)
        let secret = WebhookSecret.generate()
        let sealed = try box.seal(secret)
        let webhook = try await database.transaction { db in
            try await db.raw(
                """
                INSERT INTO webhooks (webhook_id, url, event_types, filter_sensor, filter_place, enabled, secret_sealed, created_us, updated_us)
                VALUES (\(bind: id), \(bind: fields.url!), \(bind: Self.types(fields.events!)), \(bind: fields.filterSensor ?? nil), \(bind: fields.filterPlace ?? nil),
                        \(bind: fields.enabled == false ? 0 : 1), \(bind: sealed), \(bind: now), \(bind: now))
                RETURNING \(Webhook.columns)
                """
            ).first().map(Webhook.init)!
        }
        return (webhook, secret)
    }

    func webhooks() async throws -> [Webhook] {
        try await database.read { db in try await db.raw("SELECT \(Webhook.columns) FROM webhooks ORDER BY created_us, webhook_id").all().map(Webhook.init) }
    }

    func webhook(_ id: String) async throws -> Webhook? {
        try await database.read { db in try await db.raw("SELECT \(Webhook.columns) FROM webhooks WHERE webhook_id = \(bind: id)").first().map(Webhook.init) }
    }

    /// Changes what was sent; enabling clears why the server had disabled it.
    func update(_ id: String, _ fields: Fields) async throws -> Webhook {
        let now = Timestamp.now().microseconds
        var sets: [SQLQueryString] = ["updated_us = \(bind: now)"]
        if let url = fields.url { sets.append("url = \(bind: url)") }
        if let events = fields.events { sets.append("event_types = \(bind: Self.types(events))") }
        if let sensor = fields.filterSensor { sets.append("filter_sensor = \(bind: sensor)") }
        if let place = fields.filterPlace { sets.append("filter_place = \(bind: place)") }
        if let enabled = fields.enabled {
            sets.append("enabled = \(bind: enabled ? 1 : 0)")
            if enabled { sets.append("disabled_reason = NULL, failing_since_us = NULL") }
        }
        let assignments = sets.joined(separator: ", ")
        let updated = try await database.transaction { db in
            try await db.raw("UPDATE webhooks SET \(assignments) WHERE webhook_id = \(bind: id) RETURNING \(Webhook.columns)").first()
                .map(Webhook.init)
        }
        guard let updated else { throw Self.notFound }
        return updated
    }

    /// Deletes a subscription with its deliveries; false if there was none.
    func delete(_ id: String) async throws -> Bool {
        try await database.transaction { db in
            guard try await db.raw("DELETE FROM webhooks WHERE webhook_id = \(bind: id) RETURNING webhook_id").first() != nil else { return false }
            try await db.raw("DELETE FROM webhook_deliveries WHERE webhook_id = \(bind: id)").run()
            return true
        }
    }

    /// A new secret; the current one keeps signing beside it for `rotationOverlap`.
    func rotate(_ id: String) async throws -> (Webhook, secret: String) {
        let secret = WebhookSecret.generate()
        let sealed = try box.seal(secret)
        let now = Timestamp.now().microseconds
        let webhook = try await database.transaction { db in
            try await db.raw(
                """
                UPDATE webhooks SET previous_secret_sealed = secret_sealed, previous_until_us = \(bind: now + Self.rotationOverlap),
                    secret_sealed = \(bind: sealed), updated_us = \(bind: now)
                WHERE webhook_id = \(bind: id) RETURNING \(Webhook.columns)
                """
            ).first().map(Webhook.init)
        }
        guard let webhook else { throw Self.notFound }
        return (webhook, secret)
    }

    /// The subscription's deliveries of the last 30 days, newest first (at most `limit`).
    func deliveries(_ id: String, limit: Int) async throws -> [WebhookDelivery]? {
        try await database.read { db in
            guard try await db.raw("SELECT 1 AS known FROM webhooks WHERE webhook_id = \(bind: id)").first() != nil else { return nil }
            return try await db.raw(
                """
                SELECT \(WebhookDelivery.columns) FROM webhook_deliveries d JOIN webhook_messages m ON m.message_id = d.message_id
                WHERE d.webhook_id = \(bind: id) ORDER BY d.delivery_id DESC LIMIT \(literal: limit)
                """
            ).all().map(WebhookDelivery.init)
        }
    }

    /// Queues the message of a delivery again, as a new delivery; nil if there is no such delivery.
    func redeliver(_ id: String, delivery: Int64) async throws -> WebhookDelivery? {
        try await database.transaction { db in
            guard
                let row = try await db.raw("SELECT message_id FROM webhook_deliveries WHERE webhook_id = \(bind: id) AND delivery_id = \(bind: delivery)").first()
            else { return nil }
            return try await Self.queue(message: try row.decode(column: "message_id", as: Int64.self), to: id, db: db)
        }
    }

    /// Queues a `webhook.test` message for this subscription alone; nil if there is none.
    func test(_ id: String) async throws -> WebhookDelivery? {
        let now = Timestamp.now()
        return try await database.transaction { db in
            guard try await db.raw("SELECT 1 AS known FROM webhooks WHERE webhook_id = \(bind: id)").first() != nil else { return nil }
            let type = WebhookEvent.webhookTest.rawValue
            let body = #"{"data":{"webhook_id":"\#(id)"},"timestamp":"\#(now.rfc3339)","type":"\#(type)"}"#
            let message = try await db.raw(
                """
                INSERT INTO webhook_messages (message_uid, event_type, body, fanned_out, created_us)
                VALUES (\(bind: "msg_" + KeyFile.randomToken().prefix(24)), \(bind: type), \(bind: body), 1, \(bind: now.microseconds)) RETURNING message_id
                """
            ).first()!.decode(column: "message_id", as: Int64.self)
            return try await Self.queue(message: message, to: id, db: db)
        }
    }

    private static func queue(message: Int64, to webhook: String, db: any SQLDatabase) async throws -> WebhookDelivery {
        let now = Timestamp.now().microseconds
        let id = try await db.raw(
            """
            INSERT INTO webhook_deliveries (webhook_id, message_id, status, attempts, next_attempt_us, created_us, updated_us)
            VALUES (\(bind: webhook), \(bind: message), 'pending', 0, \(bind: now), \(bind: now), \(bind: now)) RETURNING delivery_id
            """
        ).first()!.decode(column: "delivery_id", as: Int64.self)
        return try await db.raw(
            "SELECT \(WebhookDelivery.columns) FROM webhook_deliveries d JOIN webhook_messages m ON m.message_id = d.message_id WHERE d.delivery_id = \(bind: id)"
        ).first().map(WebhookDelivery.init)!
    }

    /// `,a,b,`: one `LIKE '%,a,%'` finds a type.
    private static func types(_ events: [String]) -> String { "," + events.joined(separator: ",") + "," }
}
