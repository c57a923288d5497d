/// One webhook: a sensor's IN/OUT counts at an instant, optionally with a client-chosen id that
/// makes a retry idempotent.
struct SensorEvent: Sendable, Equatable {
    static let maxCount: Int64 = 1_000_000
    static let maxSensorLength = 200

    let sensor: String
    let ts: Timestamp
    let inCount: Int64
    let outCount: Int64
    let id: String?

    var net: Int64 { inCount - outCount }

    /// Validates a webhook body with the seed's field names; `in` is an alias of `in_count`.
    /// Every problem is a 400 (the seed's convention), prefixed with the batch index if there is one.
    init(json body: [String: JSONValue], index: Int? = nil) throws {
        func fail(_ message: String) -> APIError {
            .badRequest(index.map { "events[\($0)]: \(message)" } ?? message)
        }
        guard let sensor = body["sensor"]?.stringValue else { throw fail("sensor is required") }
        if let problem = TextRule.problem("sensor", sensor, length: 1...Self.maxSensorLength) { throw fail(problem) }
        guard let value = body["ts"], value != .null else { throw fail("ts is required") }
        guard let ts = value.stringValue.flatMap(Timestamp.init(rfc3339:)) else { throw fail("ts must be an RFC 3339 date-time, e.g. 2018-11-14T13:34:49Z") }

        func count(_ names: [String]) throws -> Int64 {
            let values = names.compactMap { body[$0] }
            guard let first = values.first else { throw fail("\(names[0]) is required") }
            guard values.allSatisfy({ $0 == first }) else { throw fail("\(names.joined(separator: " and ")) differ") }
            guard case .int(let n) = first, (0...Self.maxCount).contains(n) else {
                throw fail("\(names[0]) must be an integer between 0 and \(Self.maxCount)")
            }
            return n
        }
        let inCount = try count(["in_count", "in"])
        let outCount = try count(["out"])

        var id: String?
        if let value = body["id"], value != .null {
            guard let text = value.stringValue, TextRule.allows(text, length: 1...200) else {
                throw fail("id must be a non-empty string of at most 200 characters")
            }
            id = text
        }
        self.init(sensor: sensor, ts: ts, inCount: inCount, outCount: outCount, id: id)
    }

    init(sensor: String, ts: Timestamp, inCount: Int64, outCount: Int64, id: String? = nil) {
        self.sensor = sensor
        self.ts = ts
        self.inCount = inCount
        self.outCount = outCount
        self.id = id
    }
}
