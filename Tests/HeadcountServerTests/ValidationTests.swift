import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import HeadcountServer

/// The one text rule and the one reading of path and query parameters that every family uses.
@Suite("Validation") struct ValidationTests {
    @Test func textRuleSaysWhatIsWrong() {
        #expect(TextRule.problem("name", "Ada", length: 1...200) == nil)
        #expect(TextRule.problem("name", "", length: 1...200) == "name is required")
        #expect(TextRule.problem("name", String(repeating: "é", count: 201), length: 1...200) == "name must be at most 200 characters")
        #expect(TextRule.problem("title", "ab", length: 3...10) == "title must be 3-10 characters")
        #expect(TextRule.problem("name", "a\u{0}b", length: 1...200) == "name must not contain control characters")
        #expect(TextRule.problem("name", "a\u{7F}", length: 1...200) == "name must not contain control characters")
        #expect(TextRule.problem("note", "line\nline", length: 0...50, allowing: ["\n"]) == nil)
        #expect(TextRule.problem("note", "tab\there", length: 0...50, allowing: ["\n"]) != nil)
        // Characters, not bytes or scalars: a flag emoji is one.
        #expect(TextRule.allows("🇩🇪", length: 1...1))
        #expect(TextRule.allows("", length: 0...20))
    }

    /// Every `?at=`-style parameter reads an unencoded `+` offset (which arrives as a space), and
    /// refuses what is not an instant with a 400 naming it. The rooms parser once did not.
    @Test func instantsInQueriesAreReadAlikeEverywhere() async throws {
        try await TestEnvironment.make(.sqlite).withApp { client in
            #expect(try await client.post("/people/register", #"{"name":"Ada"}"#).status == .ok)
            #expect(try await client.post("/api/webhook", #"{"sensor":"door","ts":"2024-01-01T09:00:00Z","in_count":3,"out":0}"#).status == .ok)
            let future = "2999-01-01T10:00:00+02:00"
            for (path, field) in [("/people/status?at=", "at"), ("/rooms/main/people/status?at=", "at"), ("/api/sensors/door/occupancy?atInstant=", "atInstant")] {
                let plain = try await client.get(path + future)
                #expect(plain.status == .ok, "\(path): an unencoded + offset")
                let encoded = try await client.get(path + future.replacingOccurrences(of: "+", with: "%2B"))
                #expect(encoded.status == .ok)
                #expect(try plain.object()[field] as? String == "2999-01-01T08:00:00Z")
                let bad = try await client.get(path + "soon")
                #expect(bad.status == .badRequest)
                #expect(try bad.errorMessage() == "\(field) must be an RFC 3339 date-time, e.g. 2024-01-01T10:00:00Z")
            }
            let status = try await client.get("/people/status?at=2999-01-01T10:00:00+02:00").object()
            #expect(status["occupants"] as? [String] == ["Ada"])
        }
    }

    @Test func pathAndQueryTextFollowTheRule() async throws {
        try await TestEnvironment.make(.sqlite).withApp { client in
            let long = String(repeating: "s", count: 201)
            let sensor = try await client.get("/api/sensors/\(long)/occupancy")
            #expect(sensor.status == .badRequest)
            #expect(try sensor.errorMessage() == "sensor must be at most 200 characters")
            let control = try await client.get("/api/sensors/a%01b/occupancy")
            #expect(try control.errorMessage() == "sensor must not contain control characters")
            let device = try await client.get("/api/reservations?device_id=pc%001")
            #expect(device.status == .badRequest)
            #expect(try device.errorMessage() == "device_id must not contain control characters")
            #expect(try await client.get("/api/reservations?device_id=").errorMessage() == "device_id required")
            let from = try await client.get("/api/admin/attendance?tenant_id=acme&from=yesterday", headers: AttendanceTests.admin)
            #expect(from.status == .badRequest)
            #expect(try from.errorMessage().hasPrefix("from must be an integer between"))
        }
    }

    /// The events and attendance families keep their 422 messages, one per field at fault: a blank
    /// optional field is out of range, not missing.
    @Test func validatorMessagesNameTheRange() async throws {
        try await TestEnvironment.make(.sqlite).withApp { client in
            let created = try await client.post(
                "/events",
                jsonText([
                    "eventId": "  ", "title": String(repeating: "t", count: 201), "description": "a\u{1}b", "date": "2024-12-15",
                    "location": "Hall", "capacity": 10, "organizer": "Ana",
                ]))
            #expect(created.status == .unprocessableContent)
            let fields = try #require(try created.object()["fields"] as? [[String: String]])
            #expect(fields.map { $0["field"] } == ["eventId", "title", "description"])
            #expect(
                fields.map { $0["message"] } == [
                    "eventId must be 1-100 characters", "title must be 1-200 characters", "description must not contain control characters",
                ])
        }
    }
}
