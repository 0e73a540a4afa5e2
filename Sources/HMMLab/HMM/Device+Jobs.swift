import CLinux

/// A device driven by several op threads at once (`--jobs`): which of them has a walk in flight.
///
/// dmirror skips every `MMU_NOTIFY_MIGRATE` its own pagemap raises (`range->owner ==
/// dmirror->mdevice`), which is safe only while one thread drives the device: when thread B migrates a
/// page that thread A's `hmm_range_fault` has just reported, nothing moves A's sequence, and A then
/// mirrors a page that is gone (in the lab's stress test with two jobs the device went on mapping the
/// old system page of a page already on the device; lib/test_hmm.c has the same window between two
/// ioctls on one file). Lab departure: with ``Device/concurrentJobs`` the device skips its own
/// migration's invalidation only when no other op thread walks an overlapping range, and bumps its
/// sequence otherwise, so that walk starts again (counted in `notifier_retries` and
/// `cross_job_retries`), as a driver with concurrent fault handlers must. A mutator's
/// `migrate_to_ram` is not an op thread and keeps dmirror's rule (``cpuStillMapsDevicePage(_:_:)``
/// covers it). With one job nothing here runs.
extension Device {
    /// Marks the calling op thread's walk over `[start, end)` in flight (replacing its previous one).
    @inline(__always) func beginWalk(_ start: UInt64, _ end: UInt64) {
        guard concurrentJobs else { return }
        let job = clinux_job()
        guard job > 0 else { return }
        walksInFlight.withLock { walks in
            walks.removeAll { $0.job == job }
            walks.append((job, start, end))
        }
    }

    /// The calling op thread's walk is over (its last `mmu_interval_read_retry` is checked).
    @inline(__always) func endWalk() {
        guard concurrentJobs else { return }
        let job = clinux_job()
        guard job > 0 else { return }
        walksInFlight.withLock { walks in walks.removeAll { $0.job == job } }
    }

    /// Whether an op thread other than the calling one (which raised the invalidation) walks a range
    /// overlapping `[start, end)`.
    func otherJobWalks(_ start: UInt64, _ end: UInt64) -> Bool {
        guard concurrentJobs else { return false }
        let job = clinux_job()
        guard job > 0 else { return false }
        return walksInFlight.withLock { walks in walks.contains { $0.job != job && $0.start < end && start < $0.end } }
    }
}
