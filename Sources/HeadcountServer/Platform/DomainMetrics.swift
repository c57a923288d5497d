import SQLKit

/// The domain gauges of `/metrics`: people inside per room, occupancy per sensor, seats per event,
/// active devices per tenant. Read from the database at scrape time, so every instance reports the
/// same, current values and a deleted event simply stops appearing. This instance's change feed
/// adds its own: stream subscribers and how late the last change reached it.
struct DomainMetrics: Sendable {
    let database: any Database
    let feed: ChangeFeed

    func render() async throws -> String {
        try await database.read { db in
            var text = ""
            func gauge(_ name: String, _ help: String, _ samples: [(labels: [(String, String)], value: Int64)]) {
                text += "# HELP \(name) \(help)\n# TYPE \(name) gauge\n"
                for sample in samples {
                    let labels = sample.labels.map { "\($0)=\"\(Self.escape($1))\"" }.joined(separator: ",")
                    text += "\(name){\(labels)} \(sample.value)\n"
                }
            }
            let rooms = try await db.raw("""
                SELECT r.room, COUNT(o.name) AS inside FROM rooms r LEFT JOIN room_occupants o ON o.room = r.room GROUP BY r.room
                """).all()
            gauge("headcount_room_people_inside", "People inside each room now.", try rooms.map {
                ([("room", try $0.decode(column: "room", as: String.self))], try $0.decode(column: "inside", as: Int64.self))
            })
            let sensors = try await db.raw("SELECT sensor, inside FROM sensors").all()
            gauge("headcount_sensor_occupancy", "Occupancy of each sensor now (in minus out).", try sensors.map {
                ([("sensor", try $0.decode(column: "sensor", as: String.self))], try $0.decode(column: "inside", as: Int64.self))
            })
            let events = try await db.raw("SELECT event_id, capacity, confirmed, waitlisted FROM events").all()
            var seats: [(labels: [(String, String)], value: Int64)] = []
            var capacities: [(labels: [(String, String)], value: Int64)] = []
            for row in events {
                let event = try row.decode(column: "event_id", as: String.self)
                seats.append(([("event", event), ("status", "confirmed")], try row.decode(column: "confirmed", as: Int64.self)))
                seats.append(([("event", event), ("status", "waitlisted")], try row.decode(column: "waitlisted", as: Int64.self)))
                capacities.append(([("event", event)], try row.decode(column: "capacity", as: Int64.self)))
            }
            gauge("headcount_event_registrations", "Registrations of each event by status.", seats)
            gauge("headcount_event_capacity", "Seats of each event.", capacities)
            let devices = try await db.raw("SELECT tenant_id, CAST(SUM(is_active) AS BIGINT) AS active FROM devices GROUP BY tenant_id").all()
            gauge("headcount_tenant_active_devices", "Active devices of each tenant.", try devices.map {
                ([("tenant", try $0.decode(column: "tenant_id", as: String.self))], try $0.decode(column: "active", as: Int64.self))
            })
            gauge("headcount_stream_subscribers", "Clients of /api/stream on this instance.", [([], Int64(feed.subscriberCount))])
            text += "# HELP headcount_change_feed_lag_seconds From publishing the latest change to this instance's feed receiving it.\n"
            text += "# TYPE headcount_change_feed_lag_seconds gauge\nheadcount_change_feed_lag_seconds \(feed.lagSeconds)\n"
            return text
        }
    }

    /// A label value in the Prometheus text format: backslash, quote and line feed escaped.
    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}
