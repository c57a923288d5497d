import Synchronization

/// Group commit for webhooks. Sensors post constantly and each post is tiny, so rather than one
/// transaction per request, the posts waiting while a transaction runs are stored together in the
/// next one (a few statements for the lot). Each caller is answered only after that commit, with
/// its own events' outcome; a failed transaction fails every caller in it and stores nothing.
/// After each commit, every sensor it changed has its new occupancy published once.
final class SensorIngest: Sendable {
    private struct Submission {
        let events: [SensorEvent]
        let done: CheckedContinuation<[Bool], any Error>
    }

    private struct State {
        var pending: [Submission] = []
        var running = false
    }

    /// Events per transaction; a submission is never split, so one batch may go past it.
    private let maxEvents = 2000
    private let database: any Database
    private let feed: ChangeFeed
    private let state = Mutex(State())

    init(database: any Database, feed: ChangeFeed) {
        self.database = database
        self.feed = feed
    }

    /// Stores the events (all or none); returns, per event, whether it was new (false: a duplicate id).
    func submit(_ events: [SensorEvent]) async throws -> [Bool] {
        try await withCheckedThrowingContinuation { done in
            let lead = state.withLock { state in
                state.pending.append(Submission(events: events, done: done))
                defer { state.running = true }
                return !state.running
            }
            if lead { Task(executorPreference: database.writerExecutor) { await self.drain() } }
        }
    }

    /// Commits batches until none is waiting.
    private func drain() async {
        while let batch = nextBatch() {
            let events = batch.flatMap(\.events)
            do {
                let (accepted, inside) = try await database.transaction { db in try await SensorsRepository.ingest(events, db: db) }
                var offset = 0
                for submission in batch {
                    submission.done.resume(returning: Array(accepted[offset..<(offset + submission.events.count)]))
                    offset += submission.events.count
                }
                // Callers first: publishing is not what they wait for.
                for (sensor, inside) in inside.sorted(by: { $0.key < $1.key }) {
                    feed.publish(.sensorOccupancy, ["sensor": JSONValue.string(sensor), "inside": .int(inside)])
                }
            } catch {
                batch.forEach { $0.done.resume(throwing: error) }
            }
        }
    }

    private func nextBatch() -> [Submission]? {
        state.withLock { state in
            guard !state.pending.isEmpty else {
                state.running = false
                return nil
            }
            var (take, count) = (0, 0)
            while take < state.pending.count, count == 0 || count + state.pending[take].events.count <= maxEvents {
                count += state.pending[take].events.count
                take += 1
            }
            defer { state.pending.removeFirst(take) }
            return Array(state.pending.prefix(take))
        }
    }
}
