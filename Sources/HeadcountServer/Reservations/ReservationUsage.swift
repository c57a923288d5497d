import Hummingbird
import SQLKit

/// Booked against used: a booking is used when its device's place saw someone during it (see
/// `PlacesRepository.sawPresence`), a no-show when it ended without; one still running with no
/// one seen yet is pending. Devices without a place cannot tell, and say null. The figures count
/// bookings: the privacy switch treats a device with fewer than k bookings as fewer than k people.
struct DeviceUtilisation: Encodable, Sendable {
    let deviceID: String
    @Nullable var placeID: String?
    /// Active bookings starting in the period, and their booked hours.
    var bookings = 0
    var bookedHours = 0.0
    @Nullable var used: Int?
    @Nullable var noShows: Int?
    @Nullable var pending: Int?
    @Nullable var noShowRate: Double?
    var suppressed = false

    enum CodingKeys: String, CodingKey {
        case bookings, used, pending, suppressed
        case deviceID = "device_id"
        case placeID = "place_id"
        case bookedHours = "booked_hours"
        case noShows = "no_shows"
        case noShowRate = "no_show_rate"
    }

    /// The no-show rate of judged bookings, and the privacy switch applied.
    mutating func finish(privacy: Privacy) {
        bookedHours = rounded(bookedHours)
        if let used, let noShows, used + noShows > 0 { noShowRate = rounded(Double(noShows) / Double(used + noShows), places: 1000) }
        if privacy.hides(people: Int64(bookings)) { withhold() }
    }

    mutating func withhold() { (used, noShows, pending, noShowRate, suppressed) = (nil, nil, nil, nil, true) }
}

extension ReservationsRepository {
    /// At most this many bookings in one report (each is judged with a few queries).
    static let maxReported = 2000

    /// Each device's bookings starting in [from, to), judged at `now`, and the totals.
    func utilisation(from: Int64, to: Int64, now: Int64, places: PlacesRepository, privacy: Privacy) async throws -> (
        devices: [DeviceUtilisation], total: DeviceUtilisation
    ) {
        let (bookings, placeOf) = try await database.read { db in
            let bookings = try await db.raw(
                """
                SELECT \(unsafeRaw: Self.columns) FROM reservations WHERE status = 'active' AND start_us >= \(bind: from) AND start_us < \(bind: to)
                ORDER BY device_id, start_us LIMIT \(literal: Self.maxReported + 1)
                """
            ).all().map(Self.reservation)
            var placeOf: [String: String] = [:]
            for row in try await db.raw("SELECT link_id, place_id FROM place_links WHERE kind = 'reservation_device'").all() {
                placeOf[try row.decode(column: "link_id", as: String.self)] = try row.decode(column: "place_id", as: String.self)
            }
            return (bookings, placeOf)
        }
        guard bookings.count <= Self.maxReported else {
            throw APIError.badRequest("more than \(Self.maxReported) bookings start in the period: narrow from/to")
        }
        var trees: [String: Subtree] = [:]
        var devices: [DeviceUtilisation] = []
        var total = DeviceUtilisation(deviceID: "*", placeID: nil, used: 0, noShows: 0, pending: 0)
        for booking in bookings {
            if devices.last?.deviceID != booking.deviceID {
                let place = placeOf[booking.deviceID]
                devices.append(
                    DeviceUtilisation(deviceID: booking.deviceID, placeID: place, used: place.map { _ in 0 }, noShows: place.map { _ in 0 }, pending: place.map { _ in 0 }))
                if let place, trees[place] == nil { trees[place] = try await places.subtree(of: place) }
            }
            let i = devices.count - 1
            devices[i].bookings += 1
            devices[i].bookedHours += Double(booking.end.microseconds - booking.start.microseconds) / 3_600_000_000
            total.bookings += 1
            total.bookedHours += Double(booking.end.microseconds - booking.start.microseconds) / 3_600_000_000
            guard let place = devices[i].placeID, let tree = trees[place], booking.start.microseconds < now else { continue }
            let until = min(booking.end.microseconds, now)
            if try await places.sawPresence(in: tree, from: booking.start.microseconds, to: until, now: now) {
                devices[i].used! += 1
                total.used! += 1
            } else if booking.end.microseconds <= now {
                devices[i].noShows! += 1
                total.noShows! += 1
            } else {
                devices[i].pending! += 1
                total.pending! += 1
            }
        }
        for i in devices.indices { devices[i].finish(privacy: privacy) }
        total.finish(privacy: privacy)
        // A device withheld would be the total less the others: the total goes with it.
        if devices.contains(where: \.suppressed) { total.withhold() }
        return (devices, total)
    }
}

extension ReservationsController {
    func addUtilisationRoutes(to router: Router<AppRequestContext>) {
        router.get("api/reservations/utilisation") { request, _ in
            // Whether a booking was used says whether anyone was in its place then: the admin's.
            try request.requireAdmin(adminKey)
            let (from, to) = try SensorsController.range(request, defaultSpan: 7 * RollupLevel.day.length)
            let report = try await repository.utilisation(from: from, to: to, now: Timestamp.now().microseconds, places: places, privacy: privacy)
            struct Report: Encodable {
                let from: String
                let to: String
                let devices: [DeviceUtilisation]
                let total: DeviceUtilisation
            }
            return try json(Report(from: Timestamp(microseconds: from).rfc3339, to: Timestamp(microseconds: to).rfc3339, devices: report.devices, total: report.total))
        }
    }
}
