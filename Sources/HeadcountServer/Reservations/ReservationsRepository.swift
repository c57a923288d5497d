import SQLKit

struct Reservation: Sendable {
    let id: Int
    let deviceID: String
    let start: Timestamp
    let end: Timestamp
    let credential: String
    /// Who holds it, where the client said: presence names them in the device's place.
    let holder: String?
    let status: String
    let created: Timestamp
}

/// The SQL of device reservations. Every reservation is kept; `status` says whether a later
/// `set-reservation` replaced it.
struct ReservationsRepository: Sendable {
    let database: any Database
    let feed: ChangeFeed

    struct Overlap: Error {
        let existing: Reservation
    }

    /// The seed's create-or-replace: the device's active reservations become `replaced`.
    func set(deviceID: String, start: Timestamp, end: Timestamp, credential: String, holder: String?) async throws {
        let postgres = database.engine == .postgres
        try await database.transaction(publishingTo: feed) { db, changes in
            // On PostgreSQL the insert takes the lock itself: a round trip fewer.
            if !postgres { try await db.raw(Self.lockDevice(deviceID)).run() }
            let reservation = try await Self.insert(
                deviceID: deviceID, start: start, end: end, credential: credential, holder: holder, locking: postgres, db: db)
            // Written with the outbox's statements (one round trip on PostgreSQL): nothing reads it before.
            changes.write([
                "UPDATE reservations SET status = 'replaced' WHERE device_id = \(bind: deviceID) AND status = 'active' AND id <> \(bind: reservation.id)"
            ])
            Self.changed(reservation, changes)
        }
    }

    /// Adds a reservation beside the device's others, unless it overlaps an active one
    /// (half-open intervals: one may end exactly when the next starts).
    func add(deviceID: String, start: Timestamp, end: Timestamp, credential: String, holder: String?) async throws -> Reservation {
        try await database.transaction(publishingTo: feed) { db, changes in
            try await db.raw(Self.lockDevice(deviceID)).run()
            if let existing = try await db.raw(
                """
                SELECT \(unsafeRaw: Self.columns) FROM reservations
                WHERE device_id = \(bind: deviceID) AND status = 'active' AND start_us < \(bind: end.microseconds) AND end_us > \(bind: start.microseconds)
                ORDER BY start_us LIMIT 1
                """
            ).first() {
                throw Overlap(existing: try Self.reservation(existing))
            }
            let reservation = try await Self.insert(deviceID: deviceID, start: start, end: end, credential: credential, holder: holder, db: db)
            Self.changed(reservation, changes)
            return reservation
        }
    }

    /// A reservation was made; the credential stays out of the feed and the webhooks.
    private static func changed(_ reservation: Reservation, _ changes: Changes) {
        var change: [String: JSONValue] = [
            "device_id": .string(reservation.deviceID), "start_time": .string(reservation.start.rfc3339), "end_time": .string(reservation.end.rfc3339),
        ]
        changes.publish(.reservationSet, change)
        change["holder"] = reservation.holder.map(JSONValue.string) ?? .null
        change["id"] = .int(Int64(reservation.id))
        changes.send(OutboundEvent(.reservationSet, change, deviceID: reservation.deviceID))
    }

    /// The device's reservation: its most recently made active one.
    func current(deviceID: String) async throws -> Reservation? {
        try await database.read { db in
            try await db.raw(
                """
                SELECT \(unsafeRaw: Self.columns) FROM reservations WHERE device_id = \(bind: deviceID) AND status = 'active'
                ORDER BY id DESC LIMIT 1
                """
            ).first().map(Self.reservation)
        }
    }

    /// Every reservation the device ever had, by start time.
    func history(deviceID: String) async throws -> [Reservation] {
        try await database.read { db in
            try await db.raw(
                """
                SELECT \(unsafeRaw: Self.columns) FROM reservations WHERE device_id = \(bind: deviceID) ORDER BY start_us, id
                """
            ).all().map(Self.reservation)
        }
    }

    static let columns = "id, device_id, start_us, end_us, credential, holder, status, created_us"

    /// The statement that locks the device's parent row (creating it if new), so that concurrent
    /// changes to one device's reservations take turns, on any number of instances.
    private static func lockDevice(_ deviceID: String) -> SQLQueryString {
        """
        INSERT INTO reservation_devices (device_id, version) VALUES (\(bind: deviceID), 1)
        ON CONFLICT (device_id) DO UPDATE SET version = reservation_devices.version + 1
        """
    }

    /// Inserts an active reservation. With `locking` (PostgreSQL: SQLite has no writing CTEs), the
    /// same statement locks the device first: the insert reads the CTE that takes the lock.
    private static func insert(
        deviceID: String, start: Timestamp, end: Timestamp, credential: String, holder: String?, locking: Bool = false, db: any SQLDatabase
    ) async throws -> Reservation {
        let values: SQLQueryString = """
            SELECT \(bind: deviceID), \(bind: start.microseconds), \(bind: end.microseconds), \(bind: credential), \(bind: holder), 'active',
                \(bind: Timestamp.now().microseconds)
            """
        let insert: SQLQueryString = """
            INSERT INTO reservations (device_id, start_us, end_us, credential, holder, status, created_us)
            \(values)\(unsafeRaw: locking ? " FROM locked" : "") RETURNING \(unsafeRaw: columns)
            """
        let row = try await db.raw(locking ? "WITH locked AS (\(lockDevice(deviceID)) RETURNING 1) \(insert)" : insert).first()!
        return try reservation(row)
    }

    static func reservation(_ row: any SQLRow) throws -> Reservation {
        Reservation(
            id: try row.decode(column: "id", as: Int.self),
            deviceID: try row.decode(column: "device_id", as: String.self),
            start: Timestamp(microseconds: try row.decode(column: "start_us", as: Int64.self)),
            end: Timestamp(microseconds: try row.decode(column: "end_us", as: Int64.self)),
            credential: try row.decode(column: "credential", as: String.self),
            holder: try row.decode(column: "holder", as: String?.self),
            status: try row.decode(column: "status", as: String.self),
            created: Timestamp(microseconds: try row.decode(column: "created_us", as: Int64.self))
        )
    }
}
