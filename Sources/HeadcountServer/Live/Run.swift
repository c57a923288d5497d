import NIOCore

/// Consecutive changes of one topic delivered together, as subscribers of `/api/stream` see them:
/// server-sent events (id, type and JSON data), formatted once for every subscriber, in one buffer
/// so that a stream copies a run at a time rather than a change at a time.
struct Run: Sendable {
    let topic: Topic
    let firstID: Int64
    /// Where each change's event starts in `text`.
    var starts: [Int] = []
    var text = ByteBuffer()

    var count: Int { starts.count }
    var lastID: Int64 { firstID + Int64(count) - 1 }

    /// The events after change `id` (the whole run when `id` precedes it).
    func events(after id: Int64) -> ByteBuffer {
        let skip = Int(max(0, id + 1 - firstID))
        return skip == 0 ? text : text.getSlice(at: starts[skip], length: text.readableBytes - starts[skip])!
    }
}
