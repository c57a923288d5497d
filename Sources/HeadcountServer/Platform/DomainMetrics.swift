import SQLKit

/// The domain gauges of `/metrics`: people inside per room, occupancy per sensor, seats per event.
/// Read from the database at scrape time, so every instance reports the same, current values and a
/// deleted event simply stops appearing.
struct DomainMetrics: Sendable {
    let database: any Database

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
            return text
        }
    }

    /// A label value in the Prometheus text format: backslash, quote and line feed escaped.
    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}
