import Hummingbird

/// Seed 002's timestamps, behind the admin key: entries and exits of workers, in epoch milliseconds.
struct TimestampsController {
    let timestamps: TimestampsRepository
    let adminKey: String

    static let eventTypes = ["entry", "exit"]
    static let notFound = APIError.notFound("Timestamp not found.")

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("api/timestamps") { request, context in
            try request.requireAdmin(adminKey)
            var check = Validator(try await request.validatedObject(context: context))
            let worker = check.text("worker_id", 1...100)
            let eventType = check.oneOf("event_type", Self.eventTypes, required: true)
            let timestamp = check.body["timestamp"] == nil ? Timestamp.now().microseconds / 1000 : check.integer("timestamp", 0...Timestamp.validMilliseconds.upperBound)
            try check.check()
            guard let created = try await timestamps.create(worker: worker!, eventType: eventType!, timestamp: timestamp!) else {
                throw WorkersController.notFound
            }
            return try json(created, status: .created)
        }
        router.get("api/timestamps") { request, _ in
            try request.requireAdmin(adminKey)
            let worker = request.uri.queryParameters["worker_id"].map(String.init)
            // No worker id holds control characters (PostgreSQL cannot even compare U+0000): nobody's timestamps.
            if let worker, worker.hasControlCharacters { return try json([WorkerTimestamp]()) }
            return try json(try await timestamps.timestamps(worker: worker))
        }
        router.get("api/timestamps/{timestampId}") { request, context in
            try request.requireAdmin(adminKey)
            guard let found = try await timestamps.timestamp(try context.pathID("timestampId")) else { throw Self.notFound }
            return try json(found)
        }
        router.put("api/timestamps/{timestampId}") { request, context in
            try request.requireAdmin(adminKey)
            let id = try context.pathID("timestampId")
            var check = Validator(try await request.validatedObject(context: context), partial: true)
            guard check.body["event_type"] != nil || check.body["timestamp"] != nil else {
                throw APIError.badRequest("send at least one of event_type, timestamp")
            }
            let eventType = check.oneOf("event_type", Self.eventTypes)
            let timestamp = check.integer("timestamp", 0...Timestamp.validMilliseconds.upperBound)
            try check.check()
            guard let updated = try await timestamps.update(id, eventType: eventType, timestamp: timestamp) else { throw Self.notFound }
            return try json(updated)
        }
        router.delete("api/timestamps/{timestampId}") { request, context in
            try request.requireAdmin(adminKey)
            guard try await timestamps.delete(try context.pathID("timestampId")) else { throw Self.notFound }
            return Response(status: .noContent)
        }
    }
}
