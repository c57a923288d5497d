import Foundation
import Logging
import PostgresNIO

/// Where a PostgreSQL server is and whom to connect as, from a `postgres://` URL, and what one
/// connection of its own says about it: refused credentials, or no server there at all.
struct PostgresServer: Sendable {
    static let connectTimeout: Duration = .seconds(3)

    let host: String, port: Int, username: String, password: String?, database: String?
    var location: String { "\(host):\(port)" }

    init(url: String) throws {
        guard let components = URLComponents(string: url), let host = components.host else {
            throw ConfigurationError("--database '\(redacted(url))' is not a PostgreSQL URL; use postgres://user:pass@host:5432/db")
        }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.user?.removingPercentEncoding ?? "postgres"
        self.password = components.password?.removingPercentEncoding
        self.database = database.isEmpty ? nil : database
    }

    /// Connects once, outside the pool: throws a `ConfigurationError` when the server refuses the
    /// credentials, and returns why the server could not be reached when it could not.
    func checkCredentials(startupParameters: [(String, String)], logger: Logger) async throws -> String? {
        var configuration = PostgresConnection.Configuration(
            host: host, port: port, username: username, password: password, database: database, tls: .disable
        )
        configuration.options.connectTimeout = .init(Self.connectTimeout)
        // As the pool's connections will: a server (or a pooler) that refuses them says so now.
        configuration.options.additionalStartupParameters = startupParameters
        do {
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
            try? await connection.close()
            return nil
        } catch {
            if let refusal = Self.refusal(error) {
                throw ConfigurationError("--database: PostgreSQL at \(location) refused: \(refusal); check the URL's user, password and database name")
            }
            return Self.describe(error)
        }
    }

    /// Why the server turned a connection away, when it is the URL's fault: wrong password or
    /// user, missing database, or a server that asks for a password the URL does not give.
    static func refusal(_ error: any Error) -> String? {
        guard let error = error as? PSQLError else { return nil }
        if error.code == .authMechanismRequiresPassword { return "it asks for a password and the URL has none" }
        guard error.code == .server, let sqlState = error.serverInfo?[.sqlState] else { return nil }
        // 28000 invalid authorization, 28P01 invalid password, 3D000 no such database, 42501 no permission to connect.
        guard ["28000", "28P01", "3D000", "42501"].contains(sqlState) else { return nil }
        return error.serverInfo?[.message] ?? sqlState
    }

    /// An error in a line for the log: the server's message, or the connection's failure.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        return error.serverInfo?[.message] ?? error.underlying.map { "\($0)" } ?? "\(error.code)"
    }
}
