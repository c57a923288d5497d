import Foundation
import NIOCore
import Testing

@testable import HeadcountServer

@Suite("JSON parser") struct JSONParserTests {
    static func parse(_ text: String) throws(JSONParser.Failure) -> JSONValue {
        try JSONParser.parse(ByteBuffer(string: text))
    }

    @Test(arguments: [
        ("{}", JSONValue.object([:])),
        (" [1, -2, 0] ", .array([.int(1), .int(-2), .int(0)])),
        (#"{"a": {"b": [true, false, null]}}"#, .object(["a": .object(["b": .array([.bool(true), .bool(false), .null])])])),
        // Integral numbers are integers, as Foundation read them; others are doubles.
        ("1.0", .int(1)), ("1e2", .int(100)), ("-0", .int(0)), ("1.5", .double(1.5)), ("-2.5e-1", .double(-0.25)),
        ("9223372036854775807", .int(Int64.max)), ("-9223372036854775808", .int(Int64.min)),
        ("9223372036854775808", .double(9_223_372_036_854_775_808)), ("-9223372036854775809", .double(-9_223_372_036_854_775_808)),
        (#""a\"b\\c\/d\b\f\n\r\t""#, .string("a\"b\\c/d\u{8}\u{C}\n\r\t")),
        (#""\u00e9\uD83D\uDE00 é""#, .string("é😀 é")),
        (#""a\u0000b""#, .string("a\u{0}b")),
        // A repeated key keeps its last value, as JavaScript's and Python's parsers do.
        (#"{"a": 1, "a": 2}"#, .object(["a": .int(2)])),
        ("\u{FEFF}[1]", .array([.int(1)])),
    ])
    func readsJSON(text: String, expected: JSONValue) throws {
        #expect(try Self.parse(text) == expected)
    }

    @Test(arguments: [
        "", " ", "{", "[1,]", #"{"a":1,}"#, "[1 2]", #"{"a" 1}"#, "{1: 2}", "01", "-", "1.", ".5", "1e", "+1", "tru", "nul",
        "NaN", "Infinity", "1e400", "-1e400", "[1]x", "\"abc", "\"\u{7}\"", #""\x""#, #""\u12""#, #""\uD800""#, #""\uDC00""#,
        #""\uD800\u0041""#, "'a'", "[1]\u{0}",
    ])
    func refusesMalformedJSON(text: String) {
        #expect(throws: JSONParser.Failure.self) { try Self.parse(text) }
    }

    @Test func refusesInvalidUTF8() {
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(ByteBuffer(bytes: [0x22, 0xFF, 0x22])) }
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(ByteBuffer(bytes: [0x22, 0xC3, 0x22])) }
    }

    @Test func nestingIsBoundedAndRefusedAtTheFirstLevelTooDeep() throws {
        let deepest = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
        #expect(throws: Never.self) { try Self.parse(deepest) }
        let mixed = String(repeating: #"{"a":["#, count: 16) + String(repeating: "]}", count: 16)
        #expect(throws: Never.self) { try Self.parse(mixed) }
        // A megabyte of brackets is refused where the 33rd level opens: the work done does not
        // depend on what follows.
        for opener: String in ["[", #"{"a":"#] {
            let hostile = String(repeating: opener, count: (1 << 20) / opener.utf8.count)
            let failure = try #require(throws: JSONParser.Failure.self) { try Self.parse(hostile) }
            #expect(failure.message == "JSON nested deeper than 32 levels (at byte \(32 * opener.utf8.count))")
        }
    }

    @Test func errorsSayWhere() throws {
        let failure = try #require(throws: JSONParser.Failure.self) { try Self.parse(#"{"a": 1 "b": 2}"#) }
        #expect(failure.message == "malformed JSON at byte 8: expected ',' or '}'")
        let utf8 = try #require(throws: JSONParser.Failure.self) { try JSONParser.parse(ByteBuffer(bytes: Array(#"[1, "a"#.utf8) + [0xFF] + Array(#""]"#.utf8))) }
        #expect(utf8.message == "malformed JSON at byte 4: invalid UTF-8 in the string")
    }
}
