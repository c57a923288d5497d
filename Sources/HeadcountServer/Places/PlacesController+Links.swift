import Hummingbird

/// The links (sensors as doorways; rooms, devices and events in places) and what they count.
extension PlacesController {
    func addLinkRoutes(to router: Router<AppRequestContext>) {
        router.put("api/sensors/{sensor}/doorway") { request, context in
            try request.requireAdmin(adminKey)
            let sensor = try SensorsController.sensor(context)
            let body = try await request.validatedObject(context: context)
            var check = Validator(body)
            let from = body["from"] == .null ? nil : check.text("from", 1...100)
            let to = body["to"] == .null ? nil : check.text("to", 1...100)
            try check.check()
            guard from != nil || to != nil else { throw APIError.invalid("to", "a doorway leads from a place or to one: from and to cannot both be null") }
            guard from != to else { throw APIError.invalid("to", "a doorway leads between two different places") }
            let doorway = Doorway(sensor: sensor, from: from, to: to)
            try await places.setDoorway(doorway)
            return try json(doorway)
        }
        router.delete("api/sensors/{sensor}/doorway") { request, context in
            try request.requireAdmin(adminKey)
            try await places.unlink(sensor: try SensorsController.sensor(context))
            return Response(status: .noContent)
        }
        // A room, attendance device, reservation device or event in a place, each under its own
        // family's path and read by its family's rule for the id.
        let linkable: [(RouterPath, PlaceLink.Kind, @Sendable (AppRequestContext) throws -> String)] = [
            ("api/rooms/{roomId}/place", .room, RoomsController.roomID),
            ("api/admin/devices/{deviceId}/place", .attendanceDevice, { try $0.pathID("deviceId") }),
            ("api/reservations/devices/{deviceId}/place", .reservationDevice, { try $0.pathText("deviceId", length: 1...200) }),
            ("events/{eventId}/place", .event, { try $0.pathID("eventId") }),
        ]
        for (path, kind, id) in linkable {
            router.put(path) { request, context in
                try request.requireAdmin(adminKey)
                let id = try id(context)
                var check = Validator(try await request.validatedObject(context: context))
                let place = check.text("place_id", 1...100)
                try check.check()
                return try json(try await places.link(kind, id, to: place!))
            }
            router.delete(path) { request, context in
                try request.requireAdmin(adminKey)
                try await places.unlink(kind, try id(context))
                return Response(status: .noContent)
            }
        }
        router.get("api/places/{placeId}/occupancy") { request, context in
            let id = try context.pathID("placeId")
            let at = try request.instant("at")
            guard let tree = try await places.subtree(of: id) else { throw PlacesRepository.notFound }
            let (counted, doorways) = try await places.counted(tree, at: at)
            struct Occupancy: Encodable {
                let place: String
                let at: String
                let counted: Int64
                let doorways: [Doorway]
            }
            return try json(Occupancy(place: id, at: (at ?? Timestamp.now()).rfc3339, counted: counted, doorways: doorways))
        }
    }
}
