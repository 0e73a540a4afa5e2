import Histogram
import Synchronization

/// The windows of one leg of a repetition, handed to the jobs (`--jobs N`) from one shared queue: a
/// job that finishes a window takes the next one not yet taken (one atomic add), so a job slowed by
/// contention or a busy CPU does less and none idles while windows are left. A fixed partition (job
/// j takes windows j, j + N, …) would make every job's count equal, but the leg would last as long as
/// its slowest job; the queue keeps the leg's wall time the measure of throughput.
///
/// With one job there is no queue: the job counts windows itself, with no atomic per op.
final class WindowQueue: Sendable {
    let count: Int
    let shared: Bool
    private let next = Atomic<Int>(0)

    init(count: Int, jobs: Int) {
        self.count = count
        shared = jobs > 1
    }

    /// The next window, or nil when none is left; `local` is the job's own count (used alone when
    /// there is one job).
    @inline(__always) func take(_ local: inout Int) -> Int? {
        let i: Int
        if shared {
            i = next.wrappingAdd(1, ordering: .relaxed).oldValue
        } else {
            i = local
            local &+= 1
        }
        return i < count ? i : nil
    }
}

extension Runner {
    /// What one job did in one leg of a repetition.
    struct JobOutcome {
        var histogram = Runner.histogram()
        var result = MigrationResult()
        var unexpected: [Int32] = []
        var failedOps = 0
        var loadFailures = 0
        var stopped = false

        /// Every job's outcome in one: histograms merged, counts summed.
        static func merged(_ all: [JobOutcome]) -> JobOutcome {
            var m = all[0]
            for o in all.dropFirst() {
                m.histogram.add(o.histogram)
                m.result.merge(o.result)
                m.unexpected += o.unexpected
                m.failedOps += o.failedOps
                m.loadFailures += o.loadFailures
                m.stopped = m.stopped || o.stopped
            }
            return m
        }
    }

    /// Runs `body(job, &outcome)` on every job of the run (``JobThreads``; the calling thread alone
    /// with one job) and returns the outcomes, merged. The outcomes (their histograms) are made before
    /// `started` runs, so their first touch falls outside the timed part, with one job as with several.
    func onJobs(started: () -> Void, _ body: @escaping (Int, inout JobOutcome) -> Void) -> JobOutcome {
        let n = jobThreads?.count ?? 1
        let slots = UnsafeMutablePointer<JobOutcome>.allocate(capacity: n)
        for j in 0..<n { (slots + j).initialize(to: JobOutcome()) }
        defer {
            slots.deinitialize(count: n)
            slots.deallocate()
        }
        started()
        if let jobThreads { jobThreads.run { job in body(job, &slots[job]) } } else { body(0, &slots[0]) }
        return JobOutcome.merged((0..<n).map { slots[$0] })
    }

    /// A leg's timed part: the jobs run `job` over one fresh queue of `ops` windows between two
    /// tallies; their merged outcome, the wall time and the counters' change, or nil when stopped.
    func timedLeg(
        _ w: Workload, _ mutators: Mutators, ops: Int, _ job: @escaping (Int, inout JobOutcome, WindowQueue) -> Void
    ) -> (outcome: JobOutcome, wall: UInt64, delta: Tally)? {
        let queue = WindowQueue(count: ops, jobs: config.jobs)
        var before = Tally()
        var started: UInt64 = 0
        let o = onJobs(started: {
            before = tally(w, mutators)
            started = monotonicNanoseconds()
        }) { j, out in job(j, &out, queue) }
        let wall = monotonicNanoseconds() - started
        let after = tally(w, mutators)
        return o.stopped ? nil : (o, wall, after - before)
    }

    /// The way to the device: the jobs take windows (``WindowQueue``) and make each resident with the
    /// strategy on its device; one row, nil when stopped.
    func toDeviceLeg(
        _ w: Workload, _ strategy: Strategy, _ mutators: Mutators, progress: Progress, rep: Int
    ) -> ResultRow? {
        let ops = progress.ops
        guard
            let (o, wall, delta) = timedLeg(
                w, mutators, ops: ops,
                { [self] job, out, queue in toDeviceJob(job, &out, w, strategy, queue, progress) })
        else { return nil }
        failedOps += o.failedOps
        let onDevice = Self.pagesOnDevice(w)
        if !o.unexpected.isEmpty {
            onWarning(
                "\(strategy) rep \(rep): \(o.unexpected.count) ops ended with \(Set(o.unexpected.map(Errno.name)).sorted().joined(separator: ", "))"
            )
        }
        var row = makeRow(
            strategy: strategy, direction: .toDevice, rep: rep, ops: ops, histogram: o.histogram, wall: wall,
            delta: delta)
        row.setCounts(o.result, pages: w.pages, onDevice: onDevice, hugeToDevice: delta[.hugeToDevice])
        row.setRates(bytesMigrated: o.result.migrated * PageSize.bytes, wall: wall)
        return row
    }

