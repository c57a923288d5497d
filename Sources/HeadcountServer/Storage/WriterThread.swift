import NIOPosix

/// One thread for SQLite's writer: its connection's statements run here, and so do the Swift tasks
/// that issue them (as their preferred executor). A statement's result then continues on the thread
/// that produced it, and the next statement is queued behind it, so a transaction of several
/// statements runs without waking other threads, which on a busy machine is most of its latency.
final class WriterThread: TaskExecutor {
    let pool = NIOThreadPool(numberOfThreads: 1)

    init() {
        pool.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        pool.submit { state in
            switch state {
            case .active: job.runSynchronously(on: self.asUnownedTaskExecutor())
            // Shut down: the job still runs, on the shared pool.
            case .cancelled: globalConcurrentExecutor.enqueue(job)
            }
        }
    }

    func shutdown() async {
        try? await pool.shutdownGracefully()
    }
}
