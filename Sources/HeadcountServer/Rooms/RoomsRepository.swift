import SQLKit

enum RoomAction: String, Sendable {
    case register, unregister
}

struct LoggedAction: Sendable {
    let seq: Int
    let name: String
    let action: RoomAction
    let at: Timestamp
}

/// The SQL of rooms: an append-only action log, the current occupants, and a parent row per room.
struct RoomsRepository: Sendable {
    /// An action's outcome: the occupants after it, as `OccupantList.json`, and its log entry.
    typealias Recorded = (occupantsJSON: [UInt8], logged: LoggedAction)

    let database: any Database
    let feed: ChangeFeed
    private let acting: RowBatcher<(RoomAction, String), Recorded>

    init(database: any Database, feed: ChangeFeed) {
        self.database = database
        self.feed = feed
        acting = RowBatcher { room, actions in try await Self.record(actions, room: room, database: database, feed: feed) }
    }

    /// Logs an action and applies it to the occupants; returns the occupants after it. Actions in
    /// one room that arrive together are recorded together, in arrival order.
    func record(_ action: RoomAction, name: String, room: String) async throws -> Recorded {
        try await acting.ask((action, name), key: room)
    }

    /// Records `actions` (in arrival order, at most 64: the batcher's default) in one transaction:
    /// the room's lock and sequence numbers, who is inside (`held`), then the log, the day's
    /// pending mark, who left and who came, together (one round trip on PostgreSQL). Each action
    /// is answered with the occupants after it, worked out in Swift.
    private static func record(
        _ actions: [(RoomAction, String)], room: String, database: any Database, feed: ChangeFeed
    ) async throws -> [Result<Recorded, any Error>] {
        let (answers, after) = try await database.transaction(publishingTo: feed) { db, changes in
            // Lock the room and take the next sequence numbers; time never runs backwards within a room.
            let parent = try await db.raw(
                """
                INSERT INTO rooms (room, seq, last_at_us) VALUES (\(bind: room), \(bind: actions.count), \(bind: Timestamp.now().microseconds))
                ON CONFLICT (room) DO UPDATE SET seq = rooms.seq + \(bind: actions.count),
                    last_at_us = CASE WHEN excluded.last_at_us > rooms.last_at_us THEN excluded.last_at_us ELSE rooms.last_at_us END
                RETURNING seq, last_at_us
                """
            ).first()!
            let last = try parent.decode(column: "seq", as: Int.self)
            let at = Timestamp(microseconds: try parent.decode(column: "last_at_us", as: Int64.self))
            // Changed in place: who left (of those inside before) and who came (or came back).
            var held = try await Self.held(room: room, seq: last - actions.count, database: database, db: db)
            var (gone, came) = (Set<String>(), [String: Int]())
            var logged: [SQLQueryString] = []
            let answers = actions.enumerated().map { index, action -> Result<Recorded, any Error> in
                let (kind, name) = action
                let seq = last - actions.count + 1 + index
                logged.append("(\(bind: room), \(bind: seq), \(bind: name), \(bind: kind.rawValue), \(bind: at.microseconds), \(bind: at.day))")
                if held.apply(kind, name: name, seq: seq) {
                    switch kind {
                    case .register:
                        gone.remove(name)
                        came[name] = seq
                    case .unregister:
                        if came.removeValue(forKey: name) == nil { gone.insert(name) }
                    }
                }
                let change: [String: JSONValue] = [
                    "room": .string(room), "name": .string(name), "inside": .int(Int64(held.occupants.count)), "at": .string(at.rfc3339),
                ]
                changes.publish(kind == .register ? .roomRegister : .roomUnregister, change)
                changes.send(OutboundEvent(kind == .register ? .roomPersonRegistered : .roomPersonUnregistered, change, room: room))
                // Only the JSON is shared with the answer: the next arrival copies its bytes, no more.
                return .success((held.occupants.json, LoggedAction(seq: seq, name: name, action: kind, at: at)))
            }
            var statements: [SQLQueryString] = [
                "INSERT INTO room_actions (room, seq, name, action, at_us, day) VALUES \(logged.joined(separator: ", "))",
                Self.markPending(room: room, day: at.day, seq: last),
            ]
            // Who left, then who came (or came back: their row is overwritten, not deleted and inserted).
            if !gone.isEmpty { statements.append("DELETE FROM room_occupants WHERE room = \(bind: room) AND name IN (\(binds: Array(gone)))") }
            if !came.isEmpty {
                let rows = came.map { "(\(bind: room), \(bind: $0.key), \(bind: at.microseconds), \(bind: $0.value))" as SQLQueryString }
                statements.append(
                    """
                    INSERT INTO room_occupants (room, name, since_us, seq) VALUES \(rows.joined(separator: ", "))
                    ON CONFLICT (room, name) DO UPDATE SET since_us = excluded.since_us, seq = excluded.seq
                    """)
            }
            changes.write(statements)
            return (answers, HeldRoom(seq: last, occupants: held.occupants, since: held.since))
        }
        // Committed: the next batch here starts from it, unless another instance writes first.
        database.caches.rooms.store(after, for: room, weight: after.occupants.count + 1)
        return answers
    }

