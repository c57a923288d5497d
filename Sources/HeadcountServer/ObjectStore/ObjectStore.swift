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

/// The keys every store takes: `/`-separated names, none empty, `.`, `..` or a temporary file's
/// name, no NUL, at most 1,024 bytes (S3's limit). So a key means the same on every store, and no
/// key reaches outside a file store's root.
func validateObjectKey(_ key: String) throws -> [Substring] {
    let parts = key.split(separator: "/", omittingEmptySubsequences: false)
    guard !key.isEmpty, key.utf8.count <= 1024, !key.contains("\0"),
        parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." && !$0.hasPrefix(".tmp-") })
    else { throw InvalidObjectKey(key: key) }
    return parts
}

/// Opens the configured store; an S3 bucket is checked to be reachable first.
public func openObjectStore(_ location: ObjectStoreLocation) async throws -> any ObjectStore {
    switch location {
    case .file(let root): try FileObjectStore(root: root)
    case .s3(let s3): try await S3ObjectStore.open(s3)
    }
}
