import Hummingbird

/// Roll calls for an evacuation: a snapshot of everyone named in a place, marked safe or missing
/// from several phones at once. Every route takes the admin key (they carry names).
struct RollCallsController {
    let rollCalls: RollCallsRepository
    let adminKey: String

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("api/places/{placeId}/roll-calls") { request, context in
            try request.requireAdmin(adminKey)
            guard let rollCall = try await rollCalls.create(place: try context.pathID("placeId")) else { throw PlacesRepository.notFound }
            return try json(rollCall, status: .created)
        }
        router.get("api/roll-calls") { request, _ in
            try request.requireAdmin(adminKey)
            let open: Bool
            switch request.uri.queryParameters["open"] {
            case nil, "false": open = false
            case "true": open = true
            default: throw APIError.badRequest("open must be true or false")
            }
            return try json(["roll_calls": try await rollCalls.rollCalls(open: open)])
        }
        router.get("api/roll-calls/{rollCallId}") { request, context in
            try request.requireAdmin(adminKey)
            guard let rollCall = try await rollCalls.rollCall(try context.pathID("rollCallId")) else { throw RollCallsRepository.notFound }
            return try json(rollCall)
        }
        router.get("api/roll-calls/{rollCallId}.csv") { request, context in
            try request.requireAdmin(adminKey)
            guard let rollCall = try await rollCalls.rollCall(try context.pathID("rollCallId")) else { throw RollCallsRepository.notFound }
            let header = ["key", "name", "source", "source_id", "place_id", "since", "status", "marked_by", "marked_at"]
            let rows = (rollCall.people ?? []).map { [$0.key, $0.name, $0.source, $0.sourceID, $0.placeID, $0.since, $0.status, $0.markedBy ?? "", $0.markedAt ?? ""] }
            let body = ([header] + rows).map(CSV.row).joined()
            return CSV.response(filename: "roll-call-\(rollCall.id).csv", body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
        }
        router.put("api/roll-calls/{rollCallId}/people/{key}") { request, context in
            try request.requireAdmin(adminKey)
            let id = try context.pathID("rollCallId"), key = try context.pathID("key", length: 1...10)
            var check = Validator(try await request.validatedObject(context: context))
            let status = check.oneOf("status", ["safe", "missing"], required: true)
            let by = check.text("by", 1...100, required: false) ?? "admin"
            let at = check.instant("marked_at", required: false)
            try check.check()
            let now = Timestamp.now()
            if let at, at.microseconds > now.microseconds + CheckinsController.clockSlack {
                throw APIError.invalid("marked_at", "marked_at is in the future; it is when the mark was made")
            }
            return try json(try await rollCalls.mark(id, person: key, status: status!, by: by, at: at ?? now))
        }
        router.post("api/roll-calls/{rollCallId}/close") { request, context in
            try request.requireAdmin(adminKey)
            guard let rollCall = try await rollCalls.close(try context.pathID("rollCallId")) else { throw RollCallsRepository.notFound }
            return try json(rollCall)
        }
    }
}
