import CLinux
import CNuma
import Glibc
import Histogram

/// `bench --engine kernel`: the same repetitions, windows and rows as ``Runner``, driven through the
/// running kernel's HMM test driver (``DmirrorDevice``) on a real range of this process
/// (``KernelWorkload``). Counts come from the kernel itself (``KernelFunctions``, `kfn_` columns, and
/// the lab columns that have a kernel twin); columns the kernel cannot give are left empty.
///
/// Each strategy, per window, with the driver's ioctls (lib/test_hmm.c):
/// - `migrate-then-fault`: `MIGRATE_TO_DEV`; when a page did not move (`-ENOENT`), `READ` of the window
///   (`hmm_range_fault` with `REQ_FAULT`, 32 pages a call) and `MIGRATE_TO_DEV` again.
/// - `fault-then-migrate`: `READ` of the window, then `MIGRATE_TO_DEV`. dmirror's READ faults for read
///   only (no `REQ_WRITE`): untouched pages get the zero page and copy-on-write pages stay shared. The
///   model's strategies ask for the same with `--device-access read --fault-pages 32` (the rows of
///   this engine say `read` and `32`); by default they ask `REQ_FAULT` (read) over the whole window.
/// - `unified`: needs the RFC's driver support, which no merged kernel has: refused with one line when
///   asked for alone, left out (with a note) from `--strategy all`.
///
/// Coming back (`--direction round-trip`): a CPU load of each page of the window, each faulting a
/// device page back through `dmirror_devmem_fault` (`migrate_to_ram`).
///
/// Placement: the range is bound to the system node (`mbind`); the op thread prefers the device node
/// (`numa_set_preferred`), so the system pages test_hmm allocates behind each device page
/// (`dmirror_devmem_alloc_page`) come from it.
public final class KernelRunner {
    public let config: RunConfig
    public private(set) var metadata: RunMetadata
    public let counters: PerfCounterSet?
    /// The function profiler, or nil with ``functionsUnavailable`` saying why.
    public let functions: KernelFunctions?
    public let functionsUnavailable: String?
    /// Whether `--strategy all` asked for the unified strategy, which no merged kernel has.
    public let skippedUnified: Bool
    let device: DmirrorDevice
    public var onRow: (ResultRow) throws -> Void = { _ in }
    public var onProgress: ((Runner.Progress) -> Void)?
    public var shouldStop: () -> Bool = { false }
    public var onWarning: (String) -> Void = { _ in }
    public private(set) var interrupted = false
    /// Ops that ended with an unexpected errno (each also reported through ``onWarning``).
    public private(set) var failedOps = 0

    /// Why the kernel engine cannot run this configuration; `badInput` when the user asked for
    /// something the kernel engine or this kernel does not have (the command line exits 64).
    public struct RunError: Error, CustomStringConvertible {
        public var description: String
        public var badInput: Bool
    }

    /// Columns a kernel row never fills.
    static let unmeasuredColumns: Set<String> = [
        "ptes_visited", "migration_entries", "notifier_retries", "folio_lock_fails", "thp_migrated",
        "device_alloc_fails", "bytes_copied",
        "mutator_stores", "lost_stores", "memcpy_gbps", "kernel_walk_ns", "costs", "tlb_shootdown", "flush_ns",
        "cross_job_retries", "mmap_lock_wait_ns", "ptl_wait_ns", "lru_lock_wait_ns", "alloc_lock_wait_ns",
        "memcpy_threads_gbps", "notifier_wait_ns",
    ]