    /// Who was inside `room` after its action `seq`, read in the caller's transaction (which holds
    /// the room's lock). What is held in memory is taken out, to be changed in place and stored
    /// again after the commit; when other instances acted since, their few actions (up to two of
    /// their batches) are read from the log and replayed onto it, rather than the whole room read
    /// again (two instances registering into one growing room re-read it for nearly every batch).
    /// More are not replayed: each departure costs a pass over the room, under its lock.
    private static func held(room: String, seq: Int, database: any Database, db: any SQLDatabase) async throws -> HeldRoom {
        if var held = database.caches.rooms.take(room), held.seq <= seq, seq - held.seq <= 128 {
            if held.seq < seq {
                for row in try await db.raw(
                    "SELECT seq, name, action FROM room_actions WHERE room = \(bind: room) AND seq > \(bind: held.seq) AND seq <= \(bind: seq) ORDER BY seq"
                ).all() {
                    let action = try RoomAction(rawValue: row.decode(column: "action", as: String.self)) ?? .register
                    _ = held.apply(action, name: try row.decode(column: "name", as: String.self), seq: try row.decode(column: "seq", as: Int.self))
                }
                held.seq = seq
            }
            return held
        }
        var occupants = OccupantList()
        var since: [String: Int] = [:]
        for row in try await db.raw("SELECT name, seq FROM room_occupants WHERE room = \(bind: room) ORDER BY seq").all() {
            let name = try row.decode(column: "name", as: String.self)
            since[name] = try row.decode(column: "seq", as: Int.self)
            occupants.append(name)
        }
        return HeldRoom(seq: seq, occupants: occupants, since: since)
    }

    /// Who is inside now, in order of arrival.
    func occupants(room: String) async throws -> [String] {
        try await database.read { db in try await Self.occupants(room: room, db: db) }
    }

    /// Every room that has seen an action, with who is inside now, in order of arrival.
    func rooms() async throws -> [(room: String, occupants: [String])] {
        try await database.read { db in
            let rows = try await db.raw(
                """
                SELECT r.room, o.name FROM rooms r LEFT JOIN room_occupants o ON o.room = r.room ORDER BY r.room, o.seq
                """
            ).all()
            var rooms: [(room: String, occupants: [String])] = []
            for row in rows {
                let room = try row.decode(column: "room", as: String.self)
                if rooms.last?.room != room { rooms.append((room, [])) }
                if let name = try row.decode(column: "name", as: String?.self) { rooms[rooms.count - 1].occupants.append(name) }
            }
            return rooms
        }
    }

    private static func occupants(room: String, db: any SQLDatabase) async throws -> [String] {
        try await db.raw("SELECT name FROM room_occupants WHERE room = \(bind: room) ORDER BY seq")
            .all().map { try $0.decode(column: "name", as: String.self) }
    }

    /// Who was inside at `instant` (actions at exactly that instant count), in order of arrival.
    func occupants(room: String, at instant: Timestamp) async throws -> [String] {
        let actions = try await database.read { db in
            try await db.raw(
                """
                SELECT name, action FROM room_actions WHERE room = \(bind: room) AND at_us <= \(bind: instant.microseconds)
                ORDER BY at_us, seq
                """
            ).all().map { (try $0.decode(column: "name", as: String.self), try $0.decode(column: "action", as: String.self)) }
        }
        var inside: [String] = []
        var present = Set<String>()
        for (name, action) in actions {
            if action == RoomAction.register.rawValue {
                if present.insert(name).inserted { inside.append(name) }
            } else if present.remove(name) != nil {
                inside.removeAll { $0 == name }
            }
        }
        return inside
    }

    /// The UTC days on which the room logged actions, oldest first.
    func days(room: String) async throws -> [String] {
        try await database.read { db in
            try await db.raw("SELECT DISTINCT day FROM room_actions WHERE room = \(bind: room) ORDER BY day")
                .all().map { try $0.decode(column: "day", as: String.self) }
        }
    }

