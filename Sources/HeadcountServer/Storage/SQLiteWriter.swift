import Logging
import NIOCore
import SQLKit
import SQLiteKit
import Synchronization
// SQLite's C API, as SQLiteNIO's package builds it (its target, reachable through SQLiteNIO).
import VaporCSQLite

/// SQLite's one writing connection, held here rather than through SQLiteNIO, for two reasons
/// `perf` gave during a run of webhooks: SQLiteNIO parses every statement afresh (a quarter of
/// the writer's time went to SQLite's parser), and hands each one to a thread pool and its result
/// to an event loop (two thread hops a statement). Here a statement is prepared once and kept,
/// and runs at once on the calling thread: the writer's, where `GroupCommit` runs its batches.
final class SQLiteWriter: SQLDatabase {
    let logger: Logger
    let eventLoop: any EventLoop
    var dialect: any SQLDialect { SQLiteDialect() }
    var queryLogLevel: Logger.Level? { nil }
    private let connection: Mutex<Connection>
    /// Made once: each holds a Foundation JSON coder, too dear to make per value.
    private let encoder = SQLiteDataEncoder()

    /// Opens (or creates) the file, in SQLite's serialized mode.
    init(path: String, logger: Logger, eventLoop: any EventLoop) throws {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_CREATE | SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_URI | SQLITE_OPEN_EXRESCODE
        let opened = sqlite_nio_sqlite3_open_v2(path, &handle, flags, nil)
        guard opened == SQLITE_OK, let handle else {
            let failure = SQLiteFailure(code: opened, handle: handle)
            sqlite_nio_sqlite3_close(handle)
            throw failure
        }
        connection = Mutex(Connection(handle: handle))
        (self.logger, self.eventLoop) = (logger, eventLoop)
    }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) -> EventLoopFuture<Void> {
        eventLoop.makeCompletedFuture { try run(query).forEach(onRow) }
    }

    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> Void) async throws {
        try run(query).forEach(onRow)
    }

    private func run(_ query: any SQLExpression) throws -> [WriterRow] {
        let (sql, binds) = serialize(query)
        let values = try binds.map { try encoder.encode($0) }
        return try connection.withLock { try $0.run(sql, values) }
    }

    /// Finalizes the statements kept and closes the file; nothing may run after it.
    func close() {
        connection.withLock { $0.close() }
    }
}

/// A failed SQLite call: its (extended) result code and SQLite's message.
struct SQLiteFailure: Error, CustomStringConvertible {
    let code: Int32
    let message: String

    init(code: Int32, handle: OpaquePointer?) {
        self.init(code: code, message: sqlite_nio_sqlite3_errmsg(handle).map { String(cString: $0) } ?? String(cString: sqlite_nio_sqlite3_errstr(code)))
    }

    init(code: Int32, message: String) {
        (self.code, self.message) = (code, message)
    }

    /// A full disk, a failing device, a lock or memory: no fault of the statement's.
    var isTransient: Bool { [SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM].contains(code & 0xFF) }

    var description: String { message }
}

/// The handle and the statements prepared on it, by their text: used under `SQLiteWriter`'s lock.
private struct Connection: ~Copyable {
    /// Statements kept at most; past it, the one used longest ago is finalized. Texts that vary
    /// (a list of binds per item) would otherwise grow it without end.
    static let capacity = 256
    private var handle: OpaquePointer?
    private var statements: [String: (statement: OpaquePointer, lastUse: Int)] = [:]
    private var uses = 0

    init(handle: OpaquePointer) {
        self.handle = handle
    }

    mutating func run(_ sql: String, _ binds: [SQLiteData]) throws -> [WriterRow] {
        let statement = try prepared(sql)
        defer {
            sqlite_nio_sqlite3_reset(statement)
        }
        // Every parameter is bound afresh, so none keeps a value of the last run. Bindings are not
        // cleared: clearing them makes SQLite prepare again any statement whose plan a value could
        // sway (the sync's probes were prepared afresh on every run so). SQLite keeps a statement's
        // last values until its next run: at most a batch's rows or an image per kept statement.
        guard sqlite_nio_sqlite3_bind_parameter_count(statement) == binds.count else {
            throw SQLiteFailure(code: SQLITE_RANGE, message: "\(binds.count) values for \(sqlite_nio_sqlite3_bind_parameter_count(statement)) parameters")
        }
        for (index, bind) in binds.enumerated() {
            try check(bind.bind(to: statement, at: Int32(index + 1)))
        }
        var rows: [WriterRow] = []
        var columns: WriterRow.Columns?
        while true {
            let stepped = sqlite_nio_sqlite3_step(statement)
            guard stepped == SQLITE_ROW else {
                try check(stepped)
                return rows
            }
            let names = columns ?? WriterRow.Columns(statement)
            columns = names
            rows.append(WriterRow(columns: names, values: (0..<Int32(names.names.count)).map { SQLiteData(column: $0, of: statement) }))
        }
    }

