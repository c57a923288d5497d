import Foundation
import Logging
import PostgresNIO

/// Carries changes between instances with PostgreSQL `NOTIFY`: every instance (the publishing one
/// too) `LISTEN`s and delivers what it hears to its own subscribers, so all instances see every
/// change, in the order PostgreSQL delivers them. Notifications waiting to be sent go out
/// together in one statement, in the order they were published.
final class PostgresRelay: ChangeRelay {
    static let channel = "headcount_changes"
    /// PostgreSQL refuses payloads of 8000 bytes or more.
    static let maxPayload = 7900

    private let client: PostgresClient
    private let logger: Logger
    private let outbox: Batcher<String>

    init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
        outbox = Batcher { payloads in
            do {
                try await client.query(
                    """
                    SELECT pg_notify(\(Self.channel), payload) FROM unnest(\(payloads)::text[]) WITH ORDINALITY AS t (payload, n) ORDER BY n
                    """, logger: logger)
            } catch {
                logger.warning("could not relay \(payloads.count) changes: \(error)")
            }
        }
    }

    func send(_ message: ChangeFeed.Message) {
        guard let payload = try? String(decoding: JSONWriter.encode(message), as: UTF8.self), payload.utf8.count <= Self.maxPayload else {
            logger.warning("change \(message.type) too large to relay; not sent")
            return
        }
        outbox.send(payload)
    }

    func run(into feed: ChangeFeed) async throws {
        try await client.withConnection { connection in
            try await connection.listen(on: Self.channel) { notifications in
                for try await notification in notifications {
                    if let message = try? JSONDecoder().decode(ChangeFeed.Message.self, from: Data(notification.payload.utf8)) {
                        feed.deliver([message])
                    }
                }
            }
        }
    }
}
