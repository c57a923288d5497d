import Foundation

/// This instance's name for the work it claims in the shared database (a room log being written):
/// kept in `<data-dir>/instance.id`, so that after a restart, a crash included, the instance takes
/// its own claims straight back rather than waiting for them to lapse. Random when the data
/// directory cannot be written.
enum InstanceID {
    static func resolve(dataDirectory: String) -> String {
        let path = URL(fileURLWithPath: dataDirectory).appendingPathComponent("instance.id").path
        if let data = FileManager.default.contents(atPath: path), let id = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
           (1...100).contains(id.count) {
            return id
        }
        let id = UUID().uuidString.lowercased()
        try? FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: path, contents: Data((id + "\n").utf8))
        return id
    }
}
