import Foundation
import NIOCore
import SQLKit

struct Worker: Sendable {
    let id: String
    let documentID: String
    let firstName: String
    let lastName: String
    let email: String
    let createdMs: Int64
    let imageCount: Int
}

struct WorkerImage: Sendable {
    let bytes: ByteBuffer
    let contentType: String
}

/// Workers and their face images. Rows say which images exist; the bytes live in the object store
/// under random keys. Images are written before their rows and deleted after them, so a row never
/// names a missing object (a crash in between can only leave an unnamed object behind).
struct WorkersRepository: Sendable {
    let database: any Database
    let store: any ObjectStore

    enum CreateError: Error { case idTaken, documentTaken }

    func create(id: String, documentID: String, firstName: String, lastName: String, email: String, images: [WorkerUpload.Image]) async throws -> Worker {
        let keys = images.map { "workers/\(UUID().uuidString.lowercased()).\($0.fileExtension)" }
        for (key, image) in zip(keys, images) {
            try await store.put(key, image.bytes, contentType: image.contentType)
        }
        do {
            return try await database.transaction { db in
                let now = Timestamp.now().microseconds
                guard
                    try await db.raw(
                        """
                        INSERT INTO workers (worker_id, document_id, first_name, last_name, email, created_us, updated_us)
                        VALUES (\(bind: id), \(bind: documentID), \(bind: firstName), \(bind: lastName), \(bind: email), \(bind: now), \(bind: now))
                        ON CONFLICT DO NOTHING RETURNING worker_id
                        """
                    ).first() != nil
                else {
                    let taken = try await db.raw("SELECT 1 AS taken FROM workers WHERE worker_id = \(bind: id)").first()
                    throw taken == nil ? CreateError.documentTaken : CreateError.idTaken
                }
                var rows: [SQLQueryString] = []
                for (position, (key, image)) in zip(keys, images).enumerated() {
                    rows.append("(\(bind: id), \(bind: position + 1), \(bind: key), \(bind: image.contentType), \(bind: image.bytes.readableBytes))")
                }
                try await db.raw(
                    """
                    INSERT INTO worker_images (worker_id, position, object_key, content_type, byte_count)
                    VALUES \(rows.joined(separator: ", "))
                    """
                ).run()
                return Worker(
                    id: id, documentID: documentID, firstName: firstName, lastName: lastName, email: email,
                    createdMs: now / 1000, imageCount: images.count)
            }
        } catch {
            for key in keys { try? await store.delete(key) }
            throw error
        }
    }

    func workers() async throws -> [Worker] {
        try await database.read { db in
            try await db.raw("SELECT \(unsafeRaw: Self.columns), \(unsafeRaw: Self.imageCount) FROM workers ORDER BY created_us, worker_id")
                .all().map(Self.worker)
        }
    }

    func worker(_ id: String) async throws -> Worker? {
        try await database.read { db in
            try await db.raw("SELECT \(unsafeRaw: Self.columns), \(unsafeRaw: Self.imageCount) FROM workers WHERE worker_id = \(bind: id)")
                .first().map(Self.worker)
        }
    }

    /// Changes the names and email that are given; nil when there is no such worker.
    func update(_ id: String, firstName: String?, lastName: String?, email: String?) async throws -> Worker? {
        try await database.transaction { db in
            try await db.raw(
                """
                UPDATE workers SET first_name = COALESCE(CAST(\(bind: firstName) AS TEXT), first_name), last_name = COALESCE(CAST(\(bind: lastName) AS TEXT), last_name),
                    email = COALESCE(CAST(\(bind: email) AS TEXT), email), updated_us = \(bind: Timestamp.now().microseconds)
                WHERE worker_id = \(bind: id)
                RETURNING \(unsafeRaw: Self.columns), \(unsafeRaw: Self.imageCount)
                """
            ).first().map(Self.worker)
        }
    }

    /// Deletes the worker with their timestamps and images; false when there is no such worker.
    func delete(_ id: String) async throws -> Bool {
        let keys: [String]? = try await database.transaction { db in
            // Lock the worker first, so a timestamp being added for them finishes before or finds no worker.
            guard try await Self.lock(id, db: db) else { return nil }
            try await db.raw("DELETE FROM worker_timestamps WHERE worker_id = \(bind: id)").run()
            let keys = try await db.raw("DELETE FROM worker_images WHERE worker_id = \(bind: id) RETURNING object_key")
                .all().map { try $0.decode(column: "object_key", as: String.self) }
            try await db.raw("DELETE FROM workers WHERE worker_id = \(bind: id)").run()
            return keys
        }
        guard let keys else { return false }
        for key in keys { try? await store.delete(key) }
        return true
    }

    /// The worker's image at a 1-based position, or nil.
    func image(_ id: String, position: Int) async throws -> WorkerImage? {
        let row = try await database.read { db in
            try await db.raw("SELECT object_key, content_type FROM worker_images WHERE worker_id = \(bind: id) AND position = \(bind: position)").first()
        }
        guard let row, let bytes = try await store.get(try row.decode(column: "object_key", as: String.self)) else { return nil }
        return WorkerImage(bytes: bytes, contentType: try row.decode(column: "content_type", as: String.self))
    }

    /// Takes the worker's row lock; false when there is no such worker.
    static func lock(_ id: String, db: any SQLDatabase) async throws -> Bool {
        try await db.raw("UPDATE workers SET updated_us = updated_us WHERE worker_id = \(bind: id) RETURNING worker_id").first() != nil
    }

    private static let columns = "worker_id, document_id, first_name, last_name, email, created_us"
    private static let imageCount = "(SELECT COUNT(*) FROM worker_images WHERE worker_images.worker_id = workers.worker_id) AS images"

    private static func worker(_ row: any SQLRow) throws -> Worker {
        Worker(
            id: try row.decode(column: "worker_id", as: String.self),
            documentID: try row.decode(column: "document_id", as: String.self),
            firstName: try row.decode(column: "first_name", as: String.self),
            lastName: try row.decode(column: "last_name", as: String.self),
            email: try row.decode(column: "email", as: String.self),
            createdMs: try row.decode(column: "created_us", as: Int64.self) / 1000,
            imageCount: Int(try row.decode(column: "images", as: Int64.self))
        )
    }
}
