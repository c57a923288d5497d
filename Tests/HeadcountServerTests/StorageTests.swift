import Logging
import SQLKit
import Testing

@testable import HeadcountServer

@Suite("Storage") struct StorageTests {
    struct Refused: Error {}

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
}
