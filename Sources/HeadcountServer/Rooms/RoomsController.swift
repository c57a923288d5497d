import Foundation
import Hummingbird

/// Seed 000: people register and unregister in a room. `/people/...` is the room `main`;
/// the same routes serve named rooms under `/rooms/{roomId}/people/...`.
struct RoomsController {
    static let defaultRoom = "main"

    let repository: RoomsRepository
    let log: RoomLog

    struct StatusResponse: Encodable {
        let status: String
        let occupants: [String]
        let count: Int
        let at: String?
    }

    struct DaysResponse: Encodable {
        let room: String
        let days: [String]
    }

    struct RoomView: Encodable {
        let room: String
        let occupants: [String]
        let count: Int
    }

    func addRoutes(to router: Router<AppRequestContext>) {
        // New: every room at once, for the dashboard.
        router.get("api/rooms") { _, _ in
            try json(["rooms": try await repository.rooms().map { RoomView(room: $0.room, occupants: $0.occupants, count: $0.occupants.count) }])
        }
        addRoutes(to: router.group("people")) { _ in Self.defaultRoom }
        addRoutes(to: router.group("rooms/{roomId}/people")) { context in try Self.roomID(context) }
    }

    private func addRoutes(to group: RouterGroup<AppRequestContext>, room: @escaping @Sendable (AppRequestContext) throws -> String) {
        group.post("register") { request, context in
            try await self.act(.register, request: request, context: context, room: room(context))
        }
        group.post("unregister") { request, context in
            try await self.act(.unregister, request: request, context: context, room: room(context))
        }
        group.get("status") { request, context in
            let room = try room(context)
            let at = try request.instant("at")
            let occupants = if let at { try await repository.occupants(room: room, at: at) } else { try await repository.occupants(room: room) }
            return try json(StatusResponse(status: occupants.isEmpty ? "closed" : "open", occupants: occupants, count: occupants.count, at: at?.rfc3339))
        }
        group.get("logs") { _, context in
            let room = try room(context)
            return try json(DaysResponse(room: room, days: try await repository.days(room: room)))
        }
        group.get("logs/{date}.csv") { _, context in
            let room = try room(context)
            let day = context.parameters.get("date") ?? ""
            guard Timestamp(day: day) != nil else { throw APIError.badRequest("date must be YYYY-MM-DD") }
            let actions = try await repository.actions(room: room, day: day)
            guard !actions.isEmpty else { throw APIError.notFound("no log for \(day)") }
            return CSV.response(filename: "\(day)-logs.csv", body: .init(byteBuffer: ByteBuffer(string: RoomLog.csv(actions))))
        }
    }

    private func act(_ action: RoomAction, request: Request, context: AppRequestContext, room: String) async throws -> Response {
        // The seed answers any body without a string `name` alike, JSON arrays and strings included.
        guard case .object(let body) = try await request.jsonValue(context: context) else { throw APIError.badRequest("name is required") }
        let name = try Self.name(in: body)
        let result = try await repository.record(action, name: name, room: room)
        log.changed(room: room, day: result.logged.at.day)
        let status = action == .register ? "registered" : "unregistered"
        return json(bytes: OccupantList.answer(result.occupantsJSON, status: status))
    }

    /// The seed's rule: a missing, empty or non-string name is "name is required". Names are trimmed.
    static func name(in body: [String: JSONValue]) throws -> String {
        guard let raw = body["name"]?.stringValue else { throw APIError.badRequest("name is required") }
        let name = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        if let problem = TextRule.problem("name", name, length: 1...200) { throw APIError.badRequest(problem) }
        return name
    }

    static func roomID(_ context: AppRequestContext) throws -> String {
        let id = context.parameters.get("roomId") ?? ""
        guard (1...64).contains(id.count), id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            throw APIError.badRequest("roomId must be 1-64 letters, digits, '-' or '_'")
        }
        return id
    }
}