    /// Refuses what the kernel engine cannot do, naming the option (before anything is opened).
    public static func check(_ config: RunConfig) throws(RunError) {
        func refuse(_ what: String) throws(RunError) {
            throw RunError(description: "--engine kernel: \(what)", badInput: true)
        }
        if config.mutators > 0 {
            try refuse("--mutators \(config.mutators) is not supported (mutators run in the model only); use 0")
        }
        if !config.inject.isEmpty || config.deviceSmallFail > 0 {
            try refuse("--inject is not supported: the kernel has no such injection points")
        }
        if config.jobs != 1 { try refuse("--jobs \(config.jobs): the kernel engine drives one op thread; use 1") }
        if config.devices != 1 {
            try refuse("--devices \(config.devices): the kernel engine opens /dev/hmm_dmirror0 only; use 1")
        }
        if config.threads != 1 {
            try refuse("--threads \(config.threads): test_hmm copies on the ioctl's thread; use 1")
        }
        if config.splitPolicy != .afterIsolation {
            try refuse("--split-policy \(config.splitPolicy.rawValue): the kernel splits after isolation only")
        }
        if config.selfInvalidation != .skip {
            try refuse("--self-invalidation bump: dmirror skips its own invalidations; use skip")
        }
        if config.deviceLargeFail != 0, config.deviceLargeFail != 1 {
            try refuse(
                "--device-large-fail \(config.deviceLargeFail): dmirror can fail every 2 MiB allocation (1) or none (0)"
            )
        }
        if config.deviceLargeFail == 1, config.windowPages != Device.migrationWindow {
            try refuse(
                "--device-large-fail 1 needs --window-pages 512 (dmirror's flag fails the first 2 MiB allocation of each call)"
            )
        }
        if config.strategies == [.unified] {
            try refuse(
                "this kernel (\(Sysfs.kernelRelease)) lacks the unified RFC's driver support (HMM_PFN_REQ_MIGRATE in lib/test_hmm.c); use fault-then-migrate or migrate-then-fault"
            )
        }
        if !DmirrorDevice.present {
            try refuse(
                "/dev/hmm_dmirror0 is not there: this kernel has no test_hmm module loaded (CONFIG_TEST_HMM); scripts/kernel-vm boots one that has"
            )
        }
    }

    /// `--strategy all` runs the two strategies the kernel has (``skippedUnified`` tells).
    public init(config: RunConfig) throws(RunError) {
        try Self.check(config)
        var config = config
        skippedUnified = config.strategies.contains(.unified)
        config.strategies.removeAll { $0 == .unified }
        config.deviceAccess = .read  // what HMM_DMIRROR_READ asks (the rows say so)
        config.faultPages = Device.faultWindow
        self.config = config
        do {
            device = try DmirrorDevice(index: 0, maxPages: Device.migrationWindow)
        } catch {
            throw RunError(description: "\(error)", badInput: false)
        }
        do {
            counters = config.counters.isEmpty ? nil : try PerfCounterSet(config.counters)
        } catch {
            throw RunError(description: "\(error)", badInput: false)
        }
        do {
            functions = try KernelFunctions()
            functionsUnavailable = nil
        } catch {
            functions = nil
            functionsUnavailable = error.description
        }
        metadata = RunMetadata.read(
            systemNode: config.systemNode, deviceNode: config.resolvedDeviceNode,
            backing: config.thp > 0 ? "anon-thp" : "anon-4k")
        // test_hmm's device memory: ZONE_DEVICE pages of a MEMORY_DEVICE_PRIVATE pagemap.
        metadata.deviceBacking = "device-private"
    }

    /// The `kfn_` column names, in ``KernelFunctions/traced`` order.
    public static var functionNames: [String] { KernelFunctions.traced.map(\.name) }

    /// Runs every repetition; returns the rows written.
    @discardableResult
    public func run() throws(RunError) -> [ResultRow] {
        interrupted = false
        counters?.enterWorkerThread()
        if config.resolvedDeviceNode != config.systemNode { numa_set_preferred(Int32(config.resolvedDeviceNode)) }
        defer { numa_set_localalloc() }
        var rows: [ResultRow] = []
        let schedule = config.schedule
        for (done, r) in schedule.enumerated() {
            guard
                let repRows = try repetition(
                    r.strategy, rep: r.number, warmup: r.warmup, seed: r.seed, done: done, total: schedule.count)
            else {
                interrupted = true
                return rows
            }
            if r.warmup { continue }
            for row in repRows {
                do {
                    try onRow(row)
                } catch {
                    throw RunError(description: "writing a row: \(error)", badInput: false)
                }
            }
            rows += repRows
        }
        return rows
    }

    /// What is read around a timed part.
    struct Reading {
        var calls: [UInt64?]
        var perf: [UInt64?]
        static func - (a: Reading, b: Reading) -> Reading {
            func sub(_ x: [UInt64?], _ y: [UInt64?]) -> [UInt64?] {
                zip(x, y).map { p, q in p.flatMap { p in q.map { p &- $0 } } }
            }
            return Reading(calls: sub(a.calls, b.calls), perf: sub(a.perf, b.perf))
        }
    }

    func reading() -> Reading { Reading(calls: functions?.read() ?? [], perf: counters?.read() ?? []) }