    private mutating func prepared(_ sql: String) throws -> OpaquePointer {
        uses += 1
        if let kept = statements.index(forKey: sql) {
            statements.values[kept].lastUse = uses
            return statements.values[kept].statement
        }
        var statement: OpaquePointer?
        try check(sqlite_nio_sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil))
        // Only white space or a comment: nothing to run.
        guard let statement else { throw SQLiteFailure(code: SQLITE_MISUSE, message: "an empty statement") }
        if statements.count >= Self.capacity, let oldest = statements.min(by: { $0.value.lastUse < $1.value.lastUse }) {
            sqlite_nio_sqlite3_finalize(oldest.value.statement)
            statements[oldest.key] = nil
        }
        statements[sql] = (statement, uses)
        return statement
    }

    private func check(_ code: Int32) throws {
        guard code == SQLITE_OK || code == SQLITE_DONE else { throw SQLiteFailure(code: code, handle: handle) }
    }

    mutating func close() {
        for (statement, _) in statements.values { sqlite_nio_sqlite3_finalize(statement) }
        statements = [:]
        sqlite_nio_sqlite3_close(handle)
        handle = nil
    }
}

/// A row the writer read: decoded as SQLiteKit decodes its rows.
private struct WriterRow: SQLRow {
    /// A statement's column names, shared by its rows.
    final class Columns: Sendable {
        let names: [String]
        let offsets: [String: Int]

        init(_ statement: OpaquePointer) {
            names = (0..<sqlite_nio_sqlite3_column_count(statement)).map { sqlite_nio_sqlite3_column_name(statement, $0).map { String(cString: $0) } ?? "" }
            offsets = Dictionary(names.enumerated().map { ($1, $0) }) { first, _ in first }
        }
    }

    struct MissingColumn: Error {
        let column: String
    }

    /// Shared by every row: it holds a Foundation JSON decoder, too dear to make per value.
    private static let decoder = SQLiteDataDecoder()
    let columns: Columns
    let values: [SQLiteData]

    var allColumns: [String] { columns.names }

    func contains(column: String) -> Bool { columns.offsets[column] != nil }

    func decodeNil(column: String) throws -> Bool {
        columns.offsets[column].map { values[$0] == .null } ?? true
    }

    func decode<D: Decodable>(column: String, as type: D.Type) throws -> D {
        guard let offset = columns.offsets[column] else { throw MissingColumn(column: column) }
        return try Self.decoder.decode(D.self, from: values[offset])
    }
}

extension SQLiteData {
    /// SQLite's destructor that makes it copy a bound value.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    fileprivate func bind(to statement: OpaquePointer, at index: Int32) -> Int32 {
        switch self {
        case .integer(let value): sqlite_nio_sqlite3_bind_int64(statement, index, Int64(value))
        case .float(let value): sqlite_nio_sqlite3_bind_double(statement, index, value)
        case .text(let value): sqlite_nio_sqlite3_bind_text64(statement, index, value, UInt64(value.utf8.count), Self.transient, UInt8(SQLITE_UTF8))
        case .blob(let value):
            value.withUnsafeReadableBytes { sqlite_nio_sqlite3_bind_blob64(statement, index, $0.baseAddress, UInt64($0.count), Self.transient) }
        case .null: sqlite_nio_sqlite3_bind_null(statement, index)
        }
    }

    fileprivate init(column: Int32, of statement: OpaquePointer) {
        switch sqlite_nio_sqlite3_column_type(statement, column) {
        case SQLITE_INTEGER: self = .integer(Int(sqlite_nio_sqlite3_column_int64(statement, column)))
        case SQLITE_FLOAT: self = .float(sqlite_nio_sqlite3_column_double(statement, column))
        case SQLITE_TEXT:
            let bytes = UnsafeBufferPointer(start: sqlite_nio_sqlite3_column_text(statement, column), count: Int(sqlite_nio_sqlite3_column_bytes(statement, column)))
            self = .text(String(decoding: bytes, as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite_nio_sqlite3_column_bytes(statement, column))
            var buffer = ByteBufferAllocator().buffer(capacity: count)
            if let bytes = sqlite_nio_sqlite3_column_blob(statement, column) { buffer.writeBytes(UnsafeRawBufferPointer(start: bytes, count: count)) }
            self = .blob(buffer)
        default: self = .null
        }
    }
}
