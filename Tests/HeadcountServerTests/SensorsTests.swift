import Foundation
import HummingbirdTesting
import Testing

@testable import HeadcountServer

@Suite("Sensors") struct SensorsTests {
    static func webhook(_ sensor: String, _ ts: String, in inCount: Int, out: Int, id: String? = nil, inKey: String = "in_count") -> [String: Any] {
        var body: [String: Any] = ["sensor": sensor, "ts": ts, inKey: inCount, "out": out]
        if let id { body["id"] = id }
        return body
    }

    static func inside(_ client: any TestClientProtocol, _ uri: String) async throws -> Int? {
        let response = try await client.get(uri)
        #expect(response.status == .ok, "\(uri): \(response.text)")
        return try response.object()["inside"] as? Int
    }

    @Test(arguments: Engine.available)
    func seedRoutesAreWireCompatible(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let posted = try await client.post("/api/webhook", #"{"sensor":"abc","ts":"2018-11-14T13:34:49Z","in_count":3,"out":2}"#)
            #expect(posted.status == .ok)
            #expect(try posted.object() as NSDictionary == ["message": "OK"])
            // The seed's own Postman collection sends `in`.
            _ = try await client.post("/api/webhook", jsonText(Self.webhook("abcd", "2018-11-14T13:35:00Z", in: 4, out: 1, inKey: "in")))
            _ = try await client.post("/api/webhook", jsonText(Self.webhook("abc", "2018-11-14T13:40:00Z", in: 5, out: 0)))

            for uri in ["/api/sensors", "/api/sensors/"] {
                #expect(try await client.get(uri).object() as NSDictionary == ["sensors": ["abc", "abcd"]])
            }
            #expect(try await client.get("/api/sensors/abc/occupancy").object() as NSDictionary == ["sensor": "abc", "inside": 6])
            #expect(try await client.get("/api/sensors/abcd/occupancy").object() as NSDictionary == ["sensor": "abcd", "inside": 3])

            let missing = try await client.get("/api/sensors/nope/occupancy")
            #expect(missing.status == .notFound)
            #expect(try missing.errorMessage() == "sensor not found")
            #expect(try await client.get("/sensors/nope/occupancy?atInstant=2018-11-14T14:00:00Z").status == .notFound)
        }
    }

