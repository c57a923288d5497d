import Synchronization

/// Group commit for webhooks. Sensors post constantly and each post is tiny, so rather than one
/// transaction per request, the posts waiting while a transaction runs are stored together in the
/// next one (a few statements for the lot). Each caller is answered only after that commit, with
/// its own events' outcome; a failed transaction fails every caller in it and stores nothing.
/// After each commit, every sensor it changed has its new occupancy published once, and each of
/// them that is a doorway names the places whose occupancy moved.
final class SensorIngest: Sendable {
    private struct Submission: Sendable {
        let events: [SensorEvent]
        let done: CheckedContinuation<[Bool], any Error>
    }

    /// Events per transaction; a submission is never split, so one batch may go past it.
    private static let maxEvents = 2000
    private let batcher: Batcher<Submission>

    init(database: any Database, feed: ChangeFeed) {
        let partitions = SensorPartitions(database: database)
        batcher = database.writeBatcher(maxWeight: Self.maxEvents, weight: { $0.events.count }) { batch in
            await Self.store(batch, database: database, partitions: partitions, feed: feed)
        }
    }

    /// Stores the events (all or none); returns, per event, whether it was new (false: a duplicate id).
    func submit(_ events: [SensorEvent]) async throws -> [Bool] {
        try await withCheckedThrowingContinuation { done in batcher.send(Submission(events: events, done: done)) }
    }

    /// Stores a batch in one transaction (its changes published after it, and written to the
    /// webhook outbox in it), then answers its callers.
    private static func store(_ batch: [Submission], database: any Database, partitions: SensorPartitions, feed: ChangeFeed) async {
        let events = batch.flatMap(\.events)
        do {
            try await partitions.prepare(for: events)
            let accepted = try await database.transaction(publishingTo: feed) { db, changes in
                let (accepted, changed) = try await SensorsRepository.ingest(events, db: db, changes: changes)
                let sensors = changed.sorted { $0.key < $1.key }
                for (sensor, state) in sensors {
                    let change: [String: JSONValue] = ["sensor": .string(sensor), "inside": .int(state.inside)]
                    changes.publish(.sensorOccupancy, change)
                    changes.send(OutboundEvent(.sensorOccupancyChanged, change, sensor: sensor, count: state.inside))
                }
                try await AlertsRepository.evaluate(sensors: changed, now: Timestamp.now().microseconds, db: db, changes: changes)
                for (sensor, state) in sensors where !state.places.isEmpty {
                    changes.publish(.placeOccupancy, ["sensor": JSONValue.string(sensor), "places": .array(state.places.map(JSONValue.string))])
                }
                return accepted
            }
            var offset = 0
            for submission in batch {
                submission.done.resume(returning: Array(accepted[offset..<(offset + submission.events.count)]))
                offset += submission.events.count
            }
        } catch {
            batch.forEach { $0.done.resume(throwing: error) }
        }
    }
}
