/// Encodes answers as JSON, byte for byte as Foundation's `JSONEncoder` does with
/// `[.sortedKeys, .withoutEscapingSlashes]`, at a fraction of its cost: Foundation builds a boxed
/// tree of every value before it writes one byte, which was a third of a big answer's time (a
/// presence of 10,000 people, a year of daily utilisation). Here each value is written as it is
/// encoded; an object keeps its members' bytes until it is complete, then writes them sorted.
enum JSONWriter {
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        var out: [UInt8] = []
        try ValueEncoder.bytes(of: value, at: []).write(to: &out)
        return out
    }

    /// `number` as Foundation writes it: `4` for 4.0, `0.1`, `1e+21`; not a number is an error.
    static func append(_ number: Double, to out: inout [UInt8], at codingPath: [any CodingKey]) throws {
        guard number.isFinite else {
            throw EncodingError.invalidValue(number, .init(codingPath: codingPath, debugDescription: "\(number) is not valid JSON"))
        }
        var text = number.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        out.append(contentsOf: text.utf8)
    }

    static func append(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Most text needs no escape: copied in one go.
        guard text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else {
            out.append(contentsOf: text.utf8)
            out.append(UInt8(ascii: "\""))
            return
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
            case 0x0A: out.append(contentsOf: [92, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [92, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [92, UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [92, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [92, UInt8(ascii: "f")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// A value that writes its own JSON, byte for byte as its `encode(to:)` through `JSONWriter`
/// would: for the items of big answers (a presence's ten thousand people), where an encoder per
/// item was most of the answer's time. `JSONWriter` writes it directly wherever it meets one.
protocol JSONWritable: Encodable {
    func writeJSON(to out: inout [UInt8])
}

/// One value being encoded: whichever container it was given, written out once it is complete.
private final class ValueEncoder: Encoder {
    enum Content {
        case none
        case bytes([UInt8])
        case object(JSONMembers)
        case array(JSONItems)
    }

    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    var content = Content.none

    init(codingPath: [any CodingKey]) { self.codingPath = codingPath }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object(let store) = content { return KeyedEncodingContainer(ObjectContainer(store: store, codingPath: codingPath)) }
        let store = JSONMembers()
        content = .object(store)
        return KeyedEncodingContainer(ObjectContainer(store: store, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .array(let store) = content { return ArrayContainer(store: store, codingPath: codingPath) }
        let store = JSONItems()
        content = .array(store)
        return ArrayContainer(store: store, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleContainer(encoder: self) }

    /// Appends the finished value (an encoder given nothing writes `{}`, as Foundation does).
    func write(to out: inout [UInt8]) throws {
        switch content {
        case .none: out.append(contentsOf: Array("{}".utf8))
        case .bytes(let bytes): out.append(contentsOf: bytes)
        case .object(let store): try store.write(to: &out)
        case .array(let store): try store.write(to: &out)
        }
    }

    /// The JSON of a nested value: primitives directly, anything else through an encoder of its own.
    static func bytes<T: Encodable>(of value: T, at codingPath: [any CodingKey]) throws -> Member {
        var out: [UInt8] = []
        switch value {
        case let text as String: JSONWriter.append(text, to: &out)
        case let number as Int64: out.append(contentsOf: String(number).utf8)
        case let number as Int: out.append(contentsOf: String(number).utf8)
        case let number as Double: try JSONWriter.append(number, to: &out, at: codingPath)
        case let flag as Bool: out.append(contentsOf: (flag ? "true" : "false").utf8)
        // The other primitives: their own encode(to:) would come back here.
        case let number as any BinaryInteger: out.append(contentsOf: String(describing: number).utf8)
        case let number as Float:
            guard number.isFinite else { throw EncodingError.invalidValue(number, .init(codingPath: codingPath, debugDescription: "\(number) is not valid JSON")) }
            var text = number.description
            if text.hasSuffix(".0") { text.removeLast(2) }
            out.append(contentsOf: text.utf8)
        case let value as any JSONWritable: value.writeJSON(to: &out)
        default:
            let encoder = ValueEncoder(codingPath: codingPath)
            try value.encode(to: encoder)
            return .encoder(encoder)
        }
        return .bytes(out)
    }
}

/// A member's JSON: written already, or an encoder (a nested container) completed later.
private enum Member {
    case bytes([UInt8])
    case encoder(ValueEncoder)

    func write(to out: inout [UInt8]) throws {
        switch self {
        case .bytes(let bytes): out.append(contentsOf: bytes)
        case .encoder(let encoder): try encoder.write(to: &out)
        }
    }
}

private final class JSONMembers {
    /// The members' values written so far, one after another; a member is its key and its part
    /// of `bytes`, or a nested encoder completed later.
    var bytes: [UInt8] = []
    var members: [(key: String, value: Range<Int>?, nested: ValueEncoder?)] = []

    func append(_ key: String, _ write: (inout [UInt8]) throws -> Void) rethrows {
        let start = bytes.count
        try write(&bytes)
        members.append((key, start..<bytes.count, nil))
    }

    func append(_ key: String, _ member: Member) {
        switch member {
        case .bytes(let value): append(key) { $0 += value }
        case .encoder(let encoder): members.append((key, nil, encoder))
        }
    }

    func write(to out: inout [UInt8]) throws {
        out.append(UInt8(ascii: "{"))
        // Sorted by key; of a key encoded twice the last value stays, as in Foundation.
        let order = members.indices.sorted { (members[$0].key, $0) < (members[$1].key, $1) }
        var first = true
        for (position, index) in order.enumerated() {
            let member = members[index]
            if position + 1 < order.count, members[order[position + 1]].key == member.key { continue }
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            JSONWriter.append(member.key, to: &out)
            out.append(UInt8(ascii: ":"))
            if let nested = member.nested { try nested.write(to: &out) } else { out += bytes[member.value!] }
        }
        out.append(UInt8(ascii: "}"))
    }
}

private final class JSONItems {
    /// The items written so far, one after another; an item is its part of `bytes`, or a nested
    /// encoder completed later. One buffer, not one per item: a list of 10,000 names is one.
    var bytes: [UInt8] = []
    var items: [(value: Range<Int>?, nested: ValueEncoder?)] = []

    func append(_ write: (inout [UInt8]) throws -> Void) rethrows {
        let start = bytes.count
        try write(&bytes)
        items.append((start..<bytes.count, nil))
    }

    func append(_ member: Member) {
        switch member {
        case .bytes(let value): append { $0 += value }
        case .encoder(let encoder): items.append((nil, encoder))
        }
    }

    func write(to out: inout [UInt8]) throws {
        out.append(UInt8(ascii: "["))
        for (index, item) in items.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            if let nested = item.nested { try nested.write(to: &out) } else { out += bytes[item.value!] }
        }
        out.append(UInt8(ascii: "]"))
    }
}

private struct ObjectContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let store: JSONMembers
    let codingPath: [any CodingKey]

    // The common primitives directly: no dynamic cast to find out what they are.
    mutating func encodeNil(forKey key: Key) throws { store.append(key.stringValue) { $0 += Array("null".utf8) } }
    mutating func encode(_ value: String, forKey key: Key) throws { store.append(key.stringValue) { JSONWriter.append(value, to: &$0) } }
    mutating func encode(_ value: Int64, forKey key: Key) throws { store.append(key.stringValue) { $0 += String(value).utf8 } }
    mutating func encode(_ value: Int, forKey key: Key) throws { store.append(key.stringValue) { $0 += String(value).utf8 } }
    mutating func encode(_ value: Bool, forKey key: Key) throws { store.append(key.stringValue) { $0 += (value ? "true" : "false").utf8 } }
    mutating func encode(_ value: Double, forKey key: Key) throws {
        try store.append(key.stringValue) { try JSONWriter.append(value, to: &$0, at: codingPath + [key]) }
    }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        store.append(key.stringValue, try ValueEncoder.bytes(of: value, at: codingPath + [key]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let encoder = ValueEncoder(codingPath: codingPath + [key])
        store.append(key.stringValue, .encoder(encoder))
        return encoder.container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let encoder = ValueEncoder(codingPath: codingPath + [key])
        store.append(key.stringValue, .encoder(encoder))
        return encoder.unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { superEncoder(forKey: Key(stringValue: "super")!) }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        let encoder = ValueEncoder(codingPath: codingPath + [key])
        store.append(key.stringValue, .encoder(encoder))
        return encoder
    }
}

private struct IndexKey: CodingKey {
    let intValue: Int?
    var stringValue: String { String(intValue!) }
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.intValue = intValue }
}

private struct ArrayContainer: UnkeyedEncodingContainer {
    let store: JSONItems
    let codingPath: [any CodingKey]
    var count: Int { store.items.count }

    mutating func encodeNil() throws { store.append { $0 += "null".utf8 } }

    mutating func encode<T: Encodable>(_ value: T) throws {
        // Text, the most common item, is written in place.
        if let text = value as? String { return store.append { JSONWriter.append(text, to: &$0) } }
        if let value = value as? any JSONWritable { return store.append { value.writeJSON(to: &$0) } }
        store.append(try ValueEncoder.bytes(of: value, at: codingPath + [IndexKey(count)]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let encoder = ValueEncoder(codingPath: codingPath + [IndexKey(count)])
        store.append(.encoder(encoder))
        return encoder.container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let encoder = ValueEncoder(codingPath: codingPath + [IndexKey(count)])
        store.append(.encoder(encoder))
        return encoder.unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        let encoder = ValueEncoder(codingPath: codingPath + [IndexKey(count)])
        store.append(.encoder(encoder))
        return encoder
    }
}

private struct SingleContainer: SingleValueEncodingContainer {
    let encoder: ValueEncoder
    var codingPath: [any CodingKey] { encoder.codingPath }

    mutating func encodeNil() throws { encoder.content = .bytes(Array("null".utf8)) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        switch try ValueEncoder.bytes(of: value, at: codingPath) {
        case .bytes(let bytes): encoder.content = .bytes(bytes)
        case .encoder(let nested): encoder.content = nested.content
        }
    }
}
