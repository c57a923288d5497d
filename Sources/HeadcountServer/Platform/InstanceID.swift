import Foundation

/// This instance's name for the work it claims in the shared database (a room log being written).
/// It is kept in `<data-dir>/instance.id` and locked there while the instance runs, so that a
/// restarted instance, after a crash too, takes its own claims straight back, while a second
/// process on the same data directory, finding the name locked, goes by a random one.
final class InstanceID: Sendable {
    let name: String
    /// Open while the instance runs: closing it releases the lock.
    private let descriptor: Int32

    init(dataDirectory: String) {
        let path = URL(fileURLWithPath: dataDirectory).appendingPathComponent("instance.id").path
        try? FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0, flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            if descriptor >= 0 { close(descriptor) }
            self.descriptor = -1
            name = UUID().uuidString.lowercased()
            return
        }
        self.descriptor = descriptor
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: false)
        let stored = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if (1...100).contains(stored.count) {
            name = stored
        } else {
            name = UUID().uuidString.lowercased()
            _ = ftruncate(descriptor, 0)
            _ = pwrite(descriptor, name + "\n", name.utf8.count + 1, 0)
        }
    }

    /// A name of its own, for an instance without a data directory (tests).
    init() {
        descriptor = -1
        name = UUID().uuidString.lowercased()
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }
}
