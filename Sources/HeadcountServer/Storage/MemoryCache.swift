import NIOCore
import Synchronization

/// Values built from the database, kept in this instance's memory. A value carries the version of
/// the rows it was built from, and its reader compares that with the version it reads in its own
/// query before using it: so a value is right on every instance however the others write.
/// Bounded by `budget` (in the weight each value is stored with); the least recently used go first.
final class MemoryCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Entry {
        var value: Value
        var weight: Int
        var used: UInt64
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        var weight = 0
        var clock: UInt64 = 0
    }

    private let state = Mutex(State())
    let budget: Int

    init(budget: Int) { self.budget = budget }

    subscript(key: Key) -> Value? {
        state.withLock { state in
            guard state.entries[key] != nil else { return nil }
            state.clock += 1
            state.entries[key]!.used = state.clock
            return state.entries[key]!.value
        }
    }

    /// Removes and returns what `key` holds: a value its taker changes in place is then its own,
    /// not copied because the cache still shares it.
    func take(_ key: Key) -> Value? {
        state.withLock { state in
            guard let entry = state.entries.removeValue(forKey: key) else { return nil }
            state.weight -= entry.weight
            return entry.value
        }
    }

    /// Keeps `value` (replacing what `key` held); a value heavier than the whole budget is not kept.
    /// Past the budget, the least recently used go until a quarter of it is free: a sort now and
    /// then rather than a scan per value stored.
    func store(_ value: Value, for key: Key, weight: Int) {
        state.withLock { state in
            state.weight -= state.entries.removeValue(forKey: key)?.weight ?? 0
            guard weight <= budget else { return }
            state.clock += 1
            state.entries[key] = Entry(value: value, weight: weight, used: state.clock)
            state.weight += weight
            guard state.weight > budget else { return }
            for (oldest, entry) in state.entries.sorted(by: { $0.value.used < $1.value.used }) where state.weight > budget - budget / 4 {
                state.weight -= entry.weight
                state.entries[oldest] = nil
            }
        }
    }
}

/// An answer as encoded, with the version of what it was built from.
struct HeldAnswer: Sendable {
    let version: [Int64]
    let bytes: ByteBuffer
}

/// Who was inside a room after its action `seq`, in order of arrival, with the action that let each in.
struct HeldRoom: Sendable {
    var seq: Int
    var occupants: OccupantList
    var since: [String: Int]
}

/// What this instance keeps in memory for a database.
public final class Caches: Sendable {
    /// Hour and day rollups that can no longer change but by a revision of the sensor's past, per
    /// sensor and level: up to a million rows (~80 MB; a year of hours is 8,760 rows).
    let rollups = MemoryCache<RollupKey, RollupHistory>(budget: 1_000_000)
    /// Encoded answers that can no longer change but by what their version counts (a sensor's
    /// report over a settled period, the event list), by what was asked: up to 64 MB.
    let answers = MemoryCache<[String], HeldAnswer>(budget: 64 << 20)
    /// Who is inside each room, as of its sequence number: up to a million people.
    let rooms = MemoryCache<String, HeldRoom>(budget: 1_000_000)

    public init() {}
}
