import NIOCore

/// A strict RFC 8259 reader for request bodies, bounded in depth and linear in size: whatever a
/// client sends, parsing costs one pass over the bytes and at most `maxDepth` frames of stack.
/// (Foundation's decoder, as `JSONValue` used it, spent about a second on 1 KB nested 500 deep.)
///
/// What it reads as the originals' Node and Python servers did: integral numbers (`1.0`, `1e2`)
/// are integers, a repeated key keeps its last value, a UTF-8 byte order mark is skipped. What it
/// refuses: nesting deeper than `maxDepth`, trailing commas, raw control characters in strings,
/// lone UTF-16 surrogates, invalid UTF-8, numbers beyond `Double`, anything after the value.
struct JSONParser {
    /// How deep objects and arrays may nest; no body Headcount takes needs more than four.
    static let maxDepth = 32

    struct Failure: Error, Equatable {
        let message: String
    }

    static func parse(_ buffer: ByteBuffer, maxDepth: Int = maxDepth) throws(Failure) -> JSONValue {
        do {
            return try buffer.withUnsafeReadableBytes { bytes in
                var parser = JSONParser(bytes: bytes, maxDepth: maxDepth)
                return try parser.document()
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(message: "malformed JSON")
        }
    }

    private let bytes: UnsafeRawBufferPointer
    private let maxDepth: Int
    private var i = 0

    private init(bytes: UnsafeRawBufferPointer, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    private func fail(_ what: String, at position: Int? = nil) -> Failure {
        Failure(message: "malformed JSON at byte \(position ?? i): \(what)")
    }

    private mutating func document() throws(Failure) -> JSONValue {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }
        let value = try value(depth: 0)
        skipSpace()
        guard i == bytes.count else { throw fail("unexpected data after the JSON value") }
        return value
    }

    private mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    private mutating func value(depth: Int) throws(Failure) -> JSONValue {
        skipSpace()
        guard i < bytes.count else { throw fail("expected a value") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw fail("expected a value")
        }
    }

    private mutating func enter(_ depth: Int) throws(Failure) {
        guard depth <= maxDepth else { throw Failure(message: "JSON nested deeper than \(maxDepth) levels (at byte \(i))") }
        i += 1
        skipSpace()
    }

    private mutating func object(depth: Int) throws(Failure) -> JSONValue {
        try enter(depth)
        var members: [String: JSONValue] = [:]
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
            i += 1
            return .object(members)
        }
        while true {
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
            let key = try string()
            skipSpace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            i += 1
            members[key] = try value(depth: depth)
            skipSpace()
            guard i < bytes.count else { throw fail("expected ',' or '}'") }
            i += 1
            switch bytes[i - 1] {
            case UInt8(ascii: ","): continue
            case UInt8(ascii: "}"): return .object(members)
            default:
                i -= 1
                throw fail("expected ',' or '}'")
            }
        }
    }

