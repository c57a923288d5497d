import Logging
import SQLKit
import Synchronization
import Testing

@testable import HeadcountServer

@Suite("Storage") struct StorageTests {
    struct Refused: Error {}

    /// What each of two instances heard of its commits, in order.
    final class Commits: Sendable {
        let counts = Mutex<[[Int]]>([[], []])
    }

    /// Rows handed to a statement as one table (`BulkRows`: typed arrays on PostgreSQL, JSON on
    /// SQLite) arrive as sent: every kind, NULLs, text that JSON or an array literal would escape,
    /// and the extremes of each number.
    @Test(arguments: Engine.available)
    func bulkRowsArriveAsSent(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        try await environment.withDatabase { database in
            let sent: [(String?, Int64?, Double?)] = [
                ("plain", 1, 0.5), (#"quote " backslash \ {braces,} NULL"#, .min, -1e300), ("émoji 🚪\n", .max, nil), (nil, nil, Double.leastNonzeroMagnitude), ("", 0, 0),
            ]
            var rows = BulkRows(["position": .integer, "name": .text, "n": .integer, "x": .real])
            for (position, row) in sent.enumerated() {
                rows.append(.integer(Int64(position)), row.0.map { .text($0) }, row.1.map { .integer($0) }, row.2.map { .real($0) })
            }
            let read = try await database.read { [rows] db in
                try await db.raw("SELECT k.position, k.name, k.n, k.x FROM \(rows.table("k", in: db)) ORDER BY k.position").all().map {
                    (try $0.decode(column: "name", as: String?.self), try $0.decode(column: "n", as: Int64?.self), try $0.decode(column: "x", as: Double?.self))
                }
            }
            #expect(read.count == sent.count)
            for (got, want) in zip(read, sent) {
                #expect(got.0 == want.0 && got.1 == want.1 && got.2 == want.2)
            }
        }
    }

    /// SQLite's writer keeps each statement it prepared (`SQLiteWriter`): one text run again with
    /// other values, after it failed, and after more texts than it keeps pushed it out, answers
    /// as if prepared afresh; values come back as stored, text with a NUL and blobs included.
    @Test func sqliteWriterReusesItsStatementsFaithfully() async throws {
        let environment = try await TestEnvironment.make(.sqlite)
        try await environment.withDatabase { database in
            try await database.transaction { db in
                try await db.raw("CREATE TABLE kept (n BIGINT PRIMARY KEY, name TEXT, x DOUBLE PRECISION, data BLOB)").run()
            }
            let insert = { @Sendable (n: Int64, name: String?) async throws in
                try await database.transaction { db in
                    try await db.raw("INSERT INTO kept (n, name, x, data) VALUES (\(bind: n), \(bind: name), \(bind: Double(n) / 4), \(bind: [UInt8(n & 0xFF), 0, 255]))").run()
                }
            }
            try await insert(.min, "nul \u{0} inside, émoji 🚪")
            try await insert(.max, nil)
            await #expect(throws: (any Error).self) { try await insert(.max, "taken") }
            try await insert(7, "after a failure")
            await #expect(throws: (any Error).self) { try await database.transaction { db in try await db.raw("SELEC 1").run() } }

            // More distinct texts than the writer keeps, then the first again.
            let texts = (0..<300).map { "SELECT n, name, x, data FROM kept WHERE n = \(bind: Int64(7)) AND \(unsafeRaw: String($0)) = \(unsafeRaw: String($0))" as SQLQueryString }
            for text in texts + [texts[0]] {
                let row = try await database.transaction { db in try await db.raw(text).first()! }
                #expect(try row.decode(column: "name", as: String.self) == "after a failure")
            }
            // A kept statement keeps its last values (they are not cleared): one run without a
            // value for each parameter fails rather than reading with an old one.
            let lookup = { @Sendable (text: SQLQueryString) async throws in
                try await database.transaction { db in try await db.raw(text).first()?.decode(column: "name", as: String.self) }
            }
            #expect(try await lookup("SELECT name FROM kept WHERE n = \(bind: Int64(7))") == "after a failure")
            await #expect(throws: (any Error).self) { try await lookup("SELECT name FROM kept WHERE n = \(unsafeRaw: "?1")") }
            let rows = try await database.transaction { db in
                try await db.raw("SELECT n, name, x, data FROM kept ORDER BY n").all().map {
                    (
                        try $0.decode(column: "n", as: Int64.self), try $0.decode(column: "name", as: String?.self), try $0.decode(column: "x", as: Double.self),
                        try $0.decode(column: "data", as: [UInt8].self)
                    )
                }
            }
            #expect(rows.map(\.0) == [.min, 7, .max])
            #expect(rows.map(\.1) == ["nul \u{0} inside, émoji 🚪", "after a failure", nil])
            #expect(rows.map(\.2) == [Double(Int64.min) / 4, 1.75, Double(Int64.max) / 4])
            #expect(rows.map(\.3) == [[0, 0, 255], [7, 0, 255], [255, 0, 255]])
        }
    }

    /// A write SQLite's writer cannot store for want of room (SQLITE_FULL, here from a page limit
    /// rather than a full disk) is `DatabaseUnavailable` (a 503), not a fault of the request; with
    /// room again, the same statement stores.
    @Test func aFullSQLiteDatabaseIsUnavailableNotAFault() async throws {
        let environment = try await TestEnvironment.make(.sqlite)
        try await environment.withDatabase { database in
            try await database.transaction { db in try await db.raw("CREATE TABLE filler (data BLOB)").run() }
            let fill = { @Sendable in
                try await database.transaction { db in try await db.raw("INSERT INTO filler (data) VALUES (zeroblob(1000000))").run() }
            }
            // The writer's file may not grow past the pages it has.
            try await database.transaction { db in try await db.raw("PRAGMA max_page_count = 1").run() }
            await #expect(throws: DatabaseUnavailable.self) { try await fill() }
            try await database.transaction { db in try await db.raw("PRAGMA max_page_count = 1073741823").run() }
            try await fill()
            #expect(try await database.read { db in try await db.raw("SELECT COUNT(*) AS n FROM filler").first()!.decode(column: "n", as: Int.self) } == 1)
        }
    }

    /// 120 transactions at once, every third of which writes and then fails: exactly the others'
    /// rows are stored (on SQLite they share group commits, where a failure rolls back alone).
    @Test(arguments: Engine.available)
    func concurrentTransactionsCommitOrRollBackEachAlone(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        try await environment.withDatabase { database in
            try await database.transaction { db in
                try await db.raw("CREATE TABLE scratch (n BIGINT PRIMARY KEY)").run()
            }
            let outcomes = await withTaskGroup(of: Bool.self) { writers in
                for n in 0..<120 {
                    writers.addTask {
                        do {
                            try await database.transaction { db in
                                try await db.raw("INSERT INTO scratch (n) VALUES (\(bind: n))").run()
                                if n % 3 == 0 { throw Refused() }
                            }
                            return true
                        } catch {
                            return false
                        }
                    }
                }
                return await writers.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 80)
            let stored = try await database.read { db in
                try await db.raw("SELECT n FROM scratch ORDER BY n").all().map { try $0.decode(column: "n", as: Int.self) }
            }
            #expect(stored == (0..<120).filter { $0 % 3 != 0 })
        }
    }

    /// 120 writes to one hot row at once through two handles on one database (two instances),
    /// each locking the row first: every third fails in Swift and every fifth in SQL (a duplicate
    /// key, which on PostgreSQL aborts a transaction but for its savepoint). Exactly the others are
    /// stored, the row counts exactly them, each instance hears of its commits in their order, and
    /// on PostgreSQL they shared transactions.
    @Test(arguments: Engine.available)
    func writesToAHotRowShareTransactionsAndFailEachAlone(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        try await environment.withDatabase { first in
            try await environment.withDatabase { second in
                try await first.transaction { db in
                    try await db.raw("CREATE TABLE hot (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)").run()
                    try await db.raw("CREATE TABLE scratch (n BIGINT PRIMARY KEY, tx TEXT NOT NULL)").run()
                    try await db.raw("INSERT INTO hot (id, n) VALUES (1, 0)").run()
                    try await db.raw("INSERT INTO scratch (n, tx) VALUES (-1, '')").run()
                }
                let transactionID: SQLQueryString = engine == .postgres ? "txid_current()::text" : "''"
                // Per handle, the row's count each committed write left, in the order their `committed` ran.
                let committed = Commits()
                let outcomes = await withTaskGroup(of: Bool.self) { writers in
                    for n in 0..<120 {
                        writers.addTask {
                            do {
                                _ = try await (n % 2 == 0 ? first : second).transaction(sharing: "hot") { db in
                                    let count = try await db.raw("UPDATE hot SET n = n + 1 WHERE id = 1 RETURNING n").first()!.decode(column: "n", as: Int.self)
                                    try await db.raw("INSERT INTO scratch (n, tx) VALUES (\(bind: n % 5 == 0 ? -1 : n), \(transactionID))").run()
                                    if n % 3 == 0 { throw Refused() }
                                    return count
                                } committed: { count in
                                    committed.counts.withLock { $0[n % 2].append(count) }
                                }
                                return true
                            } catch {
                                return false
                            }
                        }
                    }
                    return await writers.reduce(into: [Bool]()) { $0.append($1) }
                }
                let kept = (0..<120).filter { $0 % 3 != 0 && $0 % 5 != 0 }
                #expect(outcomes.filter { $0 }.count == kept.count)
                let (stored, count, transactions) = try await first.read { db in
                    let rows = try await db.raw("SELECT n, tx FROM scratch WHERE n >= 0 ORDER BY n").all()
                    let count = try await db.raw("SELECT n FROM hot").first()!.decode(column: "n", as: Int.self)
                    return (try rows.map { try $0.decode(column: "n", as: Int.self) }, count, Set(try rows.map { try $0.decode(column: "tx", as: String.self) }))
                }
                #expect(stored == kept)
                #expect(count == kept.count)
                let orders = committed.counts.withLock { $0 }
                #expect(orders.allSatisfy { $0 == $0.sorted() }, "each instance hears of its commits in commit order: \(orders)")
                #expect(Set(orders.joined()) == Set(1...kept.count))
                if engine == .postgres { #expect(transactions.count < kept.count, "\(transactions.count) transactions for \(kept.count) writes") }
            }
        }
    }

    /// A write waiting behind a running one whose caller goes away is withdrawn: the caller hears
    /// so at once, and nothing of it is stored; the running one still commits.
    @Test(arguments: Engine.available)
    func aWaitingWriteWhoseCallerLeftIsNotDone(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        try await environment.withDatabase { database in
            try await database.transaction { db in try await db.raw("CREATE TABLE scratch (n BIGINT PRIMARY KEY)").run() }
            let running = Task {
                try await database.transaction(sharing: "scratch") { db in
                    try await db.raw("INSERT INTO scratch (n) VALUES (1)").run()
                    try await Task.sleep(for: .seconds(2))
                } committed: { _ in
                }
            }
            try await Task.sleep(for: .milliseconds(100))
            let waiting = Task {
                try await database.transaction(sharing: "scratch") { db in
                    try await db.raw("INSERT INTO scratch (n) VALUES (2)").run()
                } committed: { _ in
                }
            }
            try await Task.sleep(for: .milliseconds(100))
            waiting.cancel()
            let started = ContinuousClock.now
            await #expect(throws: CancellationError.self) { try await waiting.value }
            #expect(ContinuousClock.now - started < .seconds(1), "answered without waiting for the running write")
            try await running.value
            let stored = try await database.read { db in
                try await db.raw("SELECT n FROM scratch ORDER BY n").all().map { try $0.decode(column: "n", as: Int.self) }
            }
            #expect(stored == [1])
        }
    }
}
