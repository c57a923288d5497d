import Foundation

/// Makes sure `path` is a directory this process can write, creating it (and its parents) if
/// needed. Otherwise a bad setting: one line naming `setting`, what is wrong, and how to fix it,
/// rather than Foundation's error domain and code.
func prepareWritableDirectory(_ path: String, setting: String) throws(ConfigurationError) {
    func bad(_ why: String) -> ConfigurationError {
        ConfigurationError("\(setting) '\(path)': \(why); choose a directory this user can write, or create it with the right owner")
    }
    var isDirectory: ObjCBool = false
    if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw bad("cannot be created (\(whyNotCreated(path)))")
        }
    } else if !isDirectory.boolValue {
        throw bad("is a file, not a directory")
    }
    guard access(path, W_OK | X_OK) == 0 else { throw bad("is not writable (\(String(cString: strerror(errno))))") }
}

/// Why a directory could not be made: its nearest existing ancestor is a file, or not writable.
private func whyNotCreated(_ path: String) -> String {
    var ancestor = URL(fileURLWithPath: path).standardizedFileURL.deletingLastPathComponent()
    var isDirectory: ObjCBool = false
    while !FileManager.default.fileExists(atPath: ancestor.path, isDirectory: &isDirectory), ancestor.path != "/" {
        ancestor.deleteLastPathComponent()
    }
    if !isDirectory.boolValue { return "\(ancestor.path) is a file" }
    if access(ancestor.path, W_OK | X_OK) != 0 { return "\(ancestor.path) is not writable: \(String(cString: strerror(errno)))" }
    return "the file system refused"
}
