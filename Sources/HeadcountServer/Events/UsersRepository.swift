import SQLKit

/// The SQL of seed 003's users, who register for events.
struct UsersRepository: Sendable {
    let database: any Database

    struct User: Encodable, Sendable {
        let userId: String
        let name: String
    }

    /// Creates a user; nil if the id is taken.
    func create(id: String, name: String) async throws -> User? {
        try await database.transaction { db in
            try await db.raw(
                """
                INSERT INTO users (user_id, name, created_us) VALUES (\(bind: id), \(bind: name), \(bind: Timestamp.now().microseconds))
                ON CONFLICT (user_id) DO NOTHING RETURNING user_id
                """
            ).first().map { _ in User(userId: id, name: name) }
        }
    }

    func user(_ id: String) async throws -> User? {
        try await database.read { db in
            try await db.raw("SELECT user_id, name FROM users WHERE user_id = \(bind: id)").first().map {
                User(userId: try $0.decode(column: "user_id", as: String.self), name: try $0.decode(column: "name", as: String.self))
            }
        }
    }
}
