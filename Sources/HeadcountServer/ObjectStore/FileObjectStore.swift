import Foundation
import NIOCore
import NIOPosix

/// Objects as files under a root directory. Writes go to a temporary file that is renamed into
/// place, so a reader sees the old object or the new one, never half of one.
public struct FileObjectStore: ObjectStore {
    public let root: URL
    private let pool = NIOThreadPool.singleton

    public init(root: String) throws {
        self.root = URL(fileURLWithPath: root, isDirectory: true).standardizedFileURL
        try prepareWritableDirectory(self.root.path, setting: "--object-store")
    }

    /// The file of a key (see `validateObjectKey`).
    func url(for key: String) throws -> URL {
        try validateObjectKey(key).reduce(root) { $0.appendingPathComponent(String($1)) }
    }

    public func put(_ key: String, _ data: ByteBuffer, contentType: String) async throws {
        let target = try url(for: key)
        try await pool.runIfActive {
            let directory = target.deletingLastPathComponent()
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let temporary = directory.appendingPathComponent(".tmp-\(UUID().uuidString)")
            do {
                try Data(data.readableBytesView).write(to: temporary)
                guard rename(temporary.path, target.path) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            } catch {
                try? FileManager.default.removeItem(at: temporary)
                throw error
            }
        }
    }

    public func get(_ key: String) async throws -> ByteBuffer? {
        let target = try url(for: key)
        return try await pool.runIfActive {
            guard let data = FileManager.default.contents(atPath: target.path) else { return nil }
            return ByteBuffer(bytes: data)
        }
    }

    public func list(prefix: String) async throws -> [String] {
        let root = self.root
        return try await pool.runIfActive {
            guard let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
            var keys: [String] = []
            let rootPath = root.path + "/"
            for case let file as URL in enumerator {
                guard (try? file.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true,
                    !file.lastPathComponent.hasPrefix(".tmp-")
                else { continue }
                let path = file.standardizedFileURL.path
                guard path.hasPrefix(rootPath) else { continue }
                let key = String(path.dropFirst(rootPath.count))
                if key.hasPrefix(prefix) { keys.append(key) }
            }
            return keys.sorted()
        }
    }

    public func delete(_ key: String) async throws {
        let target = try url(for: key)
        try await pool.runIfActive {
            if FileManager.default.fileExists(atPath: target.path) {
                try FileManager.default.removeItem(at: target)
            }
        }
    }
}
