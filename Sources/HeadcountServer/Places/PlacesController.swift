import Foundation
import Hummingbird

/// Places: the tree that ties the families together (site > building > floor > zone or room).
/// Reading the tree is public, as occupancy is; changing it takes the admin key.
struct PlacesController {
    let places: PlacesRepository
    let adminKey: String

    /// IANA zone names (and UTC, which Foundation on Linux does not list).
    static let timeZones = Set(TimeZone.knownTimeZoneIdentifiers).union(["UTC"])

    struct PlaceView: Encodable {
        let place: Place
        let children: [String]

        func encode(to encoder: any Encoder) throws {
            try place.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(children, forKey: .children)
        }

        enum Key: String, CodingKey { case children }
    }

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("api/places") { request, context in
            try request.requireAdmin(adminKey)
            var check = Validator(try await request.validatedObject(context: context))
            let id = check.text("id", 1...100, required: false)
            let name = check.text("name", 1...200)
            let parent = check.text("parent_id", 1...100, required: false)
            let timeZone = Self.timeZone(&check, required: false) ?? "UTC"
            let capacity = Self.capacity(&check)
            let staleAfter = check.integer("stale_after_minutes", Self.staleAfterRange, required: false) ?? 960
            try check.check()
            let place = PlacesRepository.NewPlace(
                id: id ?? UUID().uuidString.lowercased(), name: name!, parentID: parent, timeZone: timeZone, capacity: capacity ?? nil,
                staleAfterMinutes: staleAfter)
            return try json(PlaceView(place: try await places.create(place), children: []), status: .created)
        }
        router.get("api/places") { _, _ in
            try json(["places": try await places.places()])
        }
        router.get("api/places/{placeId}") { _, context in
            let id = try context.pathID("placeId")
            guard let place = try await places.place(id) else { throw PlacesRepository.notFound }
            return try json(PlaceView(place: place, children: try await places.children(of: id)))
        }
        router.put("api/places/{placeId}") { request, context in
            try request.requireAdmin(adminKey)
            let id = try context.pathID("placeId")
            let body = try await request.validatedObject(context: context)
            var check = Validator(body, partial: true)
            var fields = PlacesRepository.Fields()
            fields.name = check.text("name", 1...200)
            if body["parent_id"] == .null {
                fields.parentID = .some(nil)
            } else if let parent = check.text("parent_id", 1...100, required: false) {
                // Under itself is refused with every other cycle, by the repository.
                fields.parentID = parent
            }
            fields.timeZone = Self.timeZone(&check, required: true)
            fields.capacity = Self.capacity(&check)
            fields.staleAfterMinutes = check.integer("stale_after_minutes", Self.staleAfterRange)
            try check.check()
            let updated = try await places.update(id, fields)
            return try json(PlaceView(place: updated, children: try await places.children(of: id)))
        }
        router.delete("api/places/{placeId}") { request, context in
            try request.requireAdmin(adminKey)
            let id = try context.pathID("placeId")
            try await places.delete(id, cascade: try Self.cascade(request))
            return Response(status: .noContent)
        }
    }

    /// From a minute to 30 days (default 16 hours).
    static let staleAfterRange: ClosedRange<Int64> = 1...43_200

    /// `time_zone`, an IANA name such as Europe/Paris; nil when absent (in a `PUT`, null is refused).
    private static func timeZone(_ check: inout Validator, required: Bool) -> String? {
        guard let name = check.text("time_zone", 1...64, required: required) else { return nil }
        guard timeZones.contains(name) else {
            check.fail("time_zone", "time_zone must be an IANA time zone, e.g. Europe/Paris or UTC")
            return nil
        }
        return name
    }

    /// `capacity`: absent is nil, null is `.some(nil)` (none), else 0...1,000,000.
    private static func capacity(_ check: inout Validator) -> Int64?? {
        switch check.body["capacity"] {
        case nil: return nil
        case .null?: return .some(nil)
        default: return check.integer("capacity", 0...1_000_000).map { .some($0) }
        }
    }

    /// `?cascade=true|false`; anything else is a 400.
    private static func cascade(_ request: Request) throws -> Bool {
        switch request.uri.queryParameters["cascade"] {
        case nil, "false": return false
        case "true": return true
        default: throw APIError.badRequest("cascade must be true or false")
        }
    }
}
