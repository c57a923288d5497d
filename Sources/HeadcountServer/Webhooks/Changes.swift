import SQLKit

/// What one transaction changes, said once: published to the live feed after the commit, and
/// written to the webhook outbox inside the transaction, so that a rolled-back change is neither
/// streamed nor sent, and a committed one is sent even if the process dies right after.
final class Changes: @unchecked Sendable {
    // Confined to its transaction: filled by its body, read after it.
    private(set) var published: [(ChangeType, any Encodable & Sendable)] = []
    private(set) var outbound: [OutboundEvent] = []
    /// Statements that nothing later in the transaction reads, run at its end together with the
    /// outbox's (one round trip on PostgreSQL, `runTogether`).
    private(set) var writes: [SQLQueryString] = []

    func publish(_ type: ChangeType, _ payload: some Encodable & Sendable) {
        published.append((type, payload))
    }

    func send(_ event: OutboundEvent) {
        outbound.append(event)
    }

    func write(_ statements: [SQLQueryString]) {
        writes += statements
    }
}

extension Database {
    /// A transaction whose `Changes` go to the outbox before it commits and to `feed` after; with
    /// `key`, one that may be shared by writes to the same hot row (`transaction(sharing:)`).
    func transaction<T: Sendable>(
        publishingTo feed: ChangeFeed, sharing key: String? = nil, _ body: @escaping @Sendable (any SQLDatabase, Changes) async throws -> T
    ) async throws -> T {
        let write: @Sendable (any SQLDatabase) async throws -> (T, Changes) = { db in
            let changes = Changes()
            let result = try await body(db, changes)
            try await db.runTogether(changes.writes + Outbox.statements(try await Outbox.wanted(changes.outbound, db: db), db: db))
            return (result, changes)
        }
        // Published as each commits: writes that shared a transaction publish in their order.
        return try await transaction(sharing: key, write) { _, changes in
            for (type, payload) in changes.published { feed.publish(type, payload) }
        }.0
    }
}
