import NIOCore

/// Who is inside a room, in order of arrival, kept with its JSON array. Every action answers the
/// whole room, and writing thousands of names for each answer was half the server's CPU (`perf`
/// of register with unique names): an arrival appends its name's JSON, a departure cuts it out.
struct OccupantList: Sendable {
    private(set) var names: [String] = []
    /// The JSON array without its closing bracket: `["a","b"`.
    private(set) var json: [UInt8] = [UInt8(ascii: "[")]
    /// Where each name's element ends in `json`.
    private var ends: [Int] = []

    init(_ names: [String] = []) {
        for name in names { append(name) }
    }

    var count: Int { names.count }

    mutating func append(_ name: String) {
        if !names.isEmpty { json.append(UInt8(ascii: ",")) }
        JSONWriter.append(name, to: &json)
        names.append(name)
        ends.append(json.count)
    }

    /// Removes `name`; false when it is not in the list.
    mutating func remove(_ name: String) -> Bool {
        guard let index = names.firstIndex(of: name) else { return false }
        // The element with the comma before it, or, for the first, with the comma after it.
        let cut =
            index > 0
            ? ends[index - 1]..<ends[index]
            : names.count > 1 ? 1..<(ends[0] + 1) : 1..<ends[0]
        json.removeSubrange(cut)
        names.remove(at: index)
        ends.remove(at: index)
        for later in ends.indices.dropFirst(index) { ends[later] -= cut.count }
        return true
    }

    /// `{"occupants":[…],"status":"…"}`, the answer to an action, as `JSONWriter` encodes it,
    /// written straight into the response's buffer (the names are most of it).
    static func answer(_ json: [UInt8], status: String) -> ByteBuffer {
        var tail = Array(#"],"status":"#.utf8)
        JSONWriter.append(status, to: &tail)
        tail.append(UInt8(ascii: "}"))
        var out = ByteBuffer()
        out.reserveCapacity(16 + json.count + tail.count)
        out.writeString(#"{"occupants":"#)
        out.writeBytes(json)
        out.writeBytes(tail)
        return out
    }
}
