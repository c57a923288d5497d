import Foundation
import Hummingbird

/// Validation of the events and attendance bodies, with the seeds' limits. Well-formed JSON that breaks
/// a rule is a 422 listing every field at fault.
struct Validator {
    let body: [String: JSONValue]
    /// In a partial update only the fields sent are checked, and `null` for a required one is an error.
    var partial = false
    private(set) var errors: [APIError.FieldError] = []

    init(_ body: [String: JSONValue], partial: Bool = false) {
        self.body = body
        self.partial = partial
    }

    mutating func fail(_ field: String, _ message: String) {
        errors.append(.init(field: field, message: message))
    }

    /// A string of `range` characters once trimmed; nil when absent (and an error if required).
    mutating func text(_ field: String, _ range: ClosedRange<Int>, required: Bool = true, multiline: Bool = false) -> String? {
        guard let value = body[field] else {
            if required && !partial { fail(field, "\(field) is required") }
            return nil
        }
        if value == .null {
            if required { fail(field, partial ? "\(field) may not be null" : "\(field) is required") }
            return nil
        }
        guard let raw = value.stringValue else {
            fail(field, "\(field) must be a string")
            return nil
        }
        let text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        // This family's message for a length out of range, whether or not the field is required.
        guard range.contains(text.count) else {
            fail(field, "\(field) must be \(range.lowerBound)-\(range.upperBound) characters")
            return nil
        }
        if let problem = TextRule.problem(field, text, length: range, allowing: multiline ? ["\n", "\r", "\t"] : []) {
            fail(field, problem)
            return nil
        }
        return text
    }

    mutating func integer(_ field: String, _ range: ClosedRange<Int64>, required: Bool = true) -> Int64? {
        guard let value = body[field] else {
            if !partial, required { fail(field, "\(field) is required") }
            return nil
        }
        guard case .int(let n) = value, range.contains(n) else {
            fail(field, value == .null ? "\(field) may not be null" : "\(field) must be an integer between \(range.lowerBound) and \(range.upperBound)")
            return nil
        }
        return n
    }

    /// A boolean under any of `names` (aliases); sent under two, they must agree.
    mutating func boolean(_ names: [String]) -> Bool? {
        let values = names.compactMap { name in body[name].map { (name, $0) } }
        guard let (name, first) = values.first else { return nil }
        guard case .bool(let flag) = first else {
            fail(name, first == .null ? "\(name) may not be null" : "\(name) must be true or false")
            return nil
        }
        guard values.allSatisfy({ $0.1 == first }) else {
            fail(name, "\(names.joined(separator: " and ")) differ")
            return nil
        }
        return flag
    }

    mutating func oneOf(_ field: String, _ allowed: [String], required: Bool = false) -> String? {
        guard let value = body[field] else {
            if required && !partial { fail(field, "\(field) is required") }
            return nil
        }
        guard let text = value.stringValue, allowed.contains(text) else {
            fail(field, value == .null ? "\(field) may not be null" : "\(field) must be one of \(allowed.joined(separator: ", "))")
            return nil
        }
        return text
    }

    /// An ISO 8601 date (`2024-12-15`) or date-time, with or without an offset.
    mutating func date(_ field: String) -> String? {
        guard let text = text(field, 10...40) else { return nil }
        let valid = Timestamp(day: text) != nil || Timestamp(rfc3339: text) != nil || Timestamp(rfc3339: text + "Z") != nil
        guard valid else {
            fail(field, "\(field) must be an ISO 8601 date or date-time, e.g. 2024-12-15")
            return nil
        }
        return text
    }

    /// An RFC 3339 instant (years 0001-9999), e.g. `2024-12-15T09:30:00+01:00`.
    mutating func instant(_ field: String, required: Bool = true) -> Timestamp? {
        guard let text = text(field, 20...40, required: required) else { return nil }
        guard let instant = Timestamp(rfc3339: text) else {
            fail(field, "\(field) must be an RFC 3339 date-time, e.g. 2024-12-15T09:30:00Z")
            return nil
        }
        return instant
    }

    /// An email address: one `@` between a local part and a dotted domain, no spaces, at most 254
    /// characters. Deliverability is the sender's business; this catches what is surely a typo.
    mutating func email(_ field: String) -> String? {
        guard let text = text(field, 3...254) else { return nil }
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        let labels = parts.last!.split(separator: ".", omittingEmptySubsequences: false)
        let valid =
            parts.count == 2 && !parts[0].isEmpty && !text.contains(where: \.isWhitespace)
            && labels.count >= 2 && labels.allSatisfy { !$0.isEmpty }
        guard valid else {
            fail(field, "\(field) must be an email address, e.g. ana@example.com")
            return nil
        }
        return text
    }

    /// Throws the 422 if any check failed.
    func check() throws {
        guard !errors.isEmpty else { return }
        throw APIError(.unprocessableContent, errors.map { $0.message }.joined(separator: "; "), fields: errors)
    }
}

extension Request {
    /// The body as a JSON object for the events and attendance families: malformed JSON is a 400,
    /// well-formed JSON that is not an object a 422.
    func validatedObject(context: AppRequestContext) async throws -> [String: JSONValue] {
        guard case .object(let object) = try await jsonValue(context: context) else {
            throw APIError(.unprocessableContent, "request body must be a JSON object")
        }
        return object
    }
}
