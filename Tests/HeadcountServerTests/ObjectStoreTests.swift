import Foundation
import NIOCore
import Testing
@testable import HeadcountServer

@Suite("FileObjectStore") struct ObjectStoreTests {
    func makeStore() throws -> FileObjectStore {
        try FileObjectStore(root: FileManager.default.temporaryDirectory.appendingPathComponent("objects-\(UUID().uuidString)").path)
    }

    @Test func putGetListDelete() async throws {
        let store = try makeStore()
        try await store.put("2024-01-01-logs.csv", ByteBuffer(string: "a"), contentType: "text/csv")
        try await store.put("rooms/lab/2024-01-01-logs.csv", ByteBuffer(string: "b"), contentType: "text/csv")
        try await store.put("with space/é.csv", ByteBuffer(string: "c"), contentType: "text/csv")
        try await store.put("2024-01-01-logs.csv", ByteBuffer(string: "replaced"), contentType: "text/csv")
        #expect(try await store.get("2024-01-01-logs.csv").map { String(buffer: $0) } == "replaced")
        #expect(try await store.get("missing") == nil)
        #expect(try await store.list(prefix: "") == ["2024-01-01-logs.csv", "rooms/lab/2024-01-01-logs.csv", "with space/é.csv"])
        #expect(try await store.list(prefix: "rooms/") == ["rooms/lab/2024-01-01-logs.csv"])
        try await store.delete("rooms/lab/2024-01-01-logs.csv")
        try await store.delete("never-there")
        #expect(try await store.list(prefix: "rooms/") == [])
        // Writes leave no temporary files behind.
        let names = try FileManager.default.contentsOfDirectory(atPath: store.root.path)
        #expect(!names.contains { $0.hasPrefix(".tmp-") })
    }

    @Test(arguments: ["", "../escape", "a/../../escape", "/absolute", "a//b", "./a", "a/.", "nul\0byte"])
    func keysCannotEscapeTheRoot(key: String) async throws {
        let store = try makeStore()
        await #expect(throws: InvalidObjectKey.self) {
            try await store.put(key, ByteBuffer(string: "x"), contentType: "text/plain")
        }
        await #expect(throws: InvalidObjectKey.self) { _ = try await store.get(key) }
    }
}