    private mutating func array(depth: Int) throws(Failure) -> JSONValue {
        try enter(depth)
        var elements: [JSONValue] = []
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
            i += 1
            return .array(elements)
        }
        while true {
            elements.append(try value(depth: depth))
            skipSpace()
            guard i < bytes.count else { throw fail("expected ',' or ']'") }
            i += 1
            switch bytes[i - 1] {
            case UInt8(ascii: ","): continue
            case UInt8(ascii: "]"): return .array(elements)
            default:
                i -= 1
                throw fail("expected ',' or ']'")
            }
        }
    }

    private mutating func literal(_ word: StaticString) throws(Failure) {
        let matches = word.withUTF8Buffer { w in i + w.count <= bytes.count && w.indices.allSatisfy { bytes[i + $0] == w[$0] } }
        guard matches else { throw fail("expected a value") }
        i += word.utf8CodeUnitCount
    }

    /// A string starting at its opening quote. Most strings have no escapes: those are validated
    /// as UTF-8 in place; the others are unescaped into a copy.
    private mutating func string() throws(Failure) -> String {
        i += 1
        let start = i
        while i < bytes.count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "\"") {
                defer { i += 1 }
                return try text(bytes[start..<i], startingAt: start - 1)
            }
            if byte == UInt8(ascii: "\\") { return try escapedString(from: start) }
            guard byte >= 0x20 else { throw fail("control character in a string") }
            i += 1
        }
        throw fail("unterminated string")
    }

    private mutating func escapedString(from start: Int) throws(Failure) -> String {
        var out = Array(bytes[start..<i])
        while i < bytes.count {
            let byte = bytes[i]
            i += 1
            switch byte {
            case UInt8(ascii: "\""):
                return try text(out, startingAt: start - 1)
            case UInt8(ascii: "\\"):
                guard i < bytes.count else { throw fail("unterminated string") }
                let escape = bytes[i]
                i += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"): out.append(contentsOf: try unicodeEscape())
                default: throw fail("unknown escape", at: i - 2)
                }
            default:
                guard byte >= 0x20 else {
                    i -= 1
                    throw fail("control character in a string")
                }
                out.append(byte)
            }
        }
        throw fail("unterminated string")
    }

    /// The UTF-8 of a `\uXXXX` escape (its `\u` already read), or of a `\uD8xx\uDCxx` pair.
    private mutating func unicodeEscape() throws(Failure) -> [UInt8] {
        var scalar = try hex4()
        if (0xD800...0xDBFF).contains(scalar) {
            guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else { throw fail("lone surrogate") }
            i += 2
            let low = try hex4()
            guard (0xDC00...0xDFFF).contains(low) else { throw fail("lone surrogate") }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00...0xDFFF).contains(scalar) {
            throw fail("lone surrogate")
        }
        return Array(String(Character(Unicode.Scalar(scalar)!)).utf8)
    }

    private mutating func hex4() throws(Failure) -> UInt32 {
        guard i + 4 <= bytes.count else { throw fail("bad \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[i]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw fail("bad \\u escape")
            }
            value = value << 4 | UInt32(digit)
            i += 1
        }
        return value
    }

    private func text(_ utf8: some Collection<UInt8>, startingAt quote: Int) throws(Failure) -> String {
        guard let text = String(validating: utf8, as: UTF8.self) else { throw fail("invalid UTF-8 in the string", at: quote) }
        return text
    }

    /// An integer when the number has an integral value that fits in 64 bits (`1.0` and `1e2`
    /// too, as Foundation read them), else a double; a number beyond `Double` is refused.
    private mutating func number() throws(Failure) -> JSONValue {
        let start = i
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard i < bytes.count, isDigit(bytes[i]) else { throw fail("bad number") }
        if bytes[i] == UInt8(ascii: "0") { i += 1 } else { skipDigits() }
        var integral = true
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            integral = false
            i += 1
            guard i < bytes.count, isDigit(bytes[i]) else { throw fail("bad number") }
            skipDigits()
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            integral = false
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count, isDigit(bytes[i]) else { throw fail("bad number") }
            skipDigits()
        }
        let literal = bytes[start..<i]
        if integral, let n = Self.int64(literal) { return .int(n) }
        guard let d = Double(String(decoding: literal, as: UTF8.self)), d.isFinite else { throw fail("number out of range") }
        // A fraction or exponent with an integral value that fits (2^63 is the first double past Int64.max).
        if !integral, d == d.rounded(), d >= -9_223_372_036_854_775_808.0, d < 9_223_372_036_854_775_808.0 { return .int(Int64(d)) }
        return .double(d)
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private mutating func skipDigits() {
        while i < bytes.count, isDigit(bytes[i]) { i += 1 }
    }

    /// A decimal integer's value, or nil when it does not fit in 64 bits.
    private static func int64(_ digits: Slice<UnsafeRawBufferPointer>) -> Int64? {
        let negative = digits.first == UInt8(ascii: "-")
        var value: Int64 = 0
        for byte in digits.dropFirst(negative ? 1 : 0) {
            let (shifted, o1) = value.multipliedReportingOverflow(by: 10)
            // Accumulate negatively: Int64.min has no positive counterpart.
            let (next, o2) = shifted.subtractingReportingOverflow(Int64(byte - UInt8(ascii: "0")))
            guard !o1, !o2 else { return nil }
            value = next
        }
        if negative { return value }
        let (positive, overflow) = Int64(0).subtractingReportingOverflow(value)
        return overflow ? nil : positive
    }
}
