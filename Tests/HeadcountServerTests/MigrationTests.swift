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
        try await environment.withDatabase { database in
            let versions = try await database.read { db in
                try await db.raw("SELECT version FROM headcount_migrations ORDER BY version").all().map { try $0.decode(column: "version", as: Int.self) }
            }
            #expect(versions == Migrations.all.map(\.version))
        }
    }
}
