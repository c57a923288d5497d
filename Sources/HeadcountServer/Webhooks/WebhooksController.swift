import Hummingbird

/// Outbound webhooks (admin key): subscriptions, their secrets and their delivery logs.
struct WebhooksController {
    let webhooks: WebhooksRepository
    let places: PlacesRepository
    let allowPrivate: Bool
    let adminKey: String

    /// What a subscription may ask for (a test ping is sent on request, not subscribed to).
    static let catalogue = WebhookEvent.allCases.filter { $0 != .webhookTest }.map(\.rawValue)

    struct Created: Encodable {
        let webhook: Webhook
        let secret: String

        func encode(to encoder: any Encoder) throws {
            try webhook.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(secret, forKey: .secret)
        }

        enum Key: String, CodingKey { case secret }
    }

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("api/webhooks") { request, context in
            try request.requireAdmin(adminKey)
            let fields = try await fields(try await request.validatedObject(context: context), partial: false)
            let (webhook, secret) = try await webhooks.create(fields)
            return try json(Created(webhook: webhook, secret: secret), status: .created)
        }
        router.get("api/webhooks") { request, _ in
            try request.requireAdmin(adminKey)
            return try json(["webhooks": try await webhooks.webhooks()])
        }
        router.get("api/webhooks/{webhookId}") { request, context in
            try request.requireAdmin(adminKey)
            guard let webhook = try await webhooks.webhook(try context.pathID("webhookId")) else { throw WebhooksRepository.notFound }
            return try json(webhook)
        }
        router.put("api/webhooks/{webhookId}") { request, context in
            try request.requireAdmin(adminKey)
            let id = try context.pathID("webhookId")
            let fields = try await fields(try await request.validatedObject(context: context), partial: true)
            return try json(try await webhooks.update(id, fields))
        }
        router.delete("api/webhooks/{webhookId}") { request, context in
            try request.requireAdmin(adminKey)
            guard try await webhooks.delete(try context.pathID("webhookId")) else { throw WebhooksRepository.notFound }
            return Response(status: .noContent)
        }
        router.post("api/webhooks/{webhookId}/rotate-secret") { request, context in
            try request.requireAdmin(adminKey)
            let (webhook, secret) = try await webhooks.rotate(try context.pathID("webhookId"))
            return try json(Created(webhook: webhook, secret: secret))
        }
        router.get("api/webhooks/{webhookId}/deliveries") { request, context in
            try request.requireAdmin(adminKey)
            let limit = try request.integer("limit", in: 1...1000) ?? 100
            guard let list = try await webhooks.deliveries(try context.pathID("webhookId"), limit: Int(limit)) else { throw WebhooksRepository.notFound }
            return try json(["deliveries": list])
        }
        router.post("api/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver") { request, context in
            try request.requireAdmin(adminKey)
            let id = try context.pathID("webhookId")
            guard let delivery = Int64(try context.pathID("deliveryId", length: 1...19)),
                let queued = try await webhooks.redeliver(id, delivery: delivery)
            else { throw APIError.notFound("Delivery not found.") }
            return try json(queued, status: .accepted)
        }
        router.post("api/webhooks/{webhookId}/test") { request, context in
            try request.requireAdmin(adminKey)
            guard let queued = try await webhooks.test(try context.pathID("webhookId")) else { throw WebhooksRepository.notFound }
            return try json(queued, status: .accepted)
        }
    }

    /// A create's fields (url and events required) or an update's (any). The URL must be one a
    /// webhook may reach; a place filter must name a place.
    private func fields(_ body: [String: JSONValue], partial: Bool) async throws -> WebhooksRepository.Fields {
        var check = Validator(body, partial: partial)
        var fields = WebhooksRepository.Fields()
        fields.url = check.text("url", 1...2000)
        if let url = fields.url, let problem = WebhookDestination.problem(url) { check.fail("url", problem) }
        switch body["events"] {
        case nil where partial: break
        case .array(let items)? where !items.isEmpty && items.count <= Self.catalogue.count:
            let names = items.compactMap(\.stringValue)
            if names.count == items.count, names.allSatisfy(Self.catalogue.contains) {
                fields.events = Array(Set(names)).sorted()
            } else {
                check.fail("events", "events must name types of the catalogue: \(Self.catalogue.joined(separator: ", "))")
            }
        default: check.fail("events", "events must be a non-empty array of event types: \(Self.catalogue.joined(separator: ", "))")
        }
        for (field, length) in [("filter_sensor", SensorEvent.maxSensorLength), ("filter_place", 100)] {
            let value: String?? = body[field] == .null ? .some(nil) : check.text(field, 1...length, required: false).map { .some($0) }
            if field == "filter_sensor" { fields.filterSensor = value } else { fields.filterPlace = value }
        }
        switch body["enabled"] {
        case nil: break
        case .bool(let enabled)?: fields.enabled = enabled
        default: check.fail("enabled", "enabled must be true or false")
        }
        try check.check()
        if case .some(.some(let place)) = fields.filterPlace, try await places.place(place) == nil {
            throw APIError.invalid("filter_place", "filter_place names no place")
        }
        if let url = fields.url {
            do { try await WebhookDestination.check(url, allowPrivate: allowPrivate) } catch let refused as WebhookDestination.Refused {
                throw APIError.invalid("url", refused.reason)
            }
        }
        return fields
    }
}
