import NIOPosix

/// One thread for SQLite's writer: the Swift tasks that issue its statements run here (as their
/// preferred executor), and `SQLiteWriter` runs each statement at once on the calling thread, so a
/// transaction of several statements runs without waking other threads, which on a busy machine
/// is most of its latency.
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
