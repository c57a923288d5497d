import Hummingbird

/// Seed 004: one reservation per device by `set-reservation`/`get-reservation`, now persistent;
/// plus a history and an overlap-checked booking route.
struct ReservationsController {
    let repository: ReservationsRepository
    let places: PlacesRepository
    let privacy: Privacy
    let adminKey: String

    struct SeedReservation: Encodable {
        let start_time: String
        let end_time: String
        let credential: String
    }

    struct ReservationBody: Encodable {
        let id: Int
        let device_id: String
        let start_time: String
        let end_time: String
        let credential: String
        let holder: String?
        let status: String
        let created_at: String

        init(_ r: Reservation) {
            id = r.id
            device_id = r.deviceID
            start_time = r.start.rfc3339
            end_time = r.end.rfc3339
            credential = r.credential
            holder = r.holder
            status = r.status
            created_at = r.created.rfc3339
        }
    }

    struct History: Encodable {
        let device_id: String
        let reservations: [ReservationBody]
    }

    struct OverlapBody: Encodable {
        let error: String
        let detail: String
        let conflicting: ReservationBody
    }

    func addRoutes(to router: Router<AppRequestContext>) {
        addUtilisationRoutes(to: router)
        router.post("set-reservation") { request, context in
            let r = try Self.parse(try await request.jsonObject(context: context))
            try await repository.set(deviceID: r.deviceID, start: r.start, end: r.end, credential: r.credential, holder: r.holder)
            return try json(["status": "saved"])
        }
        router.get("get-reservation") { request, _ in
            // An id with control characters cannot have been stored (and PostgreSQL cannot even look for U+0000).
            guard let deviceID = request.uri.queryParameters["device_id"].map(String.init), TextRule.allows(deviceID, length: 1...200),
                let r = try await repository.current(deviceID: deviceID)
            else { throw APIError.notFound("not found") }
            return try json(SeedReservation(start_time: r.start.rfc3339, end_time: r.end.rfc3339, credential: r.credential))
        }
        router.get("api/reservations") { request, _ in
            guard let deviceID = try request.text("device_id", length: 0...200), !deviceID.isEmpty else {
                throw APIError.badRequest("device_id required")
            }
            let history = try await repository.history(deviceID: deviceID)
            return try json(History(device_id: deviceID, reservations: history.map(ReservationBody.init)))
        }
        router.post("api/reservations") { request, context in
            let r = try Self.parse(try await request.jsonObject(context: context))
            do {
                let reservation = try await repository.add(deviceID: r.deviceID, start: r.start, end: r.end, credential: r.credential, holder: r.holder)
                return try json(ReservationBody(reservation), status: .created)
            } catch let overlap as ReservationsRepository.Overlap {
                let message = "overlaps reservation \(overlap.existing.id) of device \(r.deviceID)"
                return try json(OverlapBody(error: message, detail: message, conflicting: ReservationBody(overlap.existing)), status: .conflict)
            }
        }
    }

    struct Input {
        let deviceID: String
        let start: Timestamp
        let end: Timestamp
        let credential: String
        let holder: String?
    }

    /// The seed's rules; every bad field is a 400 whose message names it.
    static func parse(_ body: [String: JSONValue]) throws -> Input {
        // The seed's message for a missing id.
        guard let deviceID = body["device_id"]?.stringValue, !deviceID.isEmpty else { throw APIError.badRequest("device_id required") }
        if let problem = TextRule.problem("device_id", deviceID, length: 1...200) { throw APIError.badRequest(problem) }
        func time(_ field: String) throws -> Timestamp {
            guard let text = body[field]?.stringValue, let t = Timestamp(rfc3339: text) else {
                throw APIError.badRequest("\(field) must be an RFC 3339 date-time, e.g. 2024-01-01T10:00:00Z")
            }
            return t
        }
        let start = try time("start_time")
        let end = try time("end_time")
        guard end > start else { throw APIError.badRequest("end_time must be after start_time") }
        guard let credential = body["credential"]?.stringValue else { throw APIError.badRequest("credential must be a string") }
        guard credential.count <= 1000 else { throw APIError.badRequest("credential must be at most 1000 characters") }
        guard !credential.unicodeScalars.contains("\u{0}") else { throw APIError.badRequest("credential must not contain U+0000") }
        // Ours, optional: who holds the reservation (presence names them in the device's place).
        var holder: String?
        switch body["holder"] {
        case nil, .null?: holder = nil
        case .string(let text)?:
            if let problem = TextRule.problem("holder", text, length: 1...200) { throw APIError.badRequest(problem) }
            holder = text
        default: throw APIError.badRequest("holder must be a string or null")
        }
        return Input(deviceID: deviceID, start: start, end: end, credential: credential, holder: holder)
    }
}
