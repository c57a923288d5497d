import Foundation
import HummingbirdTesting
import Testing

@testable import HeadcountServer

/// The reports of the other families: bookings against use, an event's outcome, and time and
/// attendance; figures worked out by hand.
@Suite("Reports") struct ReportsTests {
    static let admin = WorkersTests.admin

    /// Three desk bookings: one whose room saw a registration during it, one whose doorway counted
    /// someone, one where nobody came; a device outside any place cannot tell.
    @Test(arguments: Engine.available)
    func bookingsAreUsedWhenTheirPlaceSawSomeone(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            for id in ["desks", "lab"] {
                #expect(try await client.post("/api/places", jsonText(["id": id, "name": id]), headers: Self.admin).status == .created)
            }
            func book(_ device: String, _ start: String, _ end: String) async throws {
                let body = jsonText(["device_id": device, "start_time": start, "end_time": end, "credential": "c", "holder": "Ada"])
                #expect(try await client.post("/api/reservations", body).status == .created)
            }
            try await book("desk-1", "2024-05-06T09:00:00Z", "2024-05-06T12:00:00Z")
            try await book("desk-1", "2024-05-07T09:00:00Z", "2024-05-07T12:00:00Z")
            try await book("desk-2", "2024-05-06T13:00:00Z", "2024-05-06T14:30:00Z")
            try await book("kiosk", "2024-05-06T09:00:00Z", "2024-05-06T10:00:00Z")
            try await PresenceTests.link(client, "/api/reservations/devices/desk-1/place", to: "desks")
            try await PresenceTests.link(client, "/api/reservations/devices/desk-2/place", to: "lab")
            // Someone registers in the desks' room on the 6th; the lab's door counts one in on the 6th at 13:40.
            try await PresenceTests.link(client, "/api/rooms/office/place", to: "desks")
            #expect(try await client.post("/rooms/office/people/register", #"{"name": "Ada"}"#).status.code < 300)
            try await UtilisationTests.post(client, "lab-door", "2024-05-06T13:40:00Z", in: 1)
            #expect(try await client.put("/api/sensors/lab-door/doorway", #"{"from": null, "to": "lab"}"#, headers: Self.admin).status == .ok)

            #expect(try await client.get("/api/reservations/utilisation").status == .unauthorized, "whether anyone was there is the admin's")
            let report = try await client.get("/api/reservations/utilisation?from=2024-05-06T00:00:00Z&to=2024-05-08T00:00:00Z", headers: Self.admin).object()
            let devices = try #require(report["devices"] as? [[String: Any]])
            #expect(devices.map { $0["device_id"] as? String } == ["desk-1", "desk-2", "kiosk"])
            // The room registration happened now, not on the 6th or 7th: desk-1 was not used then.
            #expect(devices[0]["bookings"] as? Int == 2 && devices[0]["booked_hours"] as? Double == 6)
            #expect(devices[0]["used"] as? Int == 0 && devices[0]["no_shows"] as? Int == 2 && devices[0]["no_show_rate"] as? Double == 1)
            #expect(devices[1]["used"] as? Int == 1 && devices[1]["no_shows"] as? Int == 0 && devices[1]["booked_hours"] as? Double == 1.5)
            #expect(devices[2]["place_id"] is NSNull && devices[2]["used"] is NSNull, "no place: cannot tell")
            let total = try #require(report["total"] as? [String: Any])
            #expect(total["bookings"] as? Int == 4 && total["used"] as? Int == 1 && total["no_shows"] as? Int == 2)
            #expect(total["no_show_rate"] as? Double == 0.667)

            // A booking running now in the desks' room, where Ada is registered: used.
            let now = Date()
            let iso = ISO8601DateFormatter()
            try await book("desk-1", iso.string(from: now.addingTimeInterval(-600)), iso.string(from: now.addingTimeInterval(3600)))
            let current = try await client.get("/api/reservations/utilisation", headers: Self.admin).object()
            #expect((current["devices"] as? [[String: Any]])?.first?["used"] as? Int == 1)
            #expect(try await client.get("/api/reservations/utilisation?from=2024-05-08T00:00:00Z&to=2024-05-06T00:00:00Z", headers: Self.admin).status == .badRequest)
        }
    }

    /// pretix's figures: registered, checked in, no-shows, cancellations and waitlist conversions.
    @Test(arguments: Engine.available)
    func anEventReportSaysWhatBecameOfItsRegistrations(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            #expect(try await client.post("/events", jsonText(EventsTests.event("gig", capacity: 2, waitlist: true))).status == .created)
            for user in ["ann", "ben", "cy", "dee"] {
                _ = try await client.post("/users", jsonText(["userId": user, "name": user]))
                _ = try await client.post("/events/gig/registrations", jsonText(["userId": user]))
            }
            // ben cancels: cy moves up from the waitlist (a conversion); ann and cy come, ann twice.
            #expect(try await client.delete("/events/gig/registrations/ben").status == .ok)
            for (user, type, nonce) in [("ann", "entry", "n1"), ("ann", "exit", "n2"), ("ann", "entry", "n3"), ("cy", "entry", "n4")] {
                #expect(try await client.post("/events/gig/check-ins", jsonText(["userId": user, "type": type, "nonce": nonce])).status == .created)
            }
            let report = try await client.get("/events/gig/report").object()
            #expect(report["registered"] as? Int == 3 && report["confirmed"] as? Int == 2 && report["waitlisted"] as? Int == 1)
            #expect(report["cancelled"] as? Int == 1 && report["waitlistConversions"] as? Int == 1)
            #expect(report["checkedIn"] as? Int == 2 && report["noShows"] as? Int == 0 && report["attendanceRate"] as? Double == 1)
            #expect(try await client.get("/events/nope/report").status == .notFound)
        }
    }

    /// Ada: 09:00-12:00 and 13:00-17:30 on Monday, a night shift 22:00-06:00 into Tuesday (split at
    /// local midnight), then an entry on Wednesday with no exit (flagged, not counted). Paris time.
    @Test(arguments: Engine.available)
    func theTimeReportPairsEntriesAndExits(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let token = try await AttendanceTests.device(client, "gate")
            func ms(_ local: String) -> Int64 { Timestamp(rfc3339: local + "+02:00")!.microseconds / 1000 }
            let punches = [
                ("ada", "ENTRY", "2024-05-06T09:00:00"), ("ada", "EXIT", "2024-05-06T12:00:00"), ("ada", "ENTRY", "2024-05-06T13:00:00"),
                ("ada", "EXIT", "2024-05-06T17:30:00"), ("ada", "ENTRY", "2024-05-06T22:00:00"), ("ada", "EXIT", "2024-05-07T06:00:00"),
                ("ada", "ENTRY", "2024-05-08T08:00:00"), ("bob", "EXIT", "2024-05-06T18:00:00"),
            ]
            let records = punches.enumerated().map { i, p in AttendanceTests.record(i + 1, employee: p.0, type: p.1, at: ms(p.2), device: "gate") }
            #expect(try await AttendanceTests.sync(client, token, records).status == .ok)

            let uri = "/api/admin/attendance/report?tenant_id=ACME&tz=Europe/Paris&from=2024-05-06T00:00:00%2B02:00&to=2024-05-09T00:00:00%2B02:00"
            #expect(try await client.get(uri).status == .unauthorized)
            let report = try await client.get(uri, headers: Self.admin).object()
            let days = try #require(report["days"] as? [[String: Any]])
            let ada = days.filter { $0["employee_id"] as? String == "ada" }
            #expect(ada.map { $0["date"] as? String } == ["2024-05-06", "2024-05-07", "2024-05-08"])
            // Monday: 3 h + 4.5 h + 2 h before midnight; Tuesday: 6 h after it.
            #expect(ada.map { $0["inside_seconds"] as? Int } == [34_200, 21_600, 0])
            #expect(ada[0]["first_entry"] as? String == "2024-05-06T09:00:00+02:00" && ada[0]["last_exit"] as? String == "2024-05-06T17:30:00+02:00")
            #expect(ada.map { $0["pairs"] as? Int } == [2, 1, 0])
            #expect(ada[2]["unpaired_entries"] as? Int == 1 && ada[2]["last_exit"] is NSNull)
            let bob = try #require(days.first { $0["employee_id"] as? String == "bob" })
            #expect(bob["unpaired_exits"] as? Int == 1 && bob["inside_seconds"] as? Int == 0)
            let totals = try #require(report["totals"] as? [[String: Any]])
            #expect(totals.map { $0["date"] as? String } == ["2024-05-06", "2024-05-07", "2024-05-08"])
            #expect(totals.map { $0["workers"] as? Int } == [1, 1, 0])

            let csv = try await client.get(uri.replacingOccurrences(of: "report?", with: "report.csv?") + "&employee_id=ada", headers: Self.admin).text
            let lines = csv.components(separatedBy: "\r\n").filter { !$0.isEmpty }
            #expect(lines.first == "employee_id,date,first_entry,last_exit,inside_seconds,pairs,unpaired_entries,unpaired_exits")
            #expect(lines.count == 4 && lines[2] == "ada,2024-05-07,,2024-05-07T06:00:00+02:00,21600,1,0,0")
        }
    }

    /// With the privacy switch on, one person's figures are not shown: the time report keeps only
    /// days with k or more workers, an event's small counts are withheld.
    @Test(arguments: Engine.available)
    func thePrivacySwitchCoversEveryReport(engine: Engine) async throws {
        var environment = try await TestEnvironment.make(engine)
        environment.configuration.privacyK = 5
        try await environment.withApp { client in
            let token = try await AttendanceTests.device(client, "gate")
            let at = Timestamp(rfc3339: "2024-05-06T09:00:00Z")!.microseconds / 1000
            let records = (0..<6).flatMap { i in
                [
                    AttendanceTests.record(2 * i + 1, employee: "w\(i)", type: "ENTRY", at: at, device: "gate"),
                    AttendanceTests.record(2 * i + 2, employee: "w\(i)", type: "EXIT", at: at + 3_600_000, device: "gate"),
                ]
            }
            #expect(try await AttendanceTests.sync(client, token, records).status == .ok)
            let report = try await client.get("/api/admin/attendance/report?tenant_id=ACME&from=2024-05-06T00:00:00Z&to=2024-05-08T00:00:00Z", headers: Self.admin).object()
            #expect((report["days"] as? [Any])?.isEmpty == true && report["suppressed"] as? Bool == true)
            let totals = try #require(report["totals"] as? [[String: Any]])
            #expect(totals[0]["workers"] as? Int == 6 && totals[0]["inside_seconds"] as? Int == 6 * 3600)
            #expect(totals[1]["workers"] as? Int == 0, "no one is no one")

            #expect(try await client.post("/events", jsonText(EventsTests.event("talk", capacity: 10, waitlist: false))).status == .created)
            for user in ["ann", "ben"] {
                _ = try await client.post("/users", jsonText(["userId": user, "name": user]))
                _ = try await client.post("/events/talk/registrations", jsonText(["userId": user]))
            }
            let event = try await client.get("/events/talk/report").object()
            // Two registered: every count goes, since each follows from the others.
            #expect(event["registered"] is NSNull && event["noShows"] is NSNull && event["attendanceRate"] is NSNull)
            #expect(event["checkedIn"] is NSNull && event["waitlisted"] is NSNull && event["suppressed"] as? Bool == true)
        }
    }
}
