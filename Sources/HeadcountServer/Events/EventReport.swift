import Hummingbird
import SQLKit

/// `GET /events/{eventId}/report`: what became of an event's registrations. `noShows` are the
/// confirmed who never checked in (final once the event is over); `waitlistConversions` the
/// confirmed who were promoted from the waitlist.
struct EventReport: Encodable, Sendable {
    let eventId: String
    let title: String
    let date: String
    let status: String
    let capacity: Int64
    @Nullable var registered: Int64?
    @Nullable var confirmed: Int64?
    @Nullable var waitlisted: Int64?
    @Nullable var cancelled: Int64?
    @Nullable var checkedIn: Int64?
    @Nullable var noShows: Int64?
    @Nullable var waitlistConversions: Int64?
    /// Checked in over confirmed.
    @Nullable var attendanceRate: Double?
    /// True when the privacy switch withheld the figures.
    var suppressed = false

    /// The counts go together, since each follows from others (registered − confirmed is the
    /// waitlist): when any is from 1 to k-1 people, all are withheld.
    mutating func apply(_ privacy: Privacy) {
        let counts = [registered, confirmed, waitlisted, cancelled, checkedIn, noShows, waitlistConversions]
        guard counts.contains(where: { $0.map { privacy.hides(people: $0) } ?? false }) else { return }
        (registered, confirmed, waitlisted, cancelled, checkedIn, noShows, waitlistConversions) = (nil, nil, nil, nil, nil, nil, nil)
        (attendanceRate, suppressed) = (nil, true)
    }
}

extension EventsRepository {
    /// The report of an event, read in one transaction; nil for an unknown event.
    func report(_ id: String, privacy: Privacy) async throws -> EventReport? {
        try await database.read { db in
            guard
                let row = try await db.raw(
                    "SELECT title, date, status, capacity, confirmed, waitlisted, cancellations FROM events WHERE event_id = \(bind: id)"
                ).first()
            else { return nil }
            // Everyone confirmed who checked in at least once, and the promoted among the confirmed.
            let counts = try await db.raw(
                """
                SELECT
                    (SELECT COUNT(DISTINCT c.user_id) FROM event_checkins c
                        JOIN registrations r ON r.event_id = c.event_id AND r.user_id = c.user_id AND r.status = 'confirmed'
                        WHERE c.event_id = \(bind: id) AND c.type = 'entry') AS attended,
                    (SELECT COUNT(*) FROM registrations WHERE event_id = \(bind: id) AND status = 'confirmed' AND promoted_us IS NOT NULL) AS promoted
                """
            ).first()!
            let confirmed = try row.decode(column: "confirmed", as: Int64.self), waitlisted = try row.decode(column: "waitlisted", as: Int64.self)
            let attended = try counts.decode(column: "attended", as: Int64.self)
            var report = EventReport(
                eventId: id, title: try row.decode(column: "title", as: String.self), date: try row.decode(column: "date", as: String.self),
                status: try row.decode(column: "status", as: String.self), capacity: try row.decode(column: "capacity", as: Int64.self),
                registered: confirmed + waitlisted, confirmed: confirmed, waitlisted: waitlisted,
                cancelled: try row.decode(column: "cancellations", as: Int64.self), checkedIn: attended, noShows: confirmed - attended,
                waitlistConversions: try counts.decode(column: "promoted", as: Int64.self),
                attendanceRate: confirmed > 0 ? rounded(Double(attended) / Double(confirmed), places: 1000) : nil)
            report.apply(privacy)
            return report
        }
    }
}
