import NIOCore
import PostgresNIO
import SQLKit

/// Many rows handed to one statement as a table: on PostgreSQL one binary array parameter per
/// column, read with `unnest`; on SQLite one JSON parameter, read with `jsonb_each`. Binding a
/// parameter per value cost more than the statement it fed (a batch of syncs reads and inserts
/// thousands of records, six and nine values each), and on PostgreSQL a JSON parameter was parsed
/// as `jsonb`, its numbers as `numeric`: a sixth of the database's time in a sync batch. On SQLite
/// `jsonb_each` hands each row over as binary JSON, which `json_extract` reads as it is;
/// `json_each` handed it over as text, parsed again for every column (JSON was a third of the
/// writer's time in SQLite in a batch of syncs, and is a sixth now).
struct BulkRows {
    enum Kind {
        case text, integer, real

        /// An element's type, and an array's type and SQL name, on PostgreSQL.
        fileprivate var postgres: (element: PostgresDataType, array: PostgresDataType, sql: String) {
            switch self {
            case .text: (.text, .textArray, "text[]")
            case .integer: (.int8, .int8Array, "bigint[]")
            case .real: (.float8, .float8Array, "double precision[]")
            }
        }
    }

    enum Value {
        case text(String)
        case integer(Int64)
        case real(Double)
    }

    private let names: [String]
    private var columns: [PostgresColumn]

    init(_ columns: KeyValuePairs<String, Kind>) {
        names = columns.map(\.key)
        self.columns = columns.map { PostgresColumn(kind: $0.value) }
    }

    /// Adds a row: one value (nil for NULL) of its column's kind per column, in their order. A
    /// real must be finite.
    mutating func append(_ values: Value?...) {
        precondition(values.count == columns.count, "one value per column")
        for (index, value) in values.enumerated() { columns[index].values.append(value) }
    }

    /// The rows as a table `name` with the columns' names, for a FROM clause.
    func table(_ name: String, in db: any SQLDatabase) -> SQLQueryString {
        let list = names.joined(separator: ", ")
        if db.dialect.name == "postgresql" {
            let arrays = columns.map { "\(bind: $0)::\(unsafeRaw: $0.kind.postgres.sql)" as SQLQueryString }
            return "unnest(\(arrays.joined(separator: ", "))) AS \(ident: name) (\(unsafeRaw: list))"
        }
        let select = names.enumerated().map { "json_extract(e.value, '$[\($0.offset)]') AS \($0.element)" }
        return "(SELECT \(unsafeRaw: select.joined(separator: ", ")) FROM jsonb_each(\(bind: json)) AS e) AS \(ident: name)"
    }

    /// The rows as a JSON array of arrays, for SQLite.
    private var json: String {
        var json: [UInt8] = [UInt8(ascii: "[")]
        for row in 0..<(columns.first?.values.count ?? 0) {
            if row > 0 { json.append(UInt8(ascii: ",")) }
            json.append(UInt8(ascii: "["))
            for (index, column) in columns.enumerated() {
                if index > 0 { json.append(UInt8(ascii: ",")) }
                switch column.values[row] {
                case nil: json.append(contentsOf: "null".utf8)
                case .text(let text)?: JSONWriter.append(text, to: &json)
                case .integer(let number)?: json.append(contentsOf: String(number).utf8)
                case .real(let number)?: json.append(contentsOf: (number.isFinite ? number.description : "null").utf8)
                }
            }
            json.append(UInt8(ascii: "]"))
        }
        return String(decoding: json + [UInt8(ascii: "]")], as: UTF8.self)
    }
}

/// A column of `BulkRows` as a one-dimensional PostgreSQL array in the binary format, NULLs
/// included (PostgresNIO's arrays cannot hold them).
private struct PostgresColumn: Encodable, Sendable, PostgresThrowingDynamicTypeEncodable {
    let kind: BulkRows.Kind
    var values: [BulkRows.Value?] = []

    var psqlType: PostgresDataType { kind.postgres.array }
    var psqlFormat: PostgresFormat { .binary }

    func encode<JSONEncoder: PostgresJSONEncoder>(into buffer: inout ByteBuffer, context: PostgresEncodingContext<JSONEncoder>) throws {
        buffer.writeInteger(values.isEmpty ? 0 : 1, as: Int32.self)  // dimensions
        buffer.writeInteger(values.contains { $0 == nil } ? 1 : 0, as: Int32.self)  // has NULLs
        buffer.writeInteger(kind.postgres.element.rawValue)
        guard !values.isEmpty else { return }
        buffer.writeInteger(Int32(values.count))
        buffer.writeInteger(1, as: Int32.self)  // lower bound
        for value in values {
            switch value {
            case nil:
                buffer.writeInteger(-1, as: Int32.self)
            case .text(let text)?:
                buffer.writeInteger(Int32(text.utf8.count))
                buffer.writeString(text)
            case .integer(let number)?:
                buffer.writeInteger(8, as: Int32.self)
                buffer.writeInteger(number)
            case .real(let number)?:
                buffer.writeInteger(8, as: Int32.self)
                buffer.writeInteger(number.bitPattern)
            }
        }
    }

    /// Only PostgreSQL binds it, through `encode(into:context:)`.
    func encode(to encoder: any Encoder) throws {
        throw EncodingError.invalidValue(values, .init(codingPath: [], debugDescription: "a PostgreSQL array column"))
    }
}
