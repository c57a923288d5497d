import SQLKit

/// A place in the tree (site > building > floor > zone or room, to any depth up to `maxDepth`).
struct Place: Encodable, Sendable, Equatable {
    static let columns: SQLQueryString = "place_id, name, parent_id, time_zone, capacity, stale_after_minutes, created_us"

    let id: String
    let name: String
    @Nullable var parentID: String?
    let timeZone: String
    @Nullable var capacity: Int64?
    /// A registrant or worker inside longer than this without an exit is closed by policy.
    let staleAfterMinutes: Int64
    let createdAt: String

    enum CodingKeys: String, CodingKey {
        case id, name, capacity
        case parentID = "parent_id"
        case timeZone = "time_zone"
        case staleAfterMinutes = "stale_after_minutes"
        case createdAt = "created_at"
    }

    init(row: any SQLRow) throws {
        id = try row.decode(column: "place_id", as: String.self)
        name = try row.decode(column: "name", as: String.self)
        parentID = try row.decode(column: "parent_id", as: String?.self)
        timeZone = try row.decode(column: "time_zone", as: String.self)
        capacity = try row.decode(column: "capacity", as: Int64?.self)
        staleAfterMinutes = try row.decode(column: "stale_after_minutes", as: Int64.self)
        createdAt = Timestamp(microseconds: try row.decode(column: "created_us", as: Int64.self)).rfc3339
    }
}

/// The SQL of places. Every change to the tree's shape locks the tree's one parent row first, so a
/// cycle cannot be made by two moves racing, on one instance or several.
struct PlacesRepository: Sendable {
    /// Levels from a root to a leaf: enough for site > campus > building > wing > floor > zone >
    /// room several times over, and a bound on every walk up or down the tree.
    static let maxDepth = 32

    let database: any Database
    let feed: ChangeFeed

    struct NewPlace: Sendable {
        let id: String, name: String, parentID: String?, timeZone: String, capacity: Int64?, staleAfterMinutes: Int64
    }

    /// What a `PUT` changes: nil leaves a field alone; `.some(nil)` clears it.
    struct Fields: Sendable {
        var name: String?
        var parentID: String??
        var timeZone: String?
        var capacity: Int64??
        var staleAfterMinutes: Int64?
    }

    /// Creates a place under an existing parent (or as a root). Every refusal is thrown inside the
    /// transaction, so that it rolls back and leaves even the tree's lock row alone.
    func create(_ place: NewPlace) async throws -> Place {
        let now = Timestamp.now().microseconds
        return try await database.transaction(publishingTo: feed) { db, changes -> Place in
            try await Self.lockTree(db)
            if let parent = place.parentID {
                guard let depth = try await Self.depth(of: parent, db: db) else { throw APIError.invalid("parent_id", "parent_id names no place") }
                guard depth < Self.maxDepth else { throw APIError.invalid("parent_id", "places nest at most \(Self.maxDepth) levels deep") }
            }
            let created =
                try await db.raw(
                    """
                    INSERT INTO places (place_id, name, parent_id, time_zone, capacity, stale_after_minutes, created_us)
                    VALUES (\(bind: place.id), \(bind: place.name), \(bind: place.parentID), \(bind: place.timeZone), \(bind: place.capacity),
                            \(bind: place.staleAfterMinutes), \(bind: now))
                    ON CONFLICT (place_id) DO NOTHING RETURNING \(Place.columns)
                    """
                ).first().map(Place.init) ?? { throw APIError.conflict("A place with id \(place.id) already exists.") }()
            changes.publish(.placeCreated, created)
            return created
        }
    }

    func place(_ id: String) async throws -> Place? {
        try await database.read { db in try await db.raw("SELECT \(Place.columns) FROM places WHERE place_id = \(bind: id)").first().map(Place.init) }
    }

    /// Every place, roots first, then by name.
    func places() async throws -> [Place] {
        try await database.read { db in
            try await db.raw("SELECT \(Place.columns) FROM places ORDER BY parent_id IS NOT NULL, name, place_id").all().map(Place.init)
        }
    }

    /// The ids of a place's children, by name.
    func children(of id: String) async throws -> [String] {
        try await database.read { db in
            try await db.raw("SELECT place_id FROM places WHERE parent_id = \(bind: id) ORDER BY name, place_id").all()
                .map { try $0.decode(column: "place_id", as: String.self) }
        }
    }

