import Foundation
import Hummingbird

/// Seed 003: events with a capacity and an optional waitlist. Answers as the seed did: 201 on
/// create, bare JSON arrays, 422 for well-formed JSON that breaks a rule.
struct EventsController {
    let events: EventsRepository
    let registrations: RegistrationsRepository
    let privacy: Privacy

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("events") { request, context in
            let body = try await request.validatedObject(context: context)
            var check = Validator(body)
            let id = check.text("eventId", 1...100, required: false) ?? UUID().uuidString.lowercased()
            let fields = Self.changes(&check)
            try check.check()
            guard let event = try await events.create(id: id, fields) else { throw APIError.conflict("Event \(id) already exists") }
            return try json(event, status: .created)
        }
        router.get("events") { request, _ in
            let status = request.uri.queryParameters["status"].map(String.init)
            if let status, !Event.statuses.contains(status) {
                throw APIError(.unprocessableContent, "status must be one of \(Event.statuses.joined(separator: ", "))")
            }
            return json(bytes: try await events.eventsJSON(status: status))
        }
        router.get("events/{eventId}") { _, context in
            guard let event = try await events.event(try context.pathID("eventId")) else { throw APIError.notFound("Event not found") }
            return try json(event)
        }
        router.put("events/{eventId}") { request, context in
            let id = try context.pathID("eventId")
            var check = Validator(try await request.validatedObject(context: context), partial: true)
            if let sent = check.text("eventId", 1...100, required: false), sent != id {
                throw APIError.invalid("eventId", "eventId cannot be changed")
            }
            let changes = Self.changes(&check)
            try check.check()
            return try json(try await events.update(id, changes))
        }
        router.delete("events/{eventId}") { _, context in
            guard try await events.delete(try context.pathID("eventId")) else { throw APIError.notFound("Event not found") }
            return try json(["message": "Event deleted successfully"])
        }
        router.get("events/{eventId}/report") { _, context in
            guard let report = try await events.report(try context.pathID("eventId"), privacy: privacy) else { throw APIError.notFound("Event not found") }
            return try json(report)
        }
        router.get("events/{eventId}/registrations.csv") { _, context in
            let id = try context.pathID("eventId")
            guard try await events.event(id) != nil else { throw APIError.notFound("Event not found") }
            let registrations = self.registrations
            let header = ["userId", "eventId", "status", "position", "registeredAt", "checkedIn"]
            return CSV.stream(filename: "\(id.slug(or: "event"))-registrations.csv", header: header) { (cursor: RegistrationsRepository.Cursor?) in
                let page = try await registrations.page(event: id, after: cursor, limit: 2000)
                return (
                    page.registrations.map { [$0.userId, $0.eventId, $0.status, $0.position.map(String.init) ?? "", $0.registeredAt, $0.checkedIn == true ? "true" : "false"] },
                    page.cursor
                )
            }
        }
    }

    /// The event fields of a create (all required but status and hasWaitlist) or an update (any).
    static func changes(_ check: inout Validator) -> EventChanges {
        EventChanges(
            title: check.text("title", 1...200),
            description: check.text("description", 1...1000, multiline: true),
            date: check.date("date"),
            location: check.text("location", 1...200),
            organizer: check.text("organizer", 1...100),
            status: check.oneOf("status", Event.statuses) ?? (check.partial ? nil : "active"),
            capacity: check.integer("capacity", 1...100_000),
            hasWaitlist: check.boolean(["hasWaitlist", "waitlistEnabled"]) ?? (check.partial ? nil : false)
        )
    }

}
