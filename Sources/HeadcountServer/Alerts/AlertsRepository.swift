import SQLKit

/// An alert: raised when a subject (a sensor or a place) crosses a threshold, goes silent or
/// counts below zero; cleared when it is back; acknowledged by someone in between or after.
struct Alert: Encodable, Sendable {
    static let columns: SQLQueryString = "alert_id, subject, subject_id, kind, value, threshold, raised_us, cleared_us, acked_us, acked_by"

    let id: Int64
    /// `sensor` or `place`.
    let subject: String
    let subjectID: String
    let kind: String
    /// The count (or, for `silent`, the minutes since the last post) that raised it.
    let value: Int64
    @Nullable var threshold: Int64?
    let raisedAt: String
    @Nullable var clearedAt: String?
    @Nullable var ackedAt: String?
    @Nullable var ackedBy: String?

    enum CodingKeys: String, CodingKey {
        case id, subject, kind, value, threshold
        case subjectID = "subject_id"
        case raisedAt = "raised_at"
        case clearedAt = "cleared_at"
        case ackedAt = "acked_at"
        case ackedBy = "acked_by"
    }

    /// The alert as a webhook message, about its sensor or place.
    func outbound(_ type: WebhookEvent) -> OutboundEvent {
        OutboundEvent(type, self, sensor: subject == "sensor" ? subjectID : nil, placeID: subject == "place" ? subjectID : nil)
    }

    init(row: any SQLRow) throws {
        let instant = { (column: String) in try row.decode(column: column, as: Int64?.self).map { Timestamp(microseconds: $0).rfc3339 } }
        id = try row.decode(column: "alert_id", as: Int64.self)
        subject = try row.decode(column: "subject", as: String.self)
        subjectID = try row.decode(column: "subject_id", as: String.self)
        kind = try row.decode(column: "kind", as: String.self)
        value = try row.decode(column: "value", as: Int64.self)
        threshold = try row.decode(column: "threshold", as: Int64?.self)
        raisedAt = try instant("raised_us")!
        clearedAt = try instant("cleared_us")
        ackedAt = try instant("acked_us")
        ackedBy = try row.decode(column: "acked_by", as: String?.self)
    }
}

/// The SQL of alerts. A subject's alerts change in the transaction that changed its count (a
/// sensor's webhook batch holds the sensor's row lock), or, for silence and places, in the
/// watcher's, which locks the alerts it reads; so one subject has at most one active alert of a kind.
enum AlertsRepository {
    /// Raises and clears `subject`'s alerts of `kinds` for `count`; each change is published and sent.
    static func evaluate(
        subject: String, id: String, count: Int64, thresholds: Thresholds?, kinds: [AlertKind], active: [String: Alert], now: Int64, db: any SQLDatabase,
        changes: Changes
    ) async throws {
        for kind in kinds {
            let current = active[kind.rawValue]
            let wanted: Bool =
                switch kind {
                case .negative: count < 0
                case .warn, .critical: thresholds?.active(kind, count: count, now: current != nil) ?? false
                // It posted (or, from the watcher, see `Watch`).
                case .silent: false
                }
            if wanted, current == nil {
                let threshold = thresholds?.level(kind) ?? (kind == .negative ? 0 : nil)
                try await raise(subject: subject, id: id, kind: kind, value: count, threshold: threshold, now: now, db: db, changes: changes)
            } else if !wanted, let current {
                try await clear(current, now: now, db: db, changes: changes)
            }
        }
    }

    static func raise(subject: String, id: String, kind: AlertKind, value: Int64, threshold: Int64?, now: Int64, db: any SQLDatabase, changes: Changes) async throws {
        let alert = try await db.raw(
            """
            INSERT INTO alerts (subject, subject_id, kind, value, threshold, raised_us)
            VALUES (\(bind: subject), \(bind: id), \(bind: kind.rawValue), \(bind: value), \(bind: threshold), \(bind: now)) RETURNING \(Alert.columns)
            """
        ).first().map(Alert.init)!
        changes.publish(.alertRaised, alert)
        changes.send(alert.outbound(.alertRaised))
    }

    static func clear(_ alert: Alert, now: Int64, db: any SQLDatabase, changes: Changes) async throws {
        guard
            let cleared = try await db.raw("UPDATE alerts SET cleared_us = \(bind: now) WHERE alert_id = \(bind: alert.id) AND cleared_us IS NULL RETURNING \(Alert.columns)")
                .first().map(Alert.init)
        else { return }
        changes.publish(.alertCleared, cleared)
        changes.send(cleared.outbound(.alertCleared))
    }

    /// The active alerts of these subjects, by subject id and kind.
    static func active(subject: String, ids: [String], db: any SQLDatabase) async throws -> [String: [String: Alert]] {
        var active: [String: [String: Alert]] = [:]
        for chunk in ids.chunks(of: 500) {
            for alert in try await db.raw(
                "SELECT \(Alert.columns) FROM alerts WHERE subject = \(bind: subject) AND subject_id IN (\(binds: Array(chunk))) AND cleared_us IS NULL"
            ).all().map(Alert.init) {
                active[alert.subjectID, default: [:]][alert.kind] = alert
            }
        }
        return active
    }

    /// After a webhook batch, in its transaction: each changed sensor's thresholds and sign. Only
    /// the sensors with an open alert have theirs read; the others have none to clear.
    static func evaluate(sensors: [String: ChangedSensor], now: Int64, db: any SQLDatabase, changes: Changes) async throws {
        let ids = sensors.keys.sorted()
        let alerted = ids.filter { sensors[$0]!.alerted }
        let active = alerted.isEmpty ? [:] : try await Self.active(subject: "sensor", ids: alerted, db: db)
        for sensor in ids {
            try await evaluate(
                subject: "sensor", id: sensor, count: sensors[sensor]!.inside, thresholds: sensors[sensor]!.thresholds,
                kinds: [.warn, .critical, .negative, .silent], active: active[sensor] ?? [:], now: now, db: db, changes: changes)
        }
    }
}
