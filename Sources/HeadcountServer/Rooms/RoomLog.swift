import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Keeps each day's CSV action log in the object store in step with the database, which is the
/// source of truth: a day that saw actions is rewritten whole from its rows at most once a second,
/// and once more at shutdown.
///
/// Which days are waiting is kept in the database: each action marks its day pending in its own
/// transaction (`room_log_pending`, with the action's sequence number), and a day stops being
/// pending only once an object holding its latest row is stored; if an action committed meanwhile
/// (here or on another instance), the day is written again. An instance claims a day before
/// writing it, so that no two write one object at once (an older version could land over a
/// newer); a claim lapses after 15 s, and an instance restarted after a crash takes its own back
/// at once. At start, and every 15 s for days another instance left behind when it died, every
/// pending day is written, so after a crash the objects catch up.
final class RoomLog: Service {
    struct Day: Hashable, Sendable {
        let room: String
        let day: String
    }

    private let repository: RoomsRepository
    private let store: any ObjectStore
    private let logger: Logger
    private let pending = Mutex<Set<Day>>([])
    /// This instance, as the holder of the days it writes (the same after a restart).
    private let instance: InstanceID
    /// How long a claim on a day holds, in microseconds: longer than one object write takes, its
    /// retries included. Pending days are looked for as often.
    static let lease: Int64 = 15_000_000

    init(repository: RoomsRepository, store: any ObjectStore, instance: InstanceID, logger: Logger) {
        self.repository = repository
        self.store = store
        self.instance = instance
        self.logger = logger
    }

    /// The object a room's day is written to: the original's `YYYY-MM-DD-logs.csv` for the default
    /// room, and the same name under `rooms/<room>/` for named rooms.
    static func key(room: String, day: String) -> String {
        room == RoomsController.defaultRoom ? "\(day)-logs.csv" : "rooms/\(room)/\(day)-logs.csv"
    }

    static let header = CSV.row(["Date", "Time", "Name", "Action"])

    static func csv(_ actions: [LoggedAction]) -> String {
        actions.reduce(into: header) { text, a in
            text += CSV.row([a.at.day, a.at.timeOfDay, a.name, a.action.rawValue])
        }
    }

    func changed(room: String, day: String) {
        _ = pending.withLock { $0.insert(Day(room: room, day: day)) }
    }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var reconciled = ContinuousClock.now - .microseconds(Self.lease)
            while true {
                try await Task.sleep(for: .seconds(1))
                if ContinuousClock.now - reconciled >= .microseconds(Self.lease), await self.reconcile() { reconciled = .now }
                await self.flush()
            }
        }
        // Final flush; a few rounds, in case another instance committed during the last one.
        for _ in 0..<3 where !pending.withLock(\.isEmpty) {
            await flush()
        }
    }

    /// Queues every day the database says is pending; false if it could not be read.
    func reconcile() async -> Bool {
        do {
            for (room, day) in try await repository.pendingDays(owner: instance.name) { changed(room: room, day: day) }
            return true
        } catch {
            log(error, "could not read the pending room logs")
            return false
        }
    }

    /// A database that is away is said by the database engine, and shutting down is no fault;
    /// anything else is an error here.
    private func log(_ error: any Error, _ message: Logger.Message, metadata: Logger.Metadata = [:]) {
        let expected = error is DatabaseUnavailable || error is CancellationError
        logger.log(level: expected ? .debug : .error, message, metadata: metadata.merging(["error": "\(error)"]) { $1 })
    }

    /// Writes every day that changed since the last flush.
    func flush() async {
        let days = pending.withLock { days in
            defer { days.removeAll() }
            return days
        }
        for day in days {
            do {
                // Nothing pending, or another instance is writing it (and will see every row up to its claim).
                let until = Timestamp.now().microseconds + Self.lease
                guard let generation = try await repository.claim(room: day.room, day: day.day, owner: instance.name, until: until) else { continue }
                let actions = try await repository.actions(room: day.room, day: day.day)
                try await store.put(Self.key(room: day.room, day: day.day), ByteBuffer(string: Self.csv(actions)), contentType: "text/csv")
                // A later action, or a claim that lapsed meanwhile: write the day again.
                if try await !repository.logWritten(
                    room: day.room, day: day.day, owner: instance.name, generation: generation, seq: actions.last?.seq ?? 0
                ) {
                    changed(room: day.room, day: day.day)
                }
            } catch {
                log(error, "could not write room log", metadata: ["room": "\(day.room)", "day": "\(day.day)"])
                changed(room: day.room, day: day.day)
            }
        }
    }
}
