import NIOCore

/// Where files live that are not rows: room CSV logs, worker images.
public protocol ObjectStore: Sendable {
    func put(_ key: String, _ data: ByteBuffer, contentType: String) async throws
    /// The object, or nil when there is none under `key`.
    func get(_ key: String) async throws -> ByteBuffer?
    /// Keys that start with `prefix`, sorted.
    func list(prefix: String) async throws -> [String]
    func delete(_ key: String) async throws
}

public struct InvalidObjectKey: Error, CustomStringConvertible {
    public let key: String
    public var description: String { "invalid object key '\(key)'" }
}

public func openObjectStore(_ location: ObjectStoreLocation) throws -> any ObjectStore {
    switch location {
    case .file(let root): try FileObjectStore(root: root)
    }
}
