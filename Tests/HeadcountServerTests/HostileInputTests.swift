import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import NIOFoundationCompat
import SQLKit
import Testing

@testable import HeadcountServer

/// Every field of every JSON route, and every whole body, replaced in turn by values that have
/// broken servers: integer extremes, numbers past 2^53, huge and empty strings, NUL, a lone
/// surrogate, nesting past the limit, the wrong type. The answer must be JSON and below 500, and a
/// refused request must change nothing stored. A new JSON route must join the catalogue: a test
/// checks it against the OpenAPI document.
@Suite("Hostile input") struct HostileInputTests {
    /// Raw JSON texts, so that what no encoder would write (a lone surrogate) can be sent too.
    static let extremes: [String] = [
        "-9223372036854775808", "9223372036854775807", "9223372036854775808", "9007199254740993", "-9007199254740993",
        "0", "-1", "1.5", "1e308", "-1e308", "1e400", #""""#, "\"\(String(repeating: "x", count: 100_000))\"", #""a\u0000b""#,
        #""\ud800""#, #""x\n\r\t""#, String(repeating: "[", count: 40) + String(repeating: "]", count: 40), "[]", "{}", "null", "true",
        #""2024-01-01T00:00:00Z""#, #""0000-12-31T23:00:00Z""#,
    ]

    enum Credentials { case none, admin, device }

    /// A JSON route with a body that it accepts as it stands.
    struct Route: CustomTestStringConvertible {
        let method: HTTPRequest.Method
        let path: String
        let credentials: Credentials
        let body: [String: Any]
        var testDescription: String { "\(method) \(path)" }
    }

