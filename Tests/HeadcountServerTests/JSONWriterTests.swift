import Foundation
import Testing

@testable import HeadcountServer

/// `JSONWriter` writes what Foundation's `JSONEncoder` writes (sorted keys, slashes unescaped),
/// byte for byte, for every kind of value the answers hold.
@Suite("JSON writer") struct JSONWriterTests {
    static func foundation<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    static func same<T: Encodable>(_ value: T, _ comment: Comment? = nil) throws {
        let (ours, theirs) = (try JSONWriter.encode(value), try foundation(value))
        #expect(String(decoding: ours, as: UTF8.self) == String(decoding: theirs, as: UTF8.self), comment)
    }

    struct Nested: Encodable {
        let name: String
        let missing: Int?
        @Nullable var kept: Double?
        let list: [[Int64]]
        let map: [String: Bool]
        let keyed: [Int: String]
        let empty: [String]
    }

    /// Encodes through nested and super containers, as hand-written `encode(to:)` may.
    struct Containers: Encodable {
        enum Keys: String, CodingKey { case z, a, inner, items }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(1.5, forKey: .z)
            var inner = container.nestedContainer(keyedBy: Keys.self, forKey: .inner)
            try inner.encodeNil(forKey: .a)
            var items = container.nestedUnkeyedContainer(forKey: .items)
            try items.encode("x")
            var deeper = items.nestedContainer(keyedBy: Keys.self)
            try deeper.encode(Int8(-3), forKey: .z)
            try items.encode(UInt64.max)
            try container.encode("last wins", forKey: .a)
            try container.encode("first", forKey: .a)
        }
    }

    struct Empty: Encodable {}

    @Test func answersAreFoundationsBytes() throws {
        let text = String((0..<128).map { Character(Unicode.Scalar(UInt8($0))) }) + "é 😀 \u{2028} a/b"
        try Self.same(text, "every ASCII character, escapes and beyond")
        for number in [0.0, -0.0, 0.1, 4, -2.5, 1e21, 1e-7, 123_456_789.123, Double.leastNonzeroMagnitude, Double.greatestFiniteMagnitude, 1.0 / 3] {
            try Self.same([number], "\(number)")
        }
        try Self.same([Int64.min, Int64.max, 0, -1])
        try Self.same(["Ada", "", "\"q\" \\ \n", text, "é"], "a list of text, written in place")
        try Self.same([[String]](arrayLiteral: ["a", "b"], [], ["c"]))
        try Self.same(Float(0.1))
        let value: JSONValue = .object([
            "b": .array([.null, .bool(true), .int(-7), .double(2.25), .string("\"q\"")]), "a": .object(["Z": .int(1), "é": .int(2), "aa": .int(3)]),
        ])
        try Self.same(value)
        try Self.same(Nested(name: "n", missing: nil, kept: nil, list: [[1, 2], []], map: ["y": true, "x": false], keyed: [2: "two", 10: "ten"], empty: []))
        try Self.same(Containers())
        try Self.same(Empty())
        try Self.same([Empty()])
        var settings = SensorSettings(sensor: "door")
        settings.capacity = 10
        try Self.same(settings)
        let zone = LocalTime("Europe/Paris")!
        let bounds = zone.boundaries(from: 1_711_843_200_000_000, to: 1_711_929_600_000_000, unit: .hour, limit: 100)!
        let period = ReportPeriod(zone: zone, unit: .hour, boundaries: bounds)
        let usage = bounds.dropLast().map { Usage(min: 0, peak: 3, peakAt: $0, area: 1234.5, span: 3_600_000_000) as Usage? }
        try Self.same(UtilisationReport(subject: .sensor("door"), period: period, capacity: 7, usage: usage, privacy: .off))
        try Self.same(Heatmap(subject: .place("p"), period: period, capacity: nil, usage: usage, privacy: Privacy(k: 5)))
    }

    struct RoomAnswer: Encodable {
        let status: String
        let occupants: [String]
    }

    /// A room's answer, kept as JSON through arrivals and departures (first, middle, last, the
    /// only one), is what the encoder writes of the same names.
    @Test func aRoomsKeptAnswerIsWhatTheEncoderWrites() throws {
        let text = String((0..<128).map { Character(Unicode.Scalar(UInt8($0))) }) + "é 😀"
        var list = OccupantList(["Ada", "\"q\""])
        var model = ["Ada", "\"q\""]
        let steps: [(name: String, arrives: Bool)] = [
            (text, true), ("é", true), ("", true), ("Ada", false), ("é", false), ("", false), ("Bo", true), ("\"q\"", false), (text, false),
            ("Bo", false), ("nobody", false), ("Cy", true),
        ]
        for (name, arrives) in steps {
            if arrives {
                list.append(name)
                model.append(name)
            } else {
                #expect(list.remove(name) == model.contains(name))
                model.removeAll { $0 == name }
            }
            #expect(list.names == model)
            let expected = try JSONWriter.encode(RoomAnswer(status: "registered", occupants: model))
            #expect(Array(buffer: OccupantList.answer(list.json, status: "registered")) == expected, "after \(arrives ? "arriving" : "leaving"): \(name.prefix(8))")
        }
        #expect(OccupantList(model).json == list.json)
    }

    /// A presence's people write their own JSON (`JSONWritable`): alone, in a list, and inside
    /// the presence, it is what the encoder writes of them, closed or not, text escaped.
    @Test func aPresenceWritesWhatTheEncoderWrites() throws {
        let text = String((0..<128).map { Character(Unicode.Scalar(UInt8($0))) }) + "é 😀"
        let since = Timestamp(microseconds: 1_764_000_000_123_000)
        var closed = NamedPerson(name: text, source: "attendance", sourceID: "t/\(text)", placeID: "p\"/q", since: since)
        closed.closedAt = Timestamp(microseconds: 1_764_003_600_000_000)
        let people = [NamedPerson(name: "Ada", source: "room", sourceID: "r/Ada", placeID: "p", since: since), closed]
        try Self.same(people[0])
        try Self.same(closed)
        try Self.same(people)
        try Self.same(Presence(place: "p", at: since, counted: 3, named: [people[0]], closedByPolicy: [closed]))
        try Self.same(["people": people])
    }

    @Test func notANumberIsRefusedAsByFoundation() {
        #expect(throws: EncodingError.self) { try JSONWriter.encode([Double.nan]) }
        #expect(throws: EncodingError.self) { try Self.foundation([Double.infinity]) }
        #expect(throws: EncodingError.self) { try JSONWriter.encode([Double.infinity]) }
    }
}