    /// Applies `fields`. A move under the place itself or one of its descendants, or deeper than
    /// `maxDepth`, is refused (409 and 422).
    func update(_ id: String, _ fields: Fields) async throws -> Place {
        try await database.transaction(publishingTo: feed) { db, changes -> Place in
            try await Self.lockTree(db)
            guard try await db.raw("SELECT 1 AS known FROM places WHERE place_id = \(bind: id)").first() != nil else { throw Self.notFound }
            if case .some(.some(let parent)) = fields.parentID {
                guard let depth = try await Self.depth(of: parent, db: db) else { throw APIError.invalid("parent_id", "parent_id names no place") }
                let (height, inside) = try await Self.subtree(of: id, containing: parent, db: db)
                if inside { throw APIError.conflict("a place cannot move under itself or one of its own places") }
                guard depth + height <= Self.maxDepth else { throw APIError.invalid("parent_id", "places nest at most \(Self.maxDepth) levels deep") }
            }
            var sets: [SQLQueryString] = []
            if let name = fields.name { sets.append("name = \(bind: name)") }
            if let parent = fields.parentID { sets.append("parent_id = \(bind: parent)") }
            if let timeZone = fields.timeZone { sets.append("time_zone = \(bind: timeZone)") }
            if let capacity = fields.capacity { sets.append("capacity = \(bind: capacity)") }
            if let minutes = fields.staleAfterMinutes { sets.append("stale_after_minutes = \(bind: minutes)") }
            if !sets.isEmpty {
                try await db.raw("UPDATE places SET \(sets.joined(separator: ", ")) WHERE place_id = \(bind: id)").run()
            }
            let updated = try Place(row: try await db.raw("SELECT \(Place.columns) FROM places WHERE place_id = \(bind: id)").first()!)
            changes.publish(.placeUpdated, updated)
            return updated
        }
    }

    static let notFound = APIError.notFound("Place not found.")

    /// Deletes a place; with `cascade`, every place under it too, and the links (doorways, rooms)
    /// of them all. Without it, a place that holds places or links is a 409.
    func delete(_ id: String, cascade: Bool) async throws {
        try await database.transaction(publishingTo: feed) { db, changes in
            try await Self.lockTree(db)
            guard try await db.raw("SELECT 1 AS known FROM places WHERE place_id = \(bind: id)").first() != nil else { throw Self.notFound }
            let children = try await db.raw("SELECT COUNT(*) AS n FROM places WHERE parent_id = \(bind: id)").first()!.decode(column: "n", as: Int.self)
            if children > 0, !cascade {
                throw APIError.conflict("the place holds \(children) place(s); delete them first, or pass ?cascade=true to delete them with it")
            }
            let ids = try await db.raw("\(Self.descendants(of: id)) SELECT place_id FROM down ORDER BY depth DESC").all()
                .map { try $0.decode(column: "place_id", as: String.self) }
            let links = try await Self.links(of: ids, db: db)
            if !cascade, !links.doorways.isEmpty || !links.links.isEmpty {
                throw APIError.conflict(
                    "the place has \(links.doorways.count) doorway(s) and \(links.links.count) linked room(s), device(s) or event(s); unlink them first, or pass ?cascade=true")
            }
            for chunk in ids.chunks(of: 500) {
                let chunk = Array(chunk)
                try await db.raw("DELETE FROM place_doorways WHERE from_place IN (\(binds: chunk)) OR to_place IN (\(binds: chunk))").run()
                try await db.raw("DELETE FROM place_links WHERE place_id IN (\(binds: chunk))").run()
            }
            // Leaves first, so that no row is left pointing at a deleted parent.
            for chunk in ids.chunks(of: 500) {
                try await db.raw("DELETE FROM places WHERE place_id IN (\(binds: Array(chunk)))").run()
            }
            changes.publish(.placeDeleted, ["ids": ids])
        }
    }

    static func lockTree(_ db: any SQLDatabase) async throws {
        try await db.raw("UPDATE place_tree SET version = version + 1 WHERE id = 1").run()
    }

    /// How many levels a place is from its root (a root is 1); nil if there is no such place.
    private static func depth(of id: String, db: any SQLDatabase) async throws -> Int? {
        let row = try await db.raw(
            """
            WITH RECURSIVE up (place_id, parent_id, depth) AS (
                SELECT place_id, parent_id, CAST(1 AS BIGINT) FROM places WHERE place_id = \(bind: id)
                UNION ALL
                SELECT p.place_id, p.parent_id, up.depth + 1 FROM places p JOIN up ON p.place_id = up.parent_id
                WHERE up.depth < \(literal: maxDepth + 1)
            )
            SELECT CAST(MAX(depth) AS BIGINT) AS depth FROM up
            """
        ).first()
        return try row?.decode(column: "depth", as: Int?.self)
    }

    /// A place and everything under it, each with its depth below it (the place itself is 1).
    static func descendants(of id: String) -> SQLQueryString {
        """
        WITH RECURSIVE down (place_id, depth) AS (
            SELECT place_id, CAST(1 AS BIGINT) FROM places WHERE place_id = \(bind: id)
            UNION ALL
            SELECT p.place_id, down.depth + 1 FROM places p JOIN down ON p.parent_id = down.place_id
            WHERE down.depth < \(literal: maxDepth + 1)
        )
        """
    }

    /// The levels of a place's subtree (itself included), and whether `other` is in it.
    private static func subtree(of id: String, containing other: String, db: any SQLDatabase) async throws -> (height: Int, contains: Bool) {
        let row = try await db.raw(
            """
            \(descendants(of: id))
            SELECT CAST(MAX(depth) AS BIGINT) AS height, CAST(SUM(CASE WHEN place_id = \(bind: other) THEN 1 ELSE 0 END) AS BIGINT) AS hits FROM down
            """
        ).first()!
        return (try row.decode(column: "height", as: Int.self), try row.decode(column: "hits", as: Int.self) > 0)
    }
}