    static let now = Timestamp.now().microseconds / 1000
    static var routes: [Route] {
        [
            Route(method: .post, path: "/people/register", credentials: .none, body: ["name": "Ada"]),
            Route(method: .post, path: "/people/unregister", credentials: .none, body: ["name": "Ada"]),
            Route(method: .post, path: "/rooms/lab/people/register", credentials: .none, body: ["name": "Ada"]),
            Route(method: .post, path: "/rooms/lab/people/unregister", credentials: .none, body: ["name": "Ada"]),
            Route(method: .post, path: "/api/webhook", credentials: .none, body: ["sensor": "door", "ts": "2024-01-01T10:00:00Z", "in_count": 1, "out": 0, "id": "w1"]),
            Route(
                method: .post, path: "/api/webhook/batch", credentials: .none, body: ["events": [["sensor": "door", "ts": "2024-01-01T10:00:00Z", "in": 1, "out": 0, "id": "b1"]]]),
            Route(
                method: .post, path: "/set-reservation", credentials: .none,
                body: ["device_id": "d1", "start_time": "2024-01-01T10:00:00Z", "end_time": "2024-01-01T11:00:00Z", "credential": "c"]),
            Route(
                method: .post, path: "/api/reservations", credentials: .none,
                body: ["device_id": "d2", "start_time": "2024-01-01T10:00:00Z", "end_time": "2024-01-01T11:00:00Z", "credential": "c", "holder": "Dana"]),
            Route(method: .post, path: "/events", credentials: .none, body: EventsTests.event("fuzz", capacity: 5, waitlist: true)),
            Route(method: .put, path: "/events/ev1", credentials: .none, body: ["title": "t", "capacity": 10, "hasWaitlist": true, "status": "active", "date": "2024-12-15"]),
            Route(method: .post, path: "/users", credentials: .none, body: ["userId": "u2", "name": "Grace"]),
            Route(method: .post, path: "/registrations", credentials: .none, body: ["userId": "u1", "eventId": "ev1"]),
            Route(method: .post, path: "/events/ev1/registrations", credentials: .none, body: ["userId": "u1"]),
            Route(method: .post, path: "/api/admin/activation-codes", credentials: .admin, body: ["tenant_id": "ACME", "description": "d", "expires_at": now + 60_000]),
            Route(
                method: .post, path: "/api/devices/register", credentials: .none,
                body: ["activation_code": "ACME-SPARE", "device_id": "tab-2", "device_name": "n", "device_model": "m", "device_manufacturer": "f", "android_version": "14"]),
            Route(method: .post, path: "/api/attendance/sync", credentials: .device, body: ["records": [AttendanceTests.record(7, at: now, device: "tab-1")]]),
            Route(
                method: .post, path: "/api/audit/sync", credentials: .device,
                body: ["audits": [["local_id": 1, "action": "review", "timestamp": now, "reason": "r", "metadata": ["a": 1]]]]),
            Route(method: .put, path: "/api/admin/devices/tab-1/deactivate", credentials: .admin, body: ["reason": "lost"]),
            Route(method: .delete, path: "/api/admin/attendance/1", credentials: .admin, body: ["reason": "mistake"]),
            Route(method: .post, path: "/api/timestamps", credentials: .admin, body: ["worker_id": "w-1", "event_type": "entry", "timestamp": now]),
            Route(method: .put, path: "/api/timestamps/TIMESTAMP", credentials: .admin, body: ["event_type": "exit", "timestamp": now]),
            Route(method: .put, path: "/api/workers/w-1", credentials: .admin, body: ["first_name": "Ana", "last_name": "Ríos", "email": "ana@example.com"]),
            Route(method: .post, path: "/api/places", credentials: .admin, body: ["id": "p2", "name": "Hall", "parent_id": "p0", "time_zone": "Europe/Paris", "capacity": 10]),
            Route(method: .put, path: "/api/sensors/door/doorway", credentials: .admin, body: ["from": "p0", "to": "p1"]),
            Route(method: .put, path: "/api/rooms/lab/place", credentials: .admin, body: ["place_id": "p0"]),
            Route(
                method: .put, path: "/api/places/p1", credentials: .admin,
                body: ["name": "Wing", "parent_id": "p0", "time_zone": "UTC", "capacity": 5, "stale_after_minutes": 600]),
            Route(method: .put, path: "/api/admin/devices/tab-1/place", credentials: .admin, body: ["place_id": "p0"]),
            Route(method: .put, path: "/api/reservations/devices/d1/place", credentials: .admin, body: ["place_id": "p0"]),
            Route(method: .put, path: "/events/ev1/place", credentials: .admin, body: ["place_id": "p0"]),
            Route(method: .post, path: "/events/ev1/check-ins", credentials: .none, body: ["userId": "u1", "nonce": "n1", "type": "entry", "datetime": "2024-12-15T10:00:00Z"]),
            Route(
                method: .put, path: "/api/presence-corrections", credentials: .admin,
                body: [
                    "source": "attendance", "source_id": "ACME/emp-1", "since": Timestamp(microseconds: (now - 60_000) * 1000).rfc3339, "left_at": NSNull(), "by": "hr",
                ]),
            Route(method: .put, path: "/api/roll-calls/ROLLCALL/people/1", credentials: .admin, body: ["status": "safe", "by": "warden", "marked_at": "2024-01-01T10:00:00Z"]),
            Route(
                method: .post, path: "/api/webhooks", credentials: .admin,
                body: ["url": "https://192.0.2.10/hook", "events": ["reservation.set"], "filter_sensor": "door", "enabled": true]),
            Route(method: .put, path: "/api/webhooks/WEBHOOK", credentials: .admin, body: ["events": ["room.person_registered"], "enabled": false, "filter_place": NSNull()]),
            Route(
                method: .put, path: "/api/sensors/door/settings", credentials: .admin,
                body: [
                    "capacity": 10, "warn_percent": 80, "critical_percent": 100, "silent_after_minutes": 5, "reset_time": "03:00",
                    "reset_time_zone": "Europe/Paris",
                ]),
            Route(method: .put, path: "/api/alerts/1/ack", credentials: .admin, body: ["by": "ops"]),
            Route(
                method: .post, path: "/api/sensors/door/adjustments", credentials: .admin,
                body: ["inside": 0, "at": "2024-01-01T10:00:00Z", "reason": "recount", "by": "ops"]),
            // The JSON part of the worker form (sent as multipart, below).
            Route(
                method: .post, path: "/api/workers", credentials: .admin,
                body: ["id": "w-2", "document_id": "D-2", "first_name": "Bo", "last_name": "Li", "email": "bo@example.com"]),
        ]
    }

    /// Every place a value sits in `body`, as key and index paths.
    static func fieldPaths(_ value: Any, _ path: [Any] = []) -> [[Any]] {
        switch value {
        case let object as [String: Any]: object.keys.sorted().flatMap { [path + [$0]] + fieldPaths(object[$0]!, path + [$0]).filter { $0.count > path.count + 1 } }
        case let array as [Any]: array.indices.flatMap { [path + [$0]] + fieldPaths(array[$0], path + [$0]).filter { $0.count > path.count + 1 } }
        default: []
        }
    }

