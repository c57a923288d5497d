import Foundation
import Hummingbird

/// Path and query parameters, read one way everywhere: absent is nil, anything else that breaks its
/// rule is a 400 naming the parameter (an id that no record could have is a 404, see `pathID`).
extension Request {
    /// An RFC 3339 instant within years 0001–9999. An unencoded `+` offset arrives as a space, so a
    /// space where the offset's sign belongs is read as `+` (`?at=2024-01-01T10:00:00+02:00`).
    func instant(_ name: String) throws -> Timestamp? {
        guard let raw = uri.queryParameters[Substring(name)] else { return nil }
        var bytes = Array(raw.utf8)
        if bytes.count > 6, bytes[bytes.count - 6] == UInt8(ascii: " ") { bytes[bytes.count - 6] = UInt8(ascii: "+") }
        guard let instant = Timestamp(rfc3339: String(decoding: bytes, as: UTF8.self)) else {
            throw APIError.badRequest("\(name) must be an RFC 3339 date-time, e.g. 2024-01-01T10:00:00Z")
        }
        return instant
    }

    /// An integer in `range`.
    func integer(_ name: String, in range: ClosedRange<Int64>) throws -> Int64? {
        guard let text = uri.queryParameters[Substring(name)] else { return nil }
        guard let value = Int64(text), range.contains(value) else {
            throw APIError.badRequest("\(name) must be an integer between \(range.lowerBound) and \(range.upperBound)")
        }
        return value
    }

    /// A text of `length` characters without control characters (`TextRule`).
    func text(_ name: String, length: ClosedRange<Int>) throws -> String? {
        guard let text = uri.queryParameters[Substring(name)].map(String.init) else { return nil }
        if let problem = TextRule.problem(name, text, length: length) { throw APIError.badRequest(problem) }
        return text
    }
}

extension AppRequestContext {
    /// A path parameter naming a record, percent-decoded; one that no record could have (breaking
    /// `TextRule`) is simply not found.
    func pathID(_ name: String, length: ClosedRange<Int> = 1...100) throws -> String {
        guard let id = parameters.get(name)?.removingPercentEncoding, TextRule.allows(id, length: length) else {
            throw APIError.notFound("\(name) not found")
        }
        return id
    }

    /// A path parameter that is a name rather than a record's id, percent-decoded; breaking
    /// `TextRule` is a 400.
    func pathText(_ name: String, length: ClosedRange<Int>) throws -> String {
        let text = parameters.get(name)?.removingPercentEncoding ?? ""
        if let problem = TextRule.problem(name, text, length: length) { throw APIError.badRequest(problem) }
        return text
    }
}
