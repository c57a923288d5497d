import Synchronization
import Testing

@testable import HeadcountServer

/// The batching block under SQLite's group commit, the webhooks' and the change feed's.
@Suite("Batcher") struct BatcherTests {
    /// Items sent while a batch is handled go together next, in order, within the weight limit;
    /// an item heavier than the limit goes alone; `idle` waits for the last batch.
    @Test func batchesWhileBusyInOrderWithinTheWeight() async throws {
        let batches = Mutex<[[Int]]>([])
        let gate = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let batcher = Batcher<Int>(maxWeight: 10, weight: { $0 }) { batch in
            batches.withLock { $0.append(batch) }
            if batch == [1] { await withCheckedContinuation { continuation in gate.withLock { $0 = continuation } } }
        }
        batcher.send(1)
        // The first batch is held open until everything else has been sent.
        while gate.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(1)) }
        for item in [2, 3, 4, 20, 5, 6] { batcher.send(item) }
        gate.withLock { $0 }!.resume()
        await batcher.idle()
        #expect(batches.withLock { $0 } == [[1], [2, 3, 4], [20], [5], [6]], "2+3+4 = 9; 20 alone; 5+6 > 10")
        await batcher.idle()  // at once when nothing waits
    }

    @Test func everyItemOfManySendersIsHandledOnceOneBatchAtATime() async {
        let seen = Mutex<(items: [Int], running: Int, overlapped: Bool)>(([], 0, false))
        let batcher = Batcher<Int> { batch in
            seen.withLock {
                $0.running += 1
                $0.overlapped = $0.overlapped || $0.running > 1
            }
            await Task.yield()
            seen.withLock {
                $0.items += batch
                $0.running -= 1
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for sender in 0..<8 { group.addTask { for n in 0..<500 { batcher.send(sender * 1000 + n) } } }
        }
        await batcher.idle()
        let (items, _, overlapped) = seen.withLock { $0 }
        #expect(!overlapped)
        #expect(items.count == 4000)
        #expect(Set(items).count == 4000)
        for sender in 0..<8 {
            let own = items.filter { $0 / 1000 == sender }
            #expect(own == own.sorted(), "one sender's items keep their order")
        }
    }
}