    /// `body` as JSON text with the value at `path` replaced by the raw text `raw`.
    static func replacing(_ path: [Any], in body: [String: Any], with raw: String) -> String {
        func set(_ value: Any, _ path: ArraySlice<Any>) -> Any {
            guard let first = path.first else { return "\u{1}FUZZ\u{1}" }
            if var object = value as? [String: Any], let key = first as? String {
                object[key] = set(object[key]!, path.dropFirst())
                return object
            }
            if var array = value as? [Any], let index = first as? Int {
                array[index] = set(array[index], path.dropFirst())
                return array
            }
            return value
        }
        return jsonText(set(body, path[...])).replacingOccurrences(of: #""\u0001FUZZ\u0001""#, with: raw)
    }

    /// Row counts and lock counters of every table: a refused request must leave them alone.
    /// (`room_log_pending` is left out: the room log's own flush empties it meanwhile.)
    static func fingerprint(_ database: any Database) async throws -> [Int64] {
        let tables = [
            "rooms", "room_actions", "room_occupants", "reservation_devices", "reservations", "sensors",
            "sensor_events", "sensor_minutes", "sensor_hours", "sensor_days", "events", "users", "registrations", "tenants", "activation_codes", "devices",
            "attendance_records", "attendance_audits", "workers", "worker_images", "worker_timestamps", "places", "place_doorways", "place_links",
            "event_checkins", "roll_calls", "roll_call_people", "presence_corrections", "webhooks", "sensor_settings", "sensor_adjustments",
        ]
        let counters = [
            "(SELECT SUM(seq) FROM rooms)", "(SELECT SUM(version) FROM reservation_devices)", "(SELECT SUM(version) FROM events)",
            "(SELECT SUM(change_ms) FROM tenants)", "(SELECT SUM(inside) FROM sensors)", "(SELECT SUM(is_active) FROM devices)",
            "(SELECT COUNT(*) FROM attendance_records WHERE deleted_us IS NOT NULL)", "(SELECT SUM(version) FROM place_tree)",
            "(SELECT SUM(checked_in) FROM events)", "(SELECT SUM(cancellations) FROM events)",
            "(SELECT COUNT(*) FROM registrations WHERE promoted_us IS NOT NULL)", "(SELECT SUM(adjustment) FROM sensors)",
            "(SELECT COUNT(*) FROM roll_call_people WHERE marked_us IS NOT NULL)",
        ]
        let columns = tables.map { "(SELECT COUNT(*) FROM \($0))" } + counters
        let select = columns.enumerated().map { "CAST(COALESCE(\($1), 0) AS BIGINT) AS c\($0)" }.joined(separator: ", ")
        return try await database.read { db in
            let row = try await db.raw("SELECT \(unsafeRaw: select)").first()!
            return try columns.indices.map { try row.decode(column: "c\($0)", as: Int64.self) }
        }
    }

    @Test(arguments: Engine.available)
    func everyFieldOfEveryJSONRouteSurvivesHostileValues(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        try await environment.withApp { client in
            // What the bodies refer to: an event, a user, a device and its token, a spare code, a worker and a timestamp.
            _ = try await client.post("/events", jsonText(EventsTests.event("ev1", capacity: 5, waitlist: true)))
            _ = try await client.post("/users", jsonText(["userId": "u1", "name": "Ada"]))
            let token = try await AttendanceTests.device(client, "tab-1")
            _ = try await client.post("/api/admin/activation-codes", jsonText(["code": "ACME-SPARE"]), headers: AttendanceTests.admin)
            _ = try await AttendanceTests.sync(client, token, [AttendanceTests.record(1, at: Self.now - 60_000, device: "tab-1")])
            _ = try await WorkersTests.upload(client, [WorkersTests.person("w-1"), WorkersTests.image(WorkersTests.jpeg())])
            let timestamp = try await client.post("/api/timestamps", jsonText(["worker_id": "w-1", "event_type": "entry"]), headers: AttendanceTests.admin)
            let timestampID = try #require(try timestamp.object()["id"] as? String)
            for id in ["p0", "p1"] { _ = try await client.post("/api/places", jsonText(["id": id, "name": id]), headers: AttendanceTests.admin) }
            // A registered user to check in, and a roll call with one person on it.
            _ = try await client.post("/events/ev1/registrations", jsonText(["userId": "u1"]))
            _ = try await client.put("/api/rooms/lab/place", #"{"place_id":"p0"}"#, headers: AttendanceTests.admin)
            _ = try await client.post("/rooms/lab/people/register", #"{"name":"Ada"}"#)
            let rollCall = try await client.post("/api/places/p0/roll-calls", "", headers: AttendanceTests.admin)
            let rollCallID = try #require(try rollCall.object()["id"] as? String)
            // A subscription (to a public address: private ones are refused, and none is resolved here).
            let webhook = try await client.post("/api/webhooks", #"{"url":"http://192.0.2.10/hook","events":["reservation.set"],"enabled":false}"#, headers: AttendanceTests.admin)
            let webhookID = try #require(try webhook.object()["id"] as? String)

            try await environment.withDatabase { database in
                var before = try await Self.fingerprint(database)
                var cases = 0
                for route in Self.routes {
                    var headers: HTTPFields = [.contentType: "application/json"]
                    switch route.credentials {
                    case .none: break
                    case .admin: headers[.adminToken] = WorkersTests.adminKey
                    case .device: headers[.authorization] = "Bearer \(token)"
                    }
                    let path = route.path.replacingOccurrences(of: "TIMESTAMP", with: timestampID).replacingOccurrences(of: "ROLLCALL", with: rollCallID)
                        .replacingOccurrences(of: "WEBHOOK", with: webhookID)
                    let bodies =
                        Self.fieldPaths(route.body).flatMap { field in Self.extremes.map { Self.replacing(field, in: route.body, with: $0) } }
                        + Self.extremes + ["", "{", #"{"a":1,}"#]
                    for text in bodies {
                        let response: TestResponse
                        if route.path == "/api/workers" {
                            let form = WorkersTests.form([.init(name: "personal_data_json", filename: nil, bytes: Array(text.utf8)), WorkersTests.image(WorkersTests.jpeg())])
                            response = try await client.execute(uri: path, method: route.method, headers: WorkersTests.formHeaders, body: form)
                        } else {
                            response = try await client.execute(uri: path, method: route.method, headers: headers, body: ByteBuffer(string: text))
                        }
                        cases += 1
                        let shown = "\(route.testDescription) \(text.prefix(200))"
                        #expect(response.status.code < 500, "\(shown) → \(response.status.code) \(response.text.prefix(300))")
                        #expect(response.headers[.contentType]?.hasPrefix("application/json") == true, "\(shown)")
                        let after = try await Self.fingerprint(database)
                        if response.status.code >= 400 {
                            #expect(try response.errorMessage().isEmpty == false, "\(shown)")
                            #expect(after == before, "a refused request changed what is stored: \(shown)")
                        }
                        before = after
                    }
                }
                #expect(cases > 1000)
            }
            #expect(try await client.get("/health").status == .ok)
        }
    }

    /// Query and path parameters get the same treatment (percent-encoded, as a client would send them).
    @Test(arguments: Engine.available)
    func everyParameterSurvivesHostileValues(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            _ = try await client.post("/api/webhook", jsonText(["sensor": "door", "ts": "2024-01-01T10:00:00Z", "in_count": 1, "out": 0]))
            let token = try await AttendanceTests.device(client, "tab-1")
            let values =
                Self.extremes.map { $0.hasPrefix("\"") && $0.hasSuffix("\"") && $0.count > 1 ? String($0.dropFirst().dropLast()) : $0 }
                + ["2024-01-01T10:00:00 02:00", "%", "%00", "..", "../../etc/passwd", "-0", "+1", "1e3", "0x10", " 1"]
            let templates = [
                "/api/sensors/door/occupancy?atInstant=V", "/sensors/V/occupancy?atInstant=2024-01-01T10:00:00Z", "/api/sensors/V/occupancy",
                "/api/sensors/door/occupancy/series?from=V", "/api/sensors/door/occupancy/series?to=V&bucket=5m", "/api/sensors/door/occupancy/series?bucket=V",
                "/api/sensors/door/events.csv?from=V", "/api/sensors/door/events.csv?to=V", "/people/status?at=V", "/rooms/V/people/status",
                "/people/logs/V.csv", "/get-reservation?device_id=V", "/api/reservations?device_id=V", "/events?status=V", "/events/V",
                "/events/V/registrations?status=confirmed", "/events/ev/registrations?status=V", "/users/V/registrations",
                "/api/attendance/updates?since=V", "/api/attendance/updates?limit=V", "/api/admin/attendance?tenant_id=ACME&from=V",
                "/api/admin/attendance.csv?tenant_id=ACME&to=V", "/api/admin/devices?tenant_id=V", "/api/timestamps?worker_id=V",
                "/api/workers/V/images/1", "/api/workers/w/images/V", "/api/stream?topics=V", "/api/stream?lastEventId=V&topics=nope",
                "/api/places/V", "/api/places/V/occupancy", "/api/places/p0/occupancy?at=V", "/api/places/V/presence", "/api/places/p0/presence?at=V",
                "/events/V/check-ins", "/api/roll-calls/V", "/api/roll-calls/V.csv", "/api/roll-calls?open=V", "/api/webhooks/V",
                "/api/webhooks/V/deliveries", "/api/webhooks/wh/deliveries?limit=V", "/api/alerts?active=V", "/api/sensors/V/settings",
                "/api/sensors/V/adjustments", "/api/sensors/door/adjustments?from=V",
                "/api/sensors/V/utilisation", "/api/sensors/door/utilisation?from=V", "/api/sensors/door/utilisation?to=V&bucket=1h",
                "/api/sensors/door/utilisation?bucket=V", "/api/sensors/door/utilisation?tz=V", "/api/sensors/door/utilisation/heatmap?tz=V",
                "/api/sensors/door/utilisation/heatmap?from=V", "/api/sensors/V/utilisation/heatmap", "/api/places/V/utilisation",
                "/api/places/p0/utilisation?tz=V", "/api/places/V/utilisation/heatmap", "/api/reservations/utilisation?from=V",
                "/api/reservations/utilisation?to=V", "/events/V/report", "/api/admin/attendance/report?tenant_id=ACME&from=V",
                "/api/admin/attendance/report?tenant_id=ACME&tz=V", "/api/admin/attendance/report?tenant_id=ACME&employee_id=V",
                "/api/admin/attendance/report.csv?tenant_id=V", "/api/admin/attendance/report.csv?tenant_id=ACME&bucket=V",
            ]
            let headers: HTTPFields = [.adminToken: WorkersTests.adminKey, .authorization: "Bearer \(token)"]
            for template in templates {
                for value in values {
                    let encoded = value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~:"))) ?? value
                    let uri = template.replacingOccurrences(of: "V", with: encoded)
                    let response = try await client.execute(uri: uri, method: .get, headers: uri.contains("/api/attendance/") ? [.authorization: "Bearer \(token)"] : headers)
                    #expect(response.status.code < 500, "\(uri) → \(response.status.code) \(response.text.prefix(200))")
                }
            }
            #expect(try await client.get("/health").status == .ok)
        }
    }

    /// The catalogue covers every operation of the OpenAPI document that takes a JSON body (or the
    /// worker form), so a new route cannot miss this test.
    @Test func theCatalogueCoversEveryJSONRoute() throws {
        let document = try #require(try JSONSerialization.jsonObject(with: Data(buffer: try Resources.load("openapi.json"))) as? [String: Any])
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        var documented = Set<String>()
        for (path, operations) in paths {
            for (method, operation) in operations {
                guard let body = (operation as? [String: Any])?["requestBody"] as? [String: Any], let content = body["content"] as? [String: Any],
                    content["application/json"] != nil || content["multipart/form-data"] != nil
                else { continue }
                documented.insert("\(method.uppercased()) \(path)")
            }
        }
        let template = { (path: String) in
            path.replacingOccurrences(of: "/rooms/lab/", with: "/rooms/{roomId}/").replacingOccurrences(of: "/events/ev1", with: "/events/{eventId}")
                .replacingOccurrences(of: "/devices/tab-1/", with: "/devices/{deviceId}/").replacingOccurrences(of: "/attendance/1", with: "/attendance/{serverId}")
                .replacingOccurrences(of: "/timestamps/TIMESTAMP", with: "/timestamps/{timestampId}").replacingOccurrences(of: "/workers/w-1", with: "/workers/{workerId}")
                .replacingOccurrences(of: "/places/p1", with: "/places/{placeId}").replacingOccurrences(of: "/sensors/door/", with: "/sensors/{sensor}/")
                .replacingOccurrences(of: "/reservations/devices/d1/", with: "/reservations/devices/{deviceId}/")
                .replacingOccurrences(of: "/roll-calls/ROLLCALL/people/1", with: "/roll-calls/{rollCallId}/people/{key}")
                .replacingOccurrences(of: "/webhooks/WEBHOOK", with: "/webhooks/{webhookId}").replacingOccurrences(of: "/alerts/1/", with: "/alerts/{alertId}/")
        }
        let catalogued = Set(Self.routes.map { "\($0.method.rawValue) \(template($0.path))" })
        #expect(documented.subtracting(catalogued).isEmpty, "JSON routes the catalogue misses: \(documented.subtracting(catalogued).sorted())")
    }
}
