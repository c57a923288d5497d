import Logging
import SQLKit
import Testing
@testable import HeadcountServer

@Suite("Migrations") struct MigrationTests {
    /// `headcount migrate` twice, then a server start: each migration is applied once.
    @Test(arguments: Engine.available)
    func migrationsApplyOnce(engine: Engine) async throws {
        let environment = try await TestEnvironment.make(engine)
        let logger = Logger(label: "test")
        try await migrate(environment.configuration, logger: logger)
        try await migrate(environment.configuration, logger: logger)
        try await environment.withApp { client in
            _ = try await client.post("/people/register", #"{"name": "Ada"}"#)
        }
        let database = try await openDatabase(environment.configuration.database, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await database.run() }
            defer { group.cancelAll() }
            let versions = try await database.read { db in
                try await db.raw("SELECT version FROM headcount_migrations ORDER BY version").all().map { try $0.decode(column: "version", as: Int.self) }
            }
            #expect(versions == Migrations.all.map(\.version))
        }
    }
}