    /// The original compared text with a strict `<` and answered 404 for a zero balance.
    @Test(arguments: Engine.available)
    func atInstantIsATimeComparisonInclusiveOfTheInstant(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            // Posted out of order; one with an offset (13:00:00+02:00 is 11:00:00Z), one with a fraction.
            for body in [
                Self.webhook("door", "2018-11-14T12:00:00Z", in: 5, out: 0),
                Self.webhook("door", "2018-11-14T13:00:00+02:00", in: 2, out: 0),
                Self.webhook("door", "2018-11-14T12:30:00.250Z", in: 0, out: 7),
                Self.webhook("door", "2018-11-14T12:00:30Z", in: 1, out: 1),
            ] {
                #expect(try await client.post("/api/webhook", jsonText(body)).status == .ok)
            }
            let expectations: [(String, Int)] = [
                ("2018-11-14T10:59:59Z", 0),  // before the first event
                ("2018-11-14T11:00:00Z", 2),  // exactly at an event: it counts
                ("2018-11-14T12:00:00Z", 7),
                ("2018-11-14T13:00:00%2B01:00", 7),  // the same instant with an offset
                ("2018-11-14T12:30:00.249Z", 7),
                ("2018-11-14T12:30:00.25Z", 0),  // a zero balance is 0, not 404
                ("2018-11-14T12:30:00.250001Z", 0),
                ("2018-11-14T13:31:00+01:00", 0),  // an unencoded `+` arrives as a space
                ("2030-01-01T00:00:00Z", 0),
            ]
            for (instant, inside) in expectations {
                for prefix in ["/sensors", "/api/sensors"] {
                    let uri = "\(prefix)/door/occupancy?atInstant=\(instant)"
                    let response = try await client.get(uri)
                    #expect(response.status == .ok, "\(uri)")
                    let body = try response.object()
                    #expect(body["inside"] as? Int == inside, "\(uri)")
                    #expect(body["sensor"] as? String == "door")
                }
            }
            let echoed = try await client.get("/sensors/door/occupancy?atInstant=2018-11-14T13:00:00.5%2B01:00").object()
            #expect(echoed["atInstant"] as? String == "2018-11-14T12:00:00.5Z")
            for bad in ["yesterday", "2018-11-14", "2018-11-14T25:00:00Z", "1542202800", ""] {
                let response = try await client.get("/sensors/door/occupancy?atInstant=\(bad)")
                #expect(response.status == .badRequest, "\(bad)")
                #expect(try response.errorMessage().contains("atInstant"))
            }
        }
    }

    /// Random events, single and batched: most in time order (several to a minute), every fifth
    /// arriving late, after all the others. The rollups must answer exactly what summing the raw
    /// events answers, at every instant.
    @Test(arguments: Engine.available)
    func rollupsAgreeWithTheRawEvents(engine: Engine) async throws {
        var random = SplitMix64(seed: 7)
        let base = Timestamp(rfc3339: "2024-03-01T08:00:00Z")!.microseconds
        let sorted = (0..<300).map { i in
            (ts: base + Int64(random.next() % (2 * 3_600_000_000)), in: Int(random.next() % 5), out: Int(random.next() % 4), id: "e\(i)")
        }.sorted { $0.ts < $1.ts }
        let events =
            sorted.enumerated().filter { $0.offset % 5 != 0 }.map(\.element)
            + sorted.enumerated().filter { $0.offset % 5 == 0 }.map(\.element).shuffled(using: &random)
        let sizes = (0..<events.count).map { _ in Int(random.next() % 12) + 1 }
        let randomInstants = (0..<40).map { _ in base - 3_600_000_000 + Int64(random.next() % (4 * 3_600_000_000)) }
        try await TestEnvironment.make(engine).withApp { client in
            var index = 0
            for size in sizes where index < events.count {
                let slice = events[index..<min(index + size, events.count)].map {
                    Self.webhook("hall", Timestamp(microseconds: $0.ts).rfc3339, in: $0.in, out: $0.out, id: $0.id)
                }
                let response =
                    slice.count == 1
                    ? try await client.post("/api/webhook", jsonText(slice[0]))
                    : try await client.post("/api/webhook/batch", jsonText(["events": slice]))
                #expect(response.status == .ok, "\(response.text)")
                index += slice.count
            }
            func expected(_ instant: Int64) -> Int { events.filter { $0.ts <= instant }.reduce(0) { $0 + $1.in - $1.out } }
            var instants = events.flatMap { [$0.ts, $0.ts - 1] }
            instants += randomInstants
            for instant in instants {
                let inside = try await Self.inside(client, "/api/sensors/hall/occupancy?atInstant=\(Timestamp(microseconds: instant).rfc3339)")
                #expect(inside == expected(instant), "at \(Timestamp(microseconds: instant).rfc3339)")
            }
            #expect(try await Self.inside(client, "/api/sensors/hall/occupancy") == expected(.max))

            // The series, bucket by bucket, against the raw events.
            let series = try await client.get("/api/sensors/hall/occupancy/series?from=2024-03-01T07:00:00Z&to=2024-03-01T11:00:00Z&bucket=5m").object()
            let points = try #require(series["series"] as? [[String: Any]])
            #expect(points.count == 48)
            for point in points {
                let start = Timestamp(rfc3339: point["start"] as! String)!.microseconds
                let end = start + 300_000_000
                let inBucket = events.filter { $0.ts >= start && $0.ts < end }
                #expect(point["entries"] as? Int == inBucket.reduce(0) { $0 + $1.in })
                #expect(point["exits"] as? Int == inBucket.reduce(0) { $0 + $1.out })
                #expect(point["last"] as? Int == expected(end - 1))
                // Every level the bucket held: the one carried in and the one after each instant with events.
                let levels = [expected(start - 1)] + Set(inBucket.map(\.ts)).map(expected)
                #expect(point["min"] as? Int == levels.min())
                #expect(point["max"] as? Int == levels.max())
            }
        }
    }

    /// Sixteen clients send overlapping batches of the same 60 events at once, each in its own
    /// order, over two months and two sensors: every event sent is stored once, whoever wins it.
    @Test(arguments: Engine.available)
    func idsRacingInParallelAreStoredOnce(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            let events = (0..<60).map { i in
                (i, Self.webhook(i % 2 == 0 ? "gate" : "side", "2024-0\(1 + i % 2)-28T10:\(10 + i % 50):00Z", in: 1 + i % 3, out: 0, id: "evt-\(i / 2)"))
            }
            let batches = (0..<16).map { k in Array(events.shuffled().prefix(40 + k)) }
            let answers = try await postInParallel(port: port, path: "/api/webhook/batch", bodies: batches.map { jsonText(["events": $0.map(\.1)]) })
            #expect(answers.allSatisfy { $0.status == 200 }, "\(answers.filter { $0.status != 200 })")
            let sent = Set(batches.flatMap { $0.map(\.0) })
            let accepted = answers.map { (try? JSONSerialization.jsonObject(with: Data($0.body.utf8)) as? [String: Int])?["accepted"] ?? -1 }
            #expect(accepted.reduce(0, +) == sent.count)
            #expect(try await Self.inside(client, "/api/sensors/gate/occupancy") == sent.filter { $0 % 2 == 0 }.reduce(0) { $0 + 1 + $1 % 3 })
            #expect(try await Self.inside(client, "/api/sensors/side/occupancy") == sent.filter { $0 % 2 == 1 }.reduce(0) { $0 + 1 + $1 % 3 })
            let rows = try await client.get("/api/sensors/gate/events.csv").text.split(whereSeparator: \.isNewline).count - 1
            #expect(rows == sent.filter { $0 % 2 == 0 }.count)
        }
    }

    @Test(arguments: Engine.available)
    func idsMakeRetriesIdempotent(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let body = jsonText(Self.webhook("gate", "2024-01-01T10:00:00Z", in: 3, out: 0, id: "evt-1"))
            for _ in 0..<3 { #expect(try await client.post("/api/webhook", body).status == .ok) }
            #expect(try await Self.inside(client, "/api/sensors/gate/occupancy") == 3)

            // The same id on another sensor is another event; within a batch, repeats are duplicates.
            let batch = try await client.post(
                "/api/webhook/batch",
                jsonText([
                    "events": [
                        Self.webhook("gate", "2024-01-01T10:01:00Z", in: 1, out: 0, id: "evt-1"),
                        Self.webhook("side", "2024-01-01T10:01:00Z", in: 1, out: 0, id: "evt-1"),
                        Self.webhook("gate", "2024-01-01T10:02:00Z", in: 2, out: 0, id: "evt-2"),
                        Self.webhook("gate", "2024-01-01T10:02:00Z", in: 2, out: 0, id: "evt-2"),
                        Self.webhook("gate", "2024-01-01T10:03:00Z", in: 1, out: 0),
                    ]
                ]))
            #expect(try batch.object() as NSDictionary == ["accepted": 3, "duplicates": 2])
            #expect(try await Self.inside(client, "/api/sensors/gate/occupancy") == 6)
            #expect(try await Self.inside(client, "/api/sensors/side/occupancy") == 1)
            let csv = try await client.get("/api/sensors/gate/events.csv").text
            #expect(csv.components(separatedBy: "\r\n").filter { !$0.isEmpty }.count == 4)
        }
    }

    @Test(arguments: Engine.available)
    func badInputIs400AndStoresNothing(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            _ = try await client.post("/api/webhook", jsonText(Self.webhook("abc", "2024-01-01T10:00:00Z", in: 2, out: 0)))
            let good = Self.webhook("abc", "2024-01-01T11:00:00Z", in: 1, out: 0)
            func with(_ key: String, _ value: Any?) -> String {
                var body = good
                body[key] = value
                return jsonText(body)
            }
            let cases: [(String, String)] = [
                ("", "request body must be a JSON object"),
                ("{", "malformed JSON at byte 1: expected a member name"),
                (String(repeating: "[", count: 33) + String(repeating: "]", count: 33), "JSON nested deeper than 32 levels (at byte 32)"),
                ("[]", "request body must be a JSON object"),
                (with("sensor", nil), "sensor is required"),
                (with("sensor", ""), "sensor is required"),
                (with("sensor", 5), "sensor is required"),
                (with("sensor", String(repeating: "s", count: 201)), "sensor must be at most 200 characters"),
                (with("sensor", "a\u{0}b"), "sensor must not contain control characters"),
                (with("ts", nil), "ts is required"),
                (with("ts", "2018-11-14 13:34"), "ts must be an RFC 3339 date-time, e.g. 2018-11-14T13:34:49Z"),
                (with("ts", 1_542_202_489), "ts must be an RFC 3339 date-time, e.g. 2018-11-14T13:34:49Z"),
                (with("in_count", nil), "in_count is required"),
                (with("in_count", -1), "in_count must be an integer between 0 and 1000000"),
                (with("in_count", 1_000_001), "in_count must be an integer between 0 and 1000000"),
                (with("in_count", 1.5), "in_count must be an integer between 0 and 1000000"),
                (with("in_count", "3"), "in_count must be an integer between 0 and 1000000"),
                (with("in", 2), "in_count and in differ"),
                (with("out", nil), "out is required"),
                (with("out", true), "out must be an integer between 0 and 1000000"),
                (with("id", ""), "id must be a non-empty string of at most 200 characters"),
                (with("id", 7), "id must be a non-empty string of at most 200 characters"),
            ]
            for (body, message) in cases {
                let response = try await client.post("/api/webhook", body)
                #expect(response.status == .badRequest, "\(body)")
                #expect(try response.errorMessage() == message, "\(body)")
            }
            // A batch with one bad event names it and stores none of them.
            let batches: [(String, String)] = [
                (jsonText(["events": [good, good, ["sensor": "abc"]]]), "events[2]: ts is required"),
                (jsonText(["events": [good, 5]]), "events[1]: must be a JSON object"),
                (jsonText(["events": []]), "events must be an array of 1 to 1000 webhook bodies"),
                (jsonText(["events": Array(repeating: good, count: 1001)]), "events must be an array of 1 to 1000 webhook bodies"),
                (jsonText(["events": good]), "events must be an array of 1 to 1000 webhook bodies"),
            ]
            for (body, message) in batches {
                let response = try await client.post("/api/webhook/batch", body)
                #expect(response.status == .badRequest)
                #expect(try response.errorMessage() == message)
            }
            #expect(try await client.get("/api/sensors").object() as NSDictionary == ["sensors": ["abc"]])
            #expect(try await Self.inside(client, "/api/sensors/abc/occupancy") == 2)
            #expect(try await client.get("/api/sensors/abc/events.csv").text.components(separatedBy: "\r\n").count == 3)
        }
    }

    @Test(arguments: Engine.available)
    func seriesAndEventsExport(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            _ = try await client.post(
                "/api/webhook/batch",
                jsonText([
                    "events": [
                        Self.webhook("lobby, east", "2024-01-01T09:59:00Z", in: 4, out: 0, id: "a\"1"),
                        Self.webhook("lobby, east", "2024-01-01T10:03:00Z", in: 3, out: 1),
                        Self.webhook("lobby, east", "2024-01-01T10:07:30Z", in: 0, out: 5),
                        Self.webhook("lobby, east", "2024-01-01T10:20:00Z", in: 2, out: 0),
                    ]
                ]))
            let sensor = "lobby,%20east"
            let series = try await client.get("/api/sensors/\(sensor)/occupancy/series?from=2024-01-01T10:00:00Z&to=2024-01-01T10:15:00Z&bucket=5m").object()
            #expect(series["sensor"] as? String == "lobby, east")
            #expect(series["from"] as? String == "2024-01-01T10:00:00Z")
            #expect(series["to"] as? String == "2024-01-01T10:15:00Z")
            let points = try #require(series["series"] as? [NSDictionary])
            #expect(
                points == [
                    ["start": "2024-01-01T10:00:00Z", "end": "2024-01-01T10:05:00Z", "entries": 3, "exits": 1, "min": 4, "max": 6, "last": 6],
                    ["start": "2024-01-01T10:05:00Z", "end": "2024-01-01T10:10:00Z", "entries": 0, "exits": 5, "min": 1, "max": 6, "last": 1],
                    ["start": "2024-01-01T10:10:00Z", "end": "2024-01-01T10:15:00Z", "entries": 0, "exits": 0, "min": 1, "max": 1, "last": 1],
                ])
            for (query, message) in [
                ("bucket=2m", "bucket must be one of 5m, 1h, 1d"),
                ("from=2024-01-02T00:00:00Z&to=2024-01-01T00:00:00Z", "from must be before to"),
                ("from=2000-01-01T00:00:00Z&to=2024-01-01T00:00:00Z&bucket=5m", "at most 5000 buckets: narrow from/to or use a larger bucket"),
                ("from=soon", "from must be an RFC 3339 date-time, e.g. 2024-01-01T10:00:00Z"),
            ] {
                let response = try await client.get("/api/sensors/\(sensor)/occupancy/series?\(query)")
                #expect(response.status == .badRequest, "\(query)")
                #expect(try response.errorMessage() == message)
            }
            #expect(try await client.get("/api/sensors/nope/occupancy/series").status == .notFound)

            // One minute filled by separate posts, in order: its low and high widen with each.
            for (ts, inCount, out) in [("09:59:00", 2, 0), ("10:00:05", 0, 2), ("10:00:10", 6, 0), ("10:00:20", 0, 5), ("10:00:30", 0, 3), ("10:00:40", 1, 0)] {
                _ = try await client.post("/api/webhook", jsonText(Self.webhook("steps", "2024-01-01T\(ts)Z", in: inCount, out: out)))
            }
            let steps = try await client.get("/api/sensors/steps/occupancy/series?from=2024-01-01T10:00:00Z&to=2024-01-01T10:05:00Z&bucket=5m").object()
            #expect(
                steps["series"] as? [NSDictionary] == [
                    ["start": "2024-01-01T10:00:00Z", "end": "2024-01-01T10:05:00Z", "entries": 7, "exits": 10, "min": -2, "max": 6, "last": -1]
                ])

            let csv = try await client.get("/api/sensors/\(sensor)/events.csv?from=2024-01-01T10:00:00Z&to=2024-01-01T10:20:00Z")
            #expect(csv.status == .ok)
            #expect(csv.headers[.contentType] == "text/csv; charset=utf-8")
            #expect(
                csv.text == "ts,sensor,in_count,out_count,id,kind,inside,reason,by\r\n"
                    + "2024-01-01T10:03:00Z,\"lobby, east\",3,1,,event,,,\r\n"
                    + "2024-01-01T10:07:30Z,\"lobby, east\",0,5,,event,,,\r\n")
            let all = try await client.get("/api/sensors/\(sensor)/events.csv").text
            #expect(all.contains("2024-01-01T09:59:00Z,\"lobby, east\",4,0,\"a\"\"1\",event,,,\r\n"))
            #expect(all.hasSuffix("2024-01-01T10:20:00Z,\"lobby, east\",2,0,,event,,,\r\n"))
            #expect(try await client.get("/api/sensors/nope/events.csv").status == .notFound)
        }
    }

    /// A large export is paged through the database and streamed, and holds every event once.
    @Test(arguments: Engine.available)
    func largeExportHoldsEveryEventOnce(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp { client in
            let base = Timestamp(rfc3339: "2024-01-01T00:00:00Z")!.microseconds
            for batch in 0..<5 {
                // Pairs of events at the same instant, so pages break between equal timestamps.
                let events = (0..<1000).map { i in
                    Self.webhook("big", Timestamp(microseconds: base + Int64((batch * 1000 + i) / 2) * 1_000_000).rfc3339, in: 1, out: 0)
                }
                #expect(try await client.post("/api/webhook/batch", jsonText(["events": events])).status == .ok)
            }
            let lines = try await client.get("/api/sensors/big/events.csv").text.components(separatedBy: "\r\n").dropFirst().filter { !$0.isEmpty }
            #expect(lines.count == 5000)
            #expect(try await Self.inside(client, "/api/sensors/big/occupancy") == 5000)
        }
    }

    /// 100 webhooks at once to one sensor, over real sockets: the occupancy is the exact sum, and
    /// 50 retries of one id racing each other store it once.
    @Test(arguments: Engine.available)
    func parallelWebhooksSumExactly(engine: Engine) async throws {
        try await TestEnvironment.make(engine).withApp(.live) { client in
            let port = try #require(client.port)
            let bodies = (0..<100).map { i in
                jsonText(Self.webhook("busy", "2024-01-01T10:\(String(format: "%02d", i % 60)):00Z", in: i % 7, out: i % 3))
            }
            let results = try await postInParallel(port: port, path: "/api/webhook", bodies: bodies)
            #expect(results.allSatisfy { $0.status == 200 })
            let expected = (0..<100).reduce(0) { $0 + $1 % 7 - $1 % 3 }
            #expect(try await Self.inside(client, "/api/sensors/busy/occupancy") == expected)
            #expect(
                try await Self.inside(client, "/api/sensors/busy/occupancy?atInstant=2024-01-01T10:30:00Z")
                    == (0..<100).filter { $0 % 60 <= 30 }.reduce(0) { $0 + $1 % 7 - $1 % 3 })

            let retries = Array(repeating: jsonText(Self.webhook("busy", "2024-01-01T11:00:00Z", in: 5, out: 0, id: "once")), count: 50)
            #expect(try await postInParallel(port: port, path: "/api/webhook", bodies: retries).allSatisfy { $0.status == 200 })
            #expect(try await Self.inside(client, "/api/sensors/busy/occupancy") == expected + 5)
        }
    }
}

/// A small deterministic random number generator, so a failing case can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
