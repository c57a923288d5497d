import Hummingbird
import SQLKit

/// Alerts (reading is public, as occupancy is; acknowledging takes the admin key) and the sensor
/// settings they follow.
struct AlertsController {
    let database: any Database
    let feed: ChangeFeed
    let adminKey: String

    func addRoutes(to router: Router<AppRequestContext>) {
        router.get("api/alerts") { request, _ in
            let active: Bool
            switch request.uri.queryParameters["active"] {
            case nil, "false": active = false
            case "true": active = true
            default: throw APIError.badRequest("active must be true or false")
            }
            let filter: SQLQueryString = active ? "WHERE cleared_us IS NULL" : ""
            let alerts = try await database.read { db in
                try await db.raw("SELECT \(Alert.columns) FROM alerts \(filter) ORDER BY raised_us DESC, alert_id DESC LIMIT 1000").all().map(Alert.init)
            }
            return try json(["alerts": alerts])
        }
        router.put("api/alerts/{alertId}/ack") { request, context in
            try request.requireAdmin(adminKey)
            guard let id = Int64(try context.pathID("alertId", length: 1...18)) else { throw APIError.notFound("Alert not found.") }
            var check = Validator(try await request.validatedObject(context: context))
            let by = check.text("by", 1...100, required: false) ?? "admin"
            try check.check()
            let now = Timestamp.now().microseconds
            let acked = try await database.transaction(publishingTo: feed) { db, changes -> Alert? in
                guard
                    let alert = try await db.raw(
                        "UPDATE alerts SET acked_us = COALESCE(acked_us, \(bind: now)), acked_by = COALESCE(acked_by, \(bind: by)) WHERE alert_id = \(bind: id) RETURNING \(Alert.columns)"
                    ).first().map(Alert.init)
                else { return nil }
                changes.publish(.alertAcknowledged, alert)
                return alert
            }
            guard let acked else { throw APIError.notFound("Alert not found.") }
            return try json(acked)
        }
        router.get("api/sensors/{sensor}/settings") { _, context in
            try json(try await SensorSettings.read(try SensorsController.sensor(context), database: database))
        }
        router.put("api/sensors/{sensor}/settings") { request, context in
            try request.requireAdmin(adminKey)
            let body = try await request.validatedObject(context: context)
            var check = Validator(body)
            var settings = SensorSettings(sensor: try SensorsController.sensor(context))
            settings.capacity = body["capacity"] == .null ? nil : check.integer("capacity", 1...1_000_000, required: false)
            settings.warnPercent = check.integer("warn_percent", 1...1000, required: false) ?? SensorSettings.defaultWarnPercent
            settings.criticalPercent = check.integer("critical_percent", 1...1000, required: false) ?? SensorSettings.defaultCriticalPercent
            settings.silentAfterMinutes = body["silent_after_minutes"] == .null ? nil : check.integer("silent_after_minutes", 1...10_080, required: false)
            settings.resetTime = body["reset_time"] == .null ? nil : check.text("reset_time", 5...5, required: false)
            if let time = settings.resetTime, time.wholeMatch(of: /([01][0-9]|2[0-3]):[0-5][0-9]/) == nil {
                check.fail("reset_time", "reset_time must be HH:MM, e.g. 03:00")
            }
            settings.resetTimeZone = settings.resetTime == nil ? nil : check.text("reset_time_zone", 1...64, required: false) ?? "UTC"
            if let zone = settings.resetTimeZone, !PlacesController.timeZones.contains(zone) {
                check.fail("reset_time_zone", "reset_time_zone must be an IANA time zone, e.g. Europe/Paris or UTC")
            }
            try check.check()
            guard settings.warnPercent <= settings.criticalPercent else { throw APIError.invalid("warn_percent", "warn_percent must not be above critical_percent") }
            try await settings.save(database: database)
            return try json(settings)
        }
    }
}
