import SQLKit

/// Many rows handed to one statement as a single JSON parameter and read there as a table. Binding
/// a parameter per value cost more than the statement it fed: a batch of syncs reads and inserts
/// thousands of records, five and eleven values each, and each bound value is encoded, numbered
/// and parsed on its own.
struct JSONRows {
    enum Value {
        case text(String)
        case integer(Int64)
        case real(Double)
    }

    /// Each column's name and PostgreSQL type (`text`, `bigint`, `double precision`); SQLite
    /// takes JSON's own types.
    private let columns: [(name: String, type: String)]
    private var json: [UInt8] = [UInt8(ascii: "[")]
    private(set) var isEmpty = true

    init(_ columns: KeyValuePairs<String, String>) {
        self.columns = columns.map { ($0.key, $0.value) }
    }

    /// Adds a row: one value (nil for NULL) per column, in their order. A real must be finite.
    mutating func append(_ values: Value?...) {
        precondition(values.count == columns.count, "one value per column")
        if !isEmpty { json.append(UInt8(ascii: ",")) }
        isEmpty = false
        json.append(UInt8(ascii: "["))
        for (index, value) in values.enumerated() {
            if index > 0 { json.append(UInt8(ascii: ",")) }
            switch value {
            case nil: json.append(contentsOf: "null".utf8)
            case .text(let text)?: JSONWriter.append(text, to: &json)
            case .integer(let number)?: json.append(contentsOf: String(number).utf8)
            case .real(let number)?: json.append(contentsOf: (number.isFinite ? number.description : "null").utf8)
            }
        }
        json.append(UInt8(ascii: "]"))
    }

    /// The rows as a table `name` with the columns' names, for a FROM clause.
    func table(_ name: String, in db: any SQLDatabase) -> SQLQueryString {
        let text = String(decoding: json + [UInt8(ascii: "]")], as: UTF8.self)
        if db.dialect.name == "postgresql" {
            let select = columns.enumerated().map { "(e.value->>\($0.offset))::\($0.element.type) AS \($0.element.name)" }
            return "(SELECT \(unsafeRaw: select.joined(separator: ", ")) FROM jsonb_array_elements(\(bind: text)::jsonb) AS e) AS \(ident: name)"
        }
        let select = columns.enumerated().map { "json_extract(e.value, '$[\($0.offset)]') AS \($0.element.name)" }
        return "(SELECT \(unsafeRaw: select.joined(separator: ", ")) FROM json_each(\(bind: text)) AS e) AS \(ident: name)"
    }
}
