/// Carries published changes to every instance (PostgreSQL `LISTEN/NOTIFY`); each instance then
/// `deliver`s them to its own subscribers. Without a relay a change is delivered where it happened.
protocol ChangeRelay: Sendable {
    func send(_ message: ChangeFeed.Message)
    func run(into feed: ChangeFeed) async throws
}
