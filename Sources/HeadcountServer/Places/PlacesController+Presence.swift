import Hummingbird

/// Who is in a place, and admins' corrections of presences the stale policy closes. Names take
/// the admin key.
extension PlacesController {
    func addPresenceRoutes(to router: Router<AppRequestContext>) {
        router.get("api/places/{placeId}/presence") { request, context in
            try request.requireAdmin(adminKey)
            let id = try context.pathID("placeId")
            guard let presence = try await places.presence(of: id, at: try request.instant("at")) else { throw PlacesRepository.notFound }
            return try json(presence)
        }
        router.put("api/presence-corrections") { request, context in
            try request.requireAdmin(adminKey)
            let body = try await request.validatedObject(context: context)
            var check = Validator(body)
            let source = check.oneOf("source", ["room", "attendance"], required: true)
            let sourceID = check.text("source_id", 3...301)
            let since = check.instant("since")
            let left = body["left_at"] == .null ? nil : check.instant("left_at")
            let by = check.text("by", 1...100, required: false) ?? "admin"
            try check.check()
            let now = Timestamp.now()
            if let left, let since, left.microseconds < since.microseconds { throw APIError.invalid("left_at", "left_at is before since") }
            if let left, left.microseconds > now.microseconds + CheckinsController.clockSlack { throw APIError.invalid("left_at", "left_at is in the future") }
            let correction = PresenceCorrection(source: source!, sourceID: sourceID!, since: since!, left: left, correctedBy: by, correctedAt: now)
            return try json(try await places.correct(correction))
        }
        router.get("api/presence-corrections") { request, _ in
            try request.requireAdmin(adminKey)
            return try json(["corrections": try await places.corrections()])
        }
    }
}
