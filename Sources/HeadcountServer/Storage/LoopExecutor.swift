import NIOCore

/// Runs a task on its connection's event loop while it talks to that connection: each reply then
/// continues the task on the thread that read it, and its next statement is written from there,
/// instead of every round trip waking a thread of the shared pool (most of a short transaction's
/// time on a busy machine, as `WriterThread` found for SQLite).
final class LoopExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) {
        self.loop = loop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
