import Hummingbird

/// Check-in at an event's door (pretix's device rules): registered, confirmed people scan in and
/// out; a scan made offline carries its `datetime`; its `nonce` makes a retry safe.
struct CheckinsController {
    let checkIns: CheckinsRepository

    /// How far ahead of the server's clock a scan's `datetime` may be (a device clock running fast).
    static let clockSlack: Int64 = 5 * 60 * 1_000_000

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("events/{eventId}/check-ins") { request, context in
            let event = try context.pathID("eventId")
            var check = Validator(try await request.validatedObject(context: context))
            let user = check.text("userId", 1...100)
            let nonce = check.text("nonce", 1...100)
            let type = check.oneOf("type", ["entry", "exit"]) ?? "entry"
            let at = check.instant("datetime", required: false)
            try check.check()
            let now = Timestamp.now()
            if let at, at.microseconds > now.microseconds + Self.clockSlack {
                throw APIError.invalid("datetime", "datetime is in the future; a scan's datetime is when it was made")
            }
            // A replay answers exactly as the first scan did: 201 and the same body.
            let (checkIn, _) = try await checkIns.checkIn(event: event, user: user!, type: type, at: at ?? now, nonce: nonce!)
            return try json(checkIn, status: .created)
        }
        router.get("events/{eventId}/check-ins") { _, context in
            guard let list = try await checkIns.checkIns(event: try context.pathID("eventId")) else { throw APIError.notFound("Event not found") }
            return try json(list)
        }
    }
}