    /// One job's loop over the windows it takes from `queue`: progress (job 0 only), the stop check,
    /// `op` timed into the job's histogram, then `account` (untimed) with what it returned. Both run
    /// once per window, never per page.
    @inline(__always)
    func jobWindows<R>(
        _ job: Int, _ out: inout JobOutcome, _ queue: WindowQueue, _ progress: Progress,
        _ op: (Int, inout JobOutcome) -> R,
        account: (R, inout JobOutcome) -> Void = { _, _ in }
    ) {
        var progress = progress
        var local = 0
        let shouldStop = self.shouldStop
        let onProgress = job == 0 ? self.onProgress : nil
        while let window = queue.take(&local) {
            progress.op = window
            onProgress?(progress)
            if shouldStop() {
                out.stopped = true
                return
            }
            let t0 = monotonicNanoseconds()
            let r = op(window, &out)
            let t1 = monotonicNanoseconds()
            _ = out.histogram.record(t1 - t0)
            account(r, &out)
        }
    }

    /// One job's loop to the device.
    func toDeviceJob(
        _ job: Int, _ out: inout JobOutcome, _ w: Workload, _ strategy: Strategy, _ queue: WindowQueue,
        _ progress: Progress
    ) {
        jobWindows(job, &out, queue, progress) { op, _ in
            w.device(forWindow: op).makeResident(
                w.address(op * config.windowPages), pages: config.windowPages, strategy: strategy,
                compound: config.thp > 0,
                access: config.deviceAccess, faultPages: config.faultPages)
        } account: { r, out in
            if r.errno != 0, r.errno != Errno.ENOENT {
                if injecting { out.failedOps += 1 } else { out.unexpected.append(r.errno) }
            }
            out.result.merge(r)
        }
    }

    /// The way back through CPU faults (`--direction round-trip`): the jobs take windows and load one
    /// byte of each page, faulting device pages back (`migrate_to_ram`); one row, nil when stopped.
    func toSystemLeg(
        _ w: Workload, _ strategy: Strategy, _ mutators: Mutators, progress: Progress, rep: Int
    ) -> ResultRow? {
        let ops = progress.ops
        guard
            let (o, wall, d) = timedLeg(
                w, mutators, ops: ops, { [self] job, out, queue in toSystemJob(job, &out, w, queue, progress) })
        else { return nil }
        if o.loadFailures > 0 {
            if config.inject[.swapin] != nil {
                failedOps += o.loadFailures
            } else {
                onWarning("\(strategy) rep \(rep): \(o.loadFailures) CPU loads on the way back failed")
            }
        }
        let left = Self.pagesOnDevice(w)
        var row = makeRow(
            strategy: strategy, direction: .roundTrip, rep: rep, ops: ops, histogram: o.histogram, wall: wall, delta: d)
        row.pagesMigrated = d[.pagesToSystem]
        row.pagesSkipped = left
        row.walks = d[.cpuFaults]  // one migrate_vma_setup per migrate_to_ram
        row.faults = d[.cpuFaults]
        row.thpMigrated = d[.hugeToSystem]
        row.thpSplits = d[.folioSplits]
        row.copyNs = Double(d[.copyNs]) / Double(ops)
        row.setRates(bytesMigrated: d[.pagesToSystem] * PageSize.bytes, wall: wall)
        return row
    }

    /// One job's loop back to system memory: a load of one byte of each page of the window.
    func toSystemJob(_ job: Int, _ out: inout JobOutcome, _ w: Workload, _ queue: WindowQueue, _ progress: Progress) {
        jobWindows(job, &out, queue, progress) { op, out in
            let first = op * config.windowPages
            for k in first..<(first + config.windowPages) {
                do { _ = try w.mm.load(UInt8.self, from: w.address(k)) } catch { out.loadFailures += 1 }
            }
        }
    }
}

extension ResultRow {
    /// The counts of the way to the device from the jobs' merged result.
    mutating func setCounts(_ result: MigrationResult, pages: Int, onDevice: Int, hugeToDevice: Int) {
        pagesMigrated = result.migrated
        pagesSkipped = pages - onDevice
        walks = result.walks
        walkRestarts = result.restarts
        faults = result.faults
        migrationEntries = result.migrationEntries
        notifierRetries = result.notifierRetries
        crossJobRetries = result.crossJobRetries
        folioLockFails = result.lockFailures
        thpMigrated = hugeToDevice
        thpSplits = result.splitsBeforeCollect + result.splitsAfterIsolation
        let n = Double(ops)
        let p = result.phases
        walkNs = Double(p.walk) / n
        faultNs = Double(p.fault) / n
        collectNs = Double(p.collect) / n
        allocNs = Double(p.alloc) / n
        copyNs = Double(p.copy) / n
        finalizeNs = Double(p.finalize) / n
    }
}
