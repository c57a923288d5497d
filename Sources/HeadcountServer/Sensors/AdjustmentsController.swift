import Hummingbird

/// Drift control: manual adjustments of a sensor's count (admin key), recorded with who and when.
struct AdjustmentsController {
    let database: any Database
    let feed: ChangeFeed
    let adminKey: String
    let retention: SensorRetention

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("api/sensors/{sensor}/adjustments") { request, context in
            try request.requireAdmin(adminKey)
            let sensor = try SensorsController.sensor(context)
            var check = Validator(try await request.validatedObject(context: context))
            let inside = check.integer("inside", -SensorEvent.maxCount...SensorEvent.maxCount)
            let reason = check.text("reason", 1...500, required: false)
            let by = check.text("by", 1...100, required: false) ?? "admin"
            let at = check.instant("at", required: false) ?? Timestamp.now()
            try check.check()
            guard at.microseconds <= Timestamp.now().microseconds + CheckinsController.clockSlack else {
                throw APIError.invalid("at", "at is in the future; an adjustment says what the count was")
            }
            if let refusal = retention.refusal("at", at: at) { throw APIError.invalid("at", refusal) }
            let stored = try await database.transaction(publishingTo: feed) { db, changes in
                try await SensorsRepository.adjust(sensor: sensor, to: inside!, at: at, kind: "manual", reason: reason, by: by, db: db, changes: changes)
            }
            guard stored != nil else { throw SensorsController.unknown }
            let adjustments = try await SensorsRepository(database: database).adjustments(sensor: sensor, from: at.microseconds, to: at.microseconds + 1)
            return try json(adjustments.first!, status: .created)
        }
        router.get("api/sensors/{sensor}/adjustments") { request, context in
            let sensor = try SensorsController.sensor(context)
            let from = try request.instant("from")?.microseconds ?? Timestamp.validMicroseconds.lowerBound
            let to = try request.instant("to")?.microseconds ?? Timestamp.validMicroseconds.upperBound
            guard from < to else { throw APIError.badRequest("from must be before to") }
            guard try await SensorsRepository(database: database).inside(sensor: sensor) != nil else { throw SensorsController.unknown }
            return try json(["adjustments": try await SensorsRepository(database: database).adjustments(sensor: sensor, from: from, to: to)])
        }
    }
}
