import CLinux
import Glibc

/// The op threads of a run with `--jobs N`: the calling thread is job 0, and N − 1 POSIX threads,
/// started once per run, are jobs 1 … N − 1. Each runs ``start`` once when it starts (pin it to the
/// run's ``ThreadPlacement``, open its perf counters), then waits for work. ``run(_:)`` hands one body
/// to every job and returns when all have finished it, so a run's threads are made once, not per
/// repetition, and their per-thread counters stay open for the whole run. While a job runs, its
/// thread's number (`clinux_job()`, 1 … N) tells a device which job bumped its notifier sequence
/// (``Device/crossJobRetry()``).
///
/// Models nothing in the kernel: it stands for a driver's concurrent fault handlers (several GPU
/// engines faulting at once, each on its own kernel thread or work item).
final class JobThreads: @unchecked Sendable {
    /// Jobs, the caller's included.
    public let count: Int
    private var threads: [PosixThread] = []
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let posted: UnsafeMutablePointer<pthread_cond_t>
    private let finished: UnsafeMutablePointer<pthread_cond_t>
    /// Guarded by `mutex`.
    private var generation = 0
    private var running = 0
    private var stopping = false
    private var work: ((Int) -> Void)?

    /// Starts `count − 1` threads, each running `start` first.
    public init(count: Int, start: @escaping @Sendable () -> Void) {
        self.count = count
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        posted = .allocate(capacity: 1)
        posted.initialize(to: pthread_cond_t())
        pthread_cond_init(posted, nil)
        finished = .allocate(capacity: 1)
        finished.initialize(to: pthread_cond_t())
        pthread_cond_init(finished, nil)
        for job in 1..<max(count, 1) {
            do {
                threads.append(
                    try PosixThread.start { [self] in
                        clinux_set_job(Int32(job + 1))
                        start()
                        loop(job)
                    })
            } catch {
                preconditionFailure("job \(job): \(error)")
            }
        }
    }

    deinit {
        stop()
        pthread_cond_destroy(posted)
        pthread_cond_destroy(finished)
        pthread_mutex_destroy(mutex)
        posted.deallocate()
        finished.deallocate()
        mutex.deallocate()
    }

    /// Runs `body(job)` on every job, job 0 on the calling thread, and returns when all have returned.
    public func run(_ body: @escaping (Int) -> Void) {
        pthread_mutex_lock(mutex)
        work = body
        running = count - 1
        generation += 1
        pthread_cond_broadcast(posted)
        pthread_mutex_unlock(mutex)
        clinux_set_job(1)
        body(0)
        clinux_set_job(0)
        pthread_mutex_lock(mutex)
        while running > 0 { pthread_cond_wait(finished, mutex) }
        work = nil
        pthread_mutex_unlock(mutex)
    }

    private func loop(_ job: Int) {
        var seen = 0
        while true {
            pthread_mutex_lock(mutex)
            while generation == seen, !stopping { pthread_cond_wait(posted, mutex) }
            if stopping {
                pthread_mutex_unlock(mutex)
                return
            }
            seen = generation
            let body = work!
            pthread_mutex_unlock(mutex)
            body(job)
            pthread_mutex_lock(mutex)
            running -= 1
            if running == 0 { pthread_cond_signal(finished) }
            pthread_mutex_unlock(mutex)
        }
    }

    /// Ends the threads and joins them (idempotent).
    public func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(posted)
        pthread_mutex_unlock(mutex)
        for t in threads { t.join() }
        threads = []
    }
}
