/// One attendance record as a device sends it. Structure is checked for the whole request (a 422,
/// nothing stored); the rules the original applied per record (type, device, future) are checked
/// when syncing, each record on its own.
struct SyncRecord: Sendable {
    static let maxPerRequest = 100
    /// Records of one employee closer than this are one visit seen twice.
    static let duplicateWindowMs: Int64 = 30_000
    static let maxFutureMs: Int64 = 5 * 60_000

    let localID: Int64
    let employeeID: String
    let type: String
    let timestamp: Int64
    let deviceID: String
    let confidence: Double?
    let livenessPassed: Bool?
    let createdAt: Int64?

    init(json value: JSONValue, index: Int) throws {
        func fail(_ message: String, field: String? = nil) -> APIError {
            let name = "records[\(index)]" + (field.map { ".\($0)" } ?? "")
            return APIError(.unprocessableContent, "records[\(index)]: \(message)", fields: [.init(field: name, message: message)])
        }
        /// An epoch-millisecond time within years 0001-9999, so that no arithmetic on it overflows.
        func time(_ field: String, _ value: JSONValue?) throws -> Int64 {
            guard case .int(let ms) = value, Timestamp.validMilliseconds.contains(ms) else {
                throw fail(
                    "\(field) must be epoch milliseconds between \(Timestamp.validMilliseconds.lowerBound) and \(Timestamp.validMilliseconds.upperBound) (years 0001-9999)",
                    field: field)
            }
            return ms
        }
        guard case .object(let body) = value else { throw fail("must be an object") }
        guard case .int(let localID) = body["local_id"] else { throw fail("local_id must be an integer", field: "local_id") }
        guard let employee = body["employee_id"]?.stringValue, TextRule.allows(employee, length: 1...100) else {
            throw fail("employee_id must be a string of 1-100 characters", field: "employee_id")
        }
        guard let type = body["type"]?.stringValue, TextRule.allows(type, length: 0...20) else { throw fail("type must be a string", field: "type") }
        let timestamp = try time("timestamp", body["timestamp"])
        guard let device = body["device_id"]?.stringValue, TextRule.allows(device, length: 1...100) else {
            throw fail("device_id must be a string of 1-100 characters", field: "device_id")
        }
        var confidence: Double?
        switch body["confidence"] {
        case nil, .null?: break
        case .int(let n)?: confidence = Double(n)
        case .double(let d)?: confidence = d
        default: throw fail("confidence must be a number between 0 and 1", field: "confidence")
        }
        if let confidence, !(0...1).contains(confidence) { throw fail("confidence must be a number between 0 and 1", field: "confidence") }
        var liveness: Bool?
        switch body["liveness_passed"] {
        case nil, .null?: break
        case .bool(let flag)?: liveness = flag
        default: throw fail("liveness_passed must be true or false", field: "liveness_passed")
        }
        var createdAt: Int64?
        if let value = body["created_at"], value != .null { createdAt = try time("created_at", value) }
        self.localID = localID
        self.employeeID = employee
        self.type = type
        self.timestamp = timestamp
        self.deviceID = device
        self.confidence = confidence
        self.livenessPassed = liveness
        self.createdAt = createdAt
    }

    /// The rule a record breaks on its own, as the original's error code and message.
    func problem(device: String, nowMs: Int64) -> (code: String, message: String)? {
        if deviceID != device { return ("DEVICE_ID_MISMATCH", "device_id does not match the authenticated device") }
        if type != "ENTRY" && type != "EXIT" { return ("INVALID_TYPE", "type must be ENTRY or EXIT") }
        if timestamp > nowMs + Self.maxFutureMs { return ("FUTURE_TIMESTAMP", "timestamp is more than 5 minutes in the future") }
        return nil
    }
}