    /// One repetition of one strategy: build, the timed direction(s), the checks; nil when stopped.
    func repetition(
        _ strategy: Strategy, rep: Int, warmup: Bool, seed: UInt64, done: Int, total: Int
    ) throws(RunError) -> [ResultRow]? {
        let w: KernelWorkload
        do {
            w = try KernelWorkload(config: config, seed: seed, device: device, systemNode: config.systemNode)
        } catch {
            throw RunError(description: "\(strategy) rep \(rep): building the range: \(error)", badInput: false)
        }
        defer { w.tearDown() }
        var progress = Runner.Progress(
            strategy: strategy, direction: .toDevice, rep: rep, reps: warmup ? config.warmup : config.reps,
            warmup: warmup, op: 0,
            ops: config.pages / config.windowPages, done: done, total: total)
        let before = w.pagesOnDevice()
        guard let out = timed(progress: &progress, { self.toDevice(strategy, w, first: $0) }) else { return nil }
        let onDevice = w.pagesOnDevice()
        var rows = [
            makeRow(
                strategy, .toDevice, rep: rep, pagesMigrated: max(0, onDevice - before),
                pagesSkipped: config.pages - onDevice, out)
        ]
        if config.direction == .roundTrip {
            progress.direction = .roundTrip
            guard let back = timed(progress: &progress, { self.toSystem(w, first: $0) }) else { return nil }
            let left = w.pagesOnDevice()
            rows.append(
                makeRow(
                    strategy, .roundTrip, rep: rep, pagesMigrated: max(0, onDevice - left), pagesSkipped: left, back))
        }
        let corrupt = config.verify ? w.corruptPages(device: device) : nil
        let timestamp = UTCTime.now().iso8601
        for i in rows.indices {
            rows[i].timestamp = timestamp
            rows[i].verifyFailures = corrupt
        }
        return rows
    }

    /// Runs `op` on each window, timing each; the readings around the whole.
    func timed(
        progress: inout Runner.Progress, _ op: (Int) -> Void
    ) -> (histogram: Histogram<UInt64>, wall: UInt64, delta: Reading, ops: Int)? {
        var h = Runner.histogram()
        let ops = config.pages / config.windowPages
        let r0 = reading()
        let t0 = monotonicNanoseconds()
        for i in 0..<ops {
            progress.op = i
            onProgress?(progress)
            if shouldStop() { return nil }
            let a = monotonicNanoseconds()
            op(i * config.windowPages)
            _ = h.record(monotonicNanoseconds() &- a)
        }
        let wall = monotonicNanoseconds() &- t0
        return (h, wall, reading() - r0, ops)
    }

    /// One window to the device with `strategy`.
    func toDevice(_ strategy: Strategy, _ w: KernelWorkload, first: Int) {
        let a = w.address(first)
        let n = config.windowPages
        if config.deviceLargeFail == 1 { _ = device.setFailAllocation() }
        switch strategy {
        case .migrateThenFault:
            let r = device.migrateToDevice(a, pages: n)
            guard r.errno == ENOENT else { return expect(r, "MIGRATE_TO_DEV", first) }
            expect(device.read(a, pages: n), "READ", first)
            if config.deviceLargeFail == 1 { _ = device.setFailAllocation() }
            let again = device.migrateToDevice(a, pages: n)
            if again.errno != ENOENT { expect(again, "MIGRATE_TO_DEV", first) }
        case .faultThenMigrate:
            expect(device.read(a, pages: n), "READ", first)
            let r = device.migrateToDevice(a, pages: n)
            if r.errno != ENOENT { expect(r, "MIGRATE_TO_DEV", first) }
        case .unified:
            preconditionFailure("refused by check(_:)")
        }
    }

    /// One window back through CPU loads (each device page faults to `dmirror_devmem_fault`).
    func toSystem(_ w: KernelWorkload, first: Int) {
        for k in first..<(first + config.windowPages) { _ = clinux_read_byte(w.pointer(k)) }
    }

    /// Reports an ioctl that failed with an errno other than success (`-ENOENT` means pages did not
    /// move: pinned ones, and is expected).
    func expect(_ r: DmirrorDevice.Reply, _ call: String, _ first: Int) {
        guard r.errno != 0 else { return }
        failedOps += 1
        onWarning("\(call) of the window at page \(first) failed with \(SystemError.name(of: r.errno))")
    }
}
