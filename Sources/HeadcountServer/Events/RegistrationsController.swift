import Hummingbird

/// Seed 003's users and registrations, under both of its route shapes.
struct RegistrationsController {
    let users: UsersRepository
    let registrations: RegistrationsRepository

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("users") { request, context in
            var check = Validator(try await request.validatedObject(context: context))
            let id = check.text("userId", 1...100)
            let name = check.text("name", 1...200)
            try check.check()
            guard let user = try await users.create(id: id!, name: name!) else { throw APIError.conflict("User \(id!) already exists") }
            return try json(user, status: .created)
        }
        router.get("users/{userId}") { _, context in
            guard let user = try await users.user(try context.pathID("userId")) else { throw APIError.notFound("User not found") }
            return try json(user)
        }
        router.get("users/{userId}/registrations") { _, context in
            let id = try context.pathID("userId")
            guard try await users.user(id) != nil else { throw APIError.notFound("User not found") }
            return try json(try await registrations.registrations(user: id))
        }

        router.post("registrations") { request, context in
            var check = Validator(try await request.validatedObject(context: context))
            let user = check.text("userId", 1...100)
            let event = check.text("eventId", 1...100)
            try check.check()
            return try json(try await registrations.register(user: user!, event: event!), status: .created)
        }
        router.post("events/{eventId}/registrations") { request, context in
            let event = try context.pathID("eventId")
            var check = Validator(try await request.validatedObject(context: context))
            let user = check.text("userId", 1...100)
            try check.check()
            return try json(try await registrations.register(user: user!, event: event), status: .created)
        }
        router.get("events/{eventId}/registrations") { request, context in
            let status = request.uri.queryParameters["status"].map(String.init)
            if let status, !["confirmed", "waitlisted"].contains(status) {
                throw APIError(.unprocessableContent, "status must be one of confirmed, waitlisted")
            }
            guard let list = try await registrations.registrations(event: try context.pathID("eventId"), status: status) else {
                throw APIError.notFound("Event not found")
            }
            return try json(list)
        }
        router.delete("registrations/{userId}/{eventId}") { _, context in
            try await unregister(context)
        }
        router.delete("events/{eventId}/registrations/{userId}") { _, context in
            try await unregister(context)
        }
    }

    private func unregister(_ context: AppRequestContext) async throws -> Response {
        let user = try context.pathID("userId"), event = try context.pathID("eventId")
        guard try await registrations.unregister(user: user, event: event) else { throw APIError.notFound("Registration not found") }
        return try json(["message": "Registration deleted successfully"])
    }
}