    /// One day's actions, in the order they happened.
    func actions(room: String, day: String) async throws -> [LoggedAction] {
        try await database.read { db in
            try await db.raw(
                """
                SELECT seq, name, action, at_us FROM room_actions WHERE room = \(bind: room) AND day = \(bind: day) ORDER BY seq
                """
            ).all().map { row in
                LoggedAction(
                    seq: try row.decode(column: "seq", as: Int.self),
                    name: try row.decode(column: "name", as: String.self),
                    action: RoomAction(rawValue: try row.decode(column: "action", as: String.self)) ?? .register,
                    at: Timestamp(microseconds: try row.decode(column: "at_us", as: Int64.self))
                )
            }
        }
    }

    /// Notes that the day's object must be rewritten to hold `seq`.
    private static func markPending(room: String, day: String, seq: Int) -> SQLQueryString {
        """
        INSERT INTO room_log_pending (room, day, seq) VALUES (\(bind: room), \(bind: day), \(bind: seq))
        ON CONFLICT (room, day) DO UPDATE SET seq = CASE WHEN excluded.seq > room_log_pending.seq THEN excluded.seq ELSE room_log_pending.seq END
        """
    }

    /// The days whose objects may lag their rows (here or on any instance, before a crash too),
    /// that no other instance is writing now.
    func pendingDays(owner: String) async throws -> [(room: String, day: String)] {
        let now = Timestamp.now().microseconds
        return try await database.read { db in
            try await db.raw(
                """
                SELECT room, day FROM room_log_pending
                WHERE owner IS NULL OR owner = \(bind: owner) OR lease_until_us < \(bind: now) ORDER BY room, day
                """
            ).all().map { (try $0.decode(column: "room", as: String.self), try $0.decode(column: "day", as: String.self)) }
        }
    }

    /// Takes the day for `owner` to write its object, until `until`: the claim's generation, or
    /// nil when nothing is pending or another instance holds it.
    func claim(room: String, day: String, owner: String, until: Int64) async throws -> Int64? {
        let now = Timestamp.now().microseconds
        return try await database.transaction { db in
            try await db.raw(
                """
                UPDATE room_log_pending SET owner = \(bind: owner), lease_until_us = \(bind: until), generation = generation + 1
                WHERE room = \(bind: room) AND day = \(bind: day) AND (owner IS NULL OR owner = \(bind: owner) OR lease_until_us < \(bind: now))
                RETURNING generation
                """
            ).first()?.decode(column: "generation", as: Int64.self)
        }
    }

    /// The holder of claim `generation` stored an object holding the day up to `seq`: true when
    /// the day is done. Otherwise it stays pending: handed back when a later action came, or, when
    /// the claim had lapsed to another writer (whose newer object this one may have overwritten),
    /// marked to be written once more after that writer's.
    func logWritten(room: String, day: String, owner: String, generation: Int64, seq: Int) async throws -> Bool {
        try await database.transaction { db in
            // Each statement decides on its own row as it finds it, so none needs a lock held across them.
            let held: SQLQueryString = "room = \(bind: room) AND day = \(bind: day) AND owner = \(bind: owner) AND generation = \(bind: generation)"
            if try await db.raw("DELETE FROM room_log_pending WHERE \(held) AND seq <= \(bind: seq) RETURNING seq").first() != nil {
                return true
            }
            if try await db.raw("UPDATE room_log_pending SET owner = NULL, lease_until_us = 0 WHERE \(held) RETURNING seq").first() == nil {
                try await db.raw(
                    """
                    INSERT INTO room_log_pending (room, day, seq) VALUES (\(bind: room), \(bind: day), \(bind: seq))
                    ON CONFLICT (room, day) DO UPDATE SET generation = room_log_pending.generation + 1
                    """
                ).run()
            }
            return false
        }
    }
}

extension RoomsRepository {
    /// The rooms' gauges of `/metrics`.
    static func gauges(_ db: any SQLDatabase) async throws -> [Gauge] {
        var inside = Gauge("headcount_room_people_inside", "People inside each room now.")
        for row in try await db.raw(
            """
            SELECT r.room, COUNT(o.name) AS inside FROM rooms r LEFT JOIN room_occupants o ON o.room = r.room GROUP BY r.room
            """
        ).all() {
            inside.add(try row.decode(column: "inside", as: Int64.self), ("room", try row.decode(column: "room", as: String.self)))
        }
        return [inside]
    }
}

extension HeldRoom {
    /// Applies action `seq`: a register lets in someone not inside, an unregister lets out someone
    /// inside; anything else changes nothing. Returns whether it changed who is inside.
    mutating func apply(_ action: RoomAction, name: String, seq: Int) -> Bool {
        switch action {
        case .register where since[name] == nil:
            since[name] = seq
            occupants.append(name)
            return true
        case .unregister where since.removeValue(forKey: name) != nil:
            return occupants.remove(name)
        default:
            return false
        }
    }
}
