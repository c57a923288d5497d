/// The one rule for a name, an id or a free text from outside: a length in characters, and no
/// control characters (PostgreSQL cannot store U+0000 at all, and none belongs in a name or an
/// id). Each family answers a broken rule its own way (400 in the seeds' families, 422 in events
/// and attendance), so the rule says what is wrong and the caller throws.
enum TextRule {
    /// What is wrong with `text` as `field`, or nil if nothing is. `allowing` lists control
    /// characters a multi-line text may hold.
    static func problem(_ field: String, _ text: String, length: ClosedRange<Int>, allowing: Set<Unicode.Scalar> = []) -> String? {
        if text.isEmpty, length.lowerBound > 0 { return "\(field) is required" }
        guard length.contains(text.count) else {
            return length.lowerBound <= 1
                ? "\(field) must be at most \(length.upperBound) characters"
                : "\(field) must be \(length.lowerBound)-\(length.upperBound) characters"
        }
        guard !text.unicodeScalars.contains(where: { $0.isControl && !allowing.contains($0) }) else {
            return "\(field) must not contain control characters"
        }
        return nil
    }

    /// Whether `text` keeps the rule.
    static func allows(_ text: String, length: ClosedRange<Int>) -> Bool {
        problem("", text, length: length) == nil
    }
}

extension Unicode.Scalar {
    /// U+0000–U+001F and U+007F.
    var isControl: Bool { value < 0x20 || value == 0x7F }
}

extension String {
    var hasControlCharacters: Bool { unicodeScalars.contains(where: \.isControl) }
}
