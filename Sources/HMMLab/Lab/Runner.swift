import Glibc
import Histogram

/// Runs a ``RunConfig``: warm-up and timed repetitions, strategies interleaved repetition by
/// repetition (so drift hits them alike), one fresh ``Workload`` per repetition and strategy (the same
/// seed for every strategy of a repetition, so they migrate identical ranges), one ``ResultRow`` per
/// strategy, repetition and direction, handed to ``onRow`` as each repetition ends.
///
/// Timed: each op (one window made resident with the strategy, or, coming back, one window of CPU
/// loads faulting device pages back with `migrate_to_ram`), recorded in an HdrHistogram, and the
/// phases inside it. Not timed: building the range, the checks after it, tearing it down.
public final class Runner {
    /// Where a run is, for a progress bar.
    public struct Progress: Sendable {
        public var strategy: Strategy
        public var direction: Direction
        /// 1-based; warm-up repetitions are reported with `warmup` true.
        public var rep: Int
        public var reps: Int
        public var warmup: Bool
        public var op: Int
        public var ops: Int
        /// Repetitions finished of all strategies, and how many there are, for the overall fraction.
        public var done: Int
        public var total: Int
    }

    /// Why a run could not be done.
    public struct RunError: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    public let config: RunConfig
    public private(set) var metadata: RunMetadata
    public let memory: PhysicalMemory
    let swap: SwapArea
    public let counters: PerfCounterSet?
    /// Called with each finished repetition's rows, in order.
    public var onRow: (ResultRow) throws -> Void = { _ in }
    /// Called before each op (keep it cheap: it is part of the harness overhead measured).
    public var onProgress: ((Progress) -> Void)?
    /// Polled between ops: true stops the run after tearing down the current repetition, whose rows
    /// are not written.
    public var shouldStop: () -> Bool = { false }
    /// One line per event worth telling (an op that failed with an unexpected errno, a leak).
    public var onWarning: (String) -> Void = { _ in }
    /// Whether the last ``run()`` stopped early.
    public private(set) var interrupted = false
    /// What each copy worker thread of this run does first (open its counters, pin it), handed to the
    /// devices the run makes; set while ``run()`` runs.
    private var copyWorkerHook: (@Sendable () -> Void)?
    /// The op threads beside the calling one with `--jobs N` above 1; set while ``run()`` runs.
    private(set) var jobThreads: JobThreads?
    /// Failures injected per ``FaultInjector/Point`` over the timed repetitions, and what ended with an
    /// error because of them: ops to the device (`-EFAULT` from a failed swap-in) and, coming back,
    /// CPU loads.
    public private(set) var injected = [Int](repeating: 0, count: FaultInjector.Point.allCases.count)
    public internal(set) var failedOps = 0
    public var injecting: Bool { !config.inject.isEmpty || config.deviceSmallFail > 0 }
    /// The harness's own cost per op (clock reads, histogram, progress and stop checks), ns, and per
    /// repetition (counter reads, snapshots), ns: measured at start.
    public private(set) var overheadPerOpNs = 0.0
    public private(set) var overheadPerRepNs = 0.0

    private let systemFreeAtStart: Int
    private let deviceFreeAtStart: Int

    /// Allocates the pools (refusing a run larger than the memory available), resolves the counters
    /// and measures the floors (`memcpy_gbps`, `kernel_walk_ns`).
    public init(config: RunConfig) throws(RunError) {
        self.config = config
        let table = NodeTable.read()
        try Self.checkMemory(config, table: table)
        // The main thread works near the system memory from the start: it maps and pre-faults the
        // pools and measures the floors.
        placement = ThreadPlacement(systemNode: config.systemNode, table: table)
        pinFailure = placement.pinCallingThread()
        let need = config.memoryNeeded
        let deviceNodes = config.resolvedDeviceNodes(table: table)
        do {
            memory = try PhysicalMemory(
                .init(
                    systemBytes: need.system, deviceBytes: need.device, systemNode: config.systemNode,
                    deviceNode: deviceNodes[0],
                    backing: config.backing, costs: config.costs, moreDeviceNodes: Array(deviceNodes.dropFirst())))
            swap = try SwapArea(
                bytes: need.swap, node: config.systemNode, backing: config.backing == .hugetlb ? .auto : config.backing)
        } catch {
            throw RunError("memory for the run: \(error)")
        }
        if config.counters.isEmpty {
            counters = nil
        } else {
            do {
                counters = try PerfCounterSet(config.counters)
            } catch {
                throw RunError("\(error)")
            }
        }
        systemFreeAtStart = memory.system.allocator.freeFrames
        deviceFreeAtStart = memory.deviceFreeFrames
        metadata = RunMetadata.read(
            systemNode: config.systemNode, deviceNode: deviceNodes[0], backing: memory.system.region.backing.rawValue)
        // One backing when every device pool got the same, else each pool's in device order.
        let deviceBackings = memory.devicePools.map(\.region.backing.rawValue)
        metadata.deviceBacking =
            Set(deviceBackings).count == 1 ? deviceBackings[0] : deviceBackings.joined(separator: ",")
        metadata.deviceNodes = memory.devicePools.map { String($0.node) }.joined(separator: ",")
        metadata.pinnedCPUs = pinFailure == nil ? placement.cpuList : ""
        if config.costs.contains(.flush) { metadata.tlbShootdown = TLBShootdown.host.mechanism.rawValue }
        metadata.memcpyGBps = Calibration.memcpyGBps(memory: memory, bytes: 64 << 20)
        let pin = placement
        metadata.memcpyThreadsGBps =
            config.threads == 1
            ? metadata.memcpyGBps
            : Calibration.memcpyGBps(memory: memory, bytes: 64 << 20, threads: config.threads) {
                pin.pinCallingThread()
            }
        metadata.kernelWalkNs = (try? Calibration.kernelMincoreNs(pages: 8192, node: config.systemNode)) ?? .nan
    }

    /// Where every thread of the run runs (the system node's CPUs, or the nearest node's that has
    /// some, on a machine with several nodes), and why pinning the main thread failed, if it did.
    public let placement: ThreadPlacement
    public let pinFailure: String?

    /// Refuses, before anything is allocated, a run whose pools do not fit their nodes: each pool is
    /// checked against the node it is bound to, with the backing it will get (``PoolPlan``), naming
    /// the node and the sizes.
    public static func checkMemory(_ config: RunConfig, table: NodeTable = .read()) throws(RunError) {
        let unit = config.devices > 1 ? "pages or devices" : "pages"
        if let refusal = PoolPlan(config: config, table: table).refusal(sizedBy: "--pages \(config.pages)", unit: unit)
        {
            throw RunError(refusal)
        }
    }

    /// Runs every repetition; returns the rows written.
    @discardableResult
    public func run() throws(RunError) -> [ResultRow] {
        interrupted = false
        // On a machine with several nodes, every thread of the run works on the CPUs of the system
        // node (the driver's CPU, as a GPU driver's fault handler runs near its memory).
        let placement = self.placement
        placement.pinCallingThread()
        counters?.enterWorkerThread()
        let counters = self.counters
        if counters != nil || placement.node != nil {
            copyWorkerHook = {
                if let counters { counters.enterWorkerThread() }
                placement.pinCallingThread()
            }
        }
        defer {
            copyWorkerHook = nil
            let failed = placement.failedPins - (pinFailure == nil ? 0 : 1)
            if failed > 0 {
                onWarning(
                    "\(failed) thread\(failed == 1 ? "" : "s") of the run (op threads, copy workers, mutators) could not be pinned to CPUs \(placement.cpuList)"
                )
            }
        }
        if config.jobs > 1 {
            // Every op thread counts its own events and runs where the op thread runs.
            jobThreads = JobThreads(count: config.jobs) {
                counters?.enterWorkerThread()
                placement.pinCallingThread()
            }
        }
        defer {
            jobThreads?.stop()
            jobThreads = nil
        }
        measureOverhead()
        var rows: [ResultRow] = []
        let schedule = config.schedule
        for (done, r) in schedule.enumerated() {
            guard
                var repRows = try repetition(
                    r.strategy, rep: r.number, warmup: r.warmup, seed: r.seed, done: done, total: schedule.count)
            else {
                interrupted = true
                return rows
            }
            if !checkNothingLeaked(r.strategy, rep: r.number), config.verify {
                for i in repRows.indices { repRows[i].verifyFailures = (repRows[i].verifyFailures ?? 0) + 1 }
            }
            if r.warmup { continue }
            for row in repRows {
                do {
                    try onRow(row)
                } catch {
                    throw RunError("writing a row: \(error)")
                }
            }
            rows += repRows
        }
        return rows
    }

    // MARK: - One repetition

    /// Counters read around a timed part; the difference of two readings is the part's counts.
    struct Tally {
        /// The integer counts a tally reads, each once: a new one is a case here (the difference
        /// includes it), its reading in ``tally(_:_:)`` and its use in a row.
        enum Count: Int, CaseIterable {
            case ptes, cow, swapins, tlb, lruDrains, invalidations, folioSplits
            case allocFails, hugeToDevice, hugeToSystem, bytesCopied, copyNs, verifyFailures, cpuFaults
            case pagesToSystem, stores
            /// Lock and notifier waits, ns.
            case mmapWait, ptlWait, lruWait, allocWait, notifierWait
        }

        private var counts = [Int](repeating: 0, count: Count.allCases.count)
        var flushNs: UInt64 = 0
        var perf: [UInt64?] = []

        /// One count.
        subscript(_ count: Count) -> Int {
            get { counts[count.rawValue] }
            set { counts[count.rawValue] = newValue }
        }

        /// What changed from `b` to `a` (a perf counter that could not be read in either is nil).
        static func - (a: Tally, b: Tally) -> Tally {
            var d = Tally()
            d.counts = zip(a.counts, b.counts).map { $0 - $1 }
            d.flushNs = a.flushNs - b.flushNs
            d.perf = zip(a.perf, b.perf).map { x, y in x.flatMap { x in y.map { x &- $0 } } }
            return d
        }
    }

    /// Reads every counter of the run: the address spaces', the memory's, the devices', the
    /// mutators' stores and the perf counters.
    func tally(_ w: Workload, _ mutators: Mutators) -> Tally {
        var t = Tally()
        for mm in [w.mm] + (w.child.map { [$0] } ?? []) {
            t[.ptes] += mm.counters.entriesVisited.load(ordering: .relaxed)
            t[.cow] += mm.counters.faults(.copyOnWrite)
            t[.swapins] += mm.counters.faults(.swapIn)
            t[.tlb] += mm.counters.tlbFlushes.load(ordering: .relaxed)
            t.flushNs += mm.counters.flushNanoseconds.load(ordering: .relaxed)
            t[.invalidations] += mm.notifiers.invalidations.load(ordering: .relaxed)
            t[.folioSplits] += mm.counters.folioSplits.load(ordering: .relaxed)
            t[.mmapWait] += mm.mmapLock.wait.nanoseconds
            t[.ptlWait] += mm.pageTable.lockWait.nanoseconds
            t[.notifierWait] += mm.notifiers.readWait.nanoseconds
        }
        t[.lruWait] = memory.lru.lockWait.nanoseconds
        t[.allocWait] =
            memory.system.allocator.lockWait.nanoseconds
            + memory.devicePools.reduce(0) { $0 + $1.allocator.lockWait.nanoseconds }
        t[.lruDrains] = memory.lruDrainAlls
        for device in w.devices {
            let s = device.stats
            t[.allocFails] += s.allocationFailures.load(ordering: .relaxed)
            t[.hugeToDevice] += s.hugeToDevice.load(ordering: .relaxed)
            t[.hugeToSystem] += s.hugeToSystem.load(ordering: .relaxed)
            t[.bytesCopied] += s.bytesCopied.load(ordering: .relaxed)
            t[.copyNs] += s.copyNanoseconds.load(ordering: .relaxed)
            t[.verifyFailures] += s.verifyFailures.load(ordering: .relaxed)
            t[.cpuFaults] += s.cpuFaults.load(ordering: .relaxed)
            t[.pagesToSystem] += s.pagesToSystem.load(ordering: .relaxed)
        }
        t[.stores] = mutators.storesSoFar
        t.perf = counters?.read() ?? []
        return t
    }

    /// One repetition of one strategy; nil when stopped.
    func repetition(
        _ strategy: Strategy, rep: Int, warmup: Bool, seed: UInt64, done: Int, total: Int
    ) throws(RunError) -> [ResultRow]? {
        let (w, injector) = try prepare(strategy, seed: seed)
        defer {
            if let injector, !warmup {
                for p in FaultInjector.Point.allCases { injected[p.rawValue] += injector.injected(p) }
            }
        }
        let mutators = Mutators(workload: w, count: config.mutators, seed: seed, placement: placement)
        defer {
            mutators.finish()
            w.tearDown()
        }
        let ops = config.pages / config.windowPages
        let progress = Progress(
            strategy: strategy, direction: .toDevice, rep: rep, reps: warmup ? config.warmup : config.reps,
            warmup: warmup, op: 0, ops: ops,
            done: done, total: total)
        var rows: [ResultRow] = []
        mutators.start()
        if let failure = mutators.startFailure {
            onWarning("\(strategy) rep \(rep): a mutator thread did not start: \(failure)")
        }
        guard let toDevice = toDeviceLeg(w, strategy, mutators, progress: progress, rep: rep) else { return nil }
        rows.append(toDevice)
        if config.direction == .roundTrip {
            var back = progress
            back.direction = .roundTrip
            guard let toSystem = toSystemLeg(w, strategy, mutators, progress: back, rep: rep) else { return nil }
            rows.append(toSystem)
        }
        let (corrupt, lost) = endChecks(w, strategy, rep: rep, mutators, injector)
        let timestamp = UTCTime.now().iso8601
        for i in rows.indices {
            rows[i].timestamp = timestamp
            rows[i].lostStores = lost
            // Each row's own copy-verify failures, plus what the end-of-repetition checks found.
            if config.verify { rows[i].verifyFailures = (rows[i].verifyFailures ?? 0) + corrupt }
        }
        return rows
    }

    /// A repetition's workload, its devices set for the strategy and the run, and its injector
    /// (failures start once the range is built).
    func prepare(_ strategy: Strategy, seed: UInt64) throws(RunError) -> (Workload, FaultInjector?) {
        let w: Workload
        do {
            w = try Workload(memory: memory, swap: swap, config: config, seed: seed, copyWorkerHook: copyWorkerHook)
        } catch {
            throw RunError("\(error)")
        }
        // With the RFC, migrate_vma_setup is the unified walk: the CPU faults that bring pages back use it too.
        for device in w.devices {
            device.setupThroughUnifiedWalk = strategy == .unified
            device.concurrentJobs = config.jobs > 1
        }
        let injector = config.inject.isEmpty ? nil : FaultInjector(config.inject, seed: seed)
        w.mm.injector = injector
        if config.deviceSmallFail > 0 {
            for (i, device) in w.devices.enumerated() {
                device.setAllocationFailure(
                    FailureInjection(
                        order0: config.deviceSmallFail, order9: config.deviceLargeFail,
                        seed: seed ^ 0x6465_7669_6365 &+ UInt64(i)))
            }
        }
        return (w, injector)
    }

    /// The end of a repetition, the mutators stopped: their stores and the injected CPU faults'
    /// (the last one per page counts), the content of every page, and with `--verify` the invariant
    /// checker (no migration entry, refcounts and mapcounts consistent with the pins known, the
    /// device page table agreeing with the CPU's, no mapped frame on a free list). Returns the
    /// corrupt pages and invariant violations, and the lost stores.
    func endChecks(
        _ w: Workload, _ strategy: Strategy, rep: Int, _ mutators: Mutators, _ injector: FaultInjector?
    ) -> (corrupt: Int, lost: Int) {
        let stores = mutators.finish()
        w.mm.injector = nil  // the checks below read every page: no failure is injected into them
        var injectedStamps: [Int: UInt64] = [:]
        if let injector {
            let (done, failed) = injector.takeCPUFaultStores()
            for s in done { injectedStamps[pageCount(w.start, s.address)] = s.stamp }
            if !failed.isEmpty {
                onWarning("\(strategy) rep \(rep): \(failed.count) injected CPU stores failed, first: \(failed[0])")
            }
        }
        if stores.failed > 0, config.inject[.swapin] == nil {
            onWarning("\(strategy) rep \(rep): \(stores.failed) mutator stores failed")
        }
        var (corrupt, lost) = (0, 0)
        if config.verify || config.mutators > 0 { (corrupt, lost) = check(w, mutators, injected: injectedStamps) }
        guard config.verify else { return (corrupt, lost) }
        let problems = Invariants.check(
            [w.mm] + (w.child.map { [$0] } ?? []), devices: w.devices, knownReferences: w.pinReferences)
        if !problems.isEmpty {
            onWarning(
                "\(strategy) rep \(rep): \(problems.count) invariant violations, first: \(problems.prefix(3).joined(separator: "; "))"
            )
        }
        return (corrupt + problems.count, lost)
    }

    /// Whether every frame and swap slot came back once a repetition's workload is gone; warns if not.
    func checkNothingLeaked(_ strategy: Strategy, rep: Int) -> Bool {
        let system = systemFreeAtStart - memory.system.allocator.freeFrames
        let device = deviceFreeAtStart - memory.deviceFreeFrames
        guard system != 0 || device != 0 || swap.usedSlots != 0 else { return true }
        onWarning(
            "\(strategy) rep \(rep): frames not returned after teardown (system \(system), device \(device), swap slots \(swap.usedSlots))"
        )
        return false
    }

    /// Pages of the range mapped device-private now (one snapshot walk).
    static func pagesOnDevice(_ w: Workload) -> Int {
        w.mm.snapshot(w.start, pages: w.pages).reduce(0) { $0 + ($1 == .devicePrivate ? 1 : 0) }
    }

    static func histogram() -> Histogram<UInt64> {
        Histogram<UInt64>(
            lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .three)
    }

    func makeRow(
        strategy: Strategy, direction: Direction, rep: Int, ops: Int, histogram: Histogram<UInt64>, wall: UInt64,
        delta d: Tally
    ) -> ResultRow {
        var row = ResultRow(
            metadata: metadata, timestamp: "", strategy: strategy.rawValue, direction: direction.rowLabel,
            config: config, rep: rep)
        row.ops = ops
        row.pagesRequested = config.pages
        row.ptesVisited = d[.ptes]
        row.cowBreaks = d[.cow]
        row.swapins = d[.swapins]
        row.tlbFlushes = d[.tlb]
        row.lruDrains = d[.lruDrains]
        row.flushNs = Double(d.flushNs) / Double(max(ops, 1))
        row.invalidations = d[.invalidations]
        row.deviceAllocFails = d[.allocFails]
        row.bytesCopied = d[.bytesCopied]
        row.verifyFailures = config.verify ? d[.verifyFailures] : nil
        row.mutatorStores = d[.stores]
        row.wallNs = wall
        row.opMeanNs = histogram.mean
        row.opP50Ns = histogram.valueAtPercentile(50)
        row.opP90Ns = histogram.valueAtPercentile(90)
        row.opP99Ns = histogram.valueAtPercentile(99)
        row.opMaxNs = histogram.max
        row.copyGBps = d[.copyNs] > 0 ? Double(d[.bytesCopied]) / Double(d[.copyNs]) : nil
        row.mmapLockWaitNs = d[.mmapWait]
        row.ptlWaitNs = d[.ptlWait]
        row.lruLockWaitNs = d[.lruWait]
        row.allocLockWaitNs = d[.allocWait]
        row.notifierWaitNs = d[.notifierWait]
        row.counters = counters.map { _ in d.perf } ?? []
        return row
    }

    /// The end-of-repetition content check (``Workload/checkContent(expectedStamp:acceptsInjected:)``):
    /// pages with wrong content and pages that lost a store; `injected`: the stamp each page's last
    /// injected CPU fault stored.
    func check(_ w: Workload, _ mutators: Mutators, injected: [Int: UInt64] = [:]) -> (corrupt: Int, lost: Int) {
        let found = w.checkContent(
            expectedStamp: mutators.expectedStamp, acceptsInjected: { k, v in v == injected[k] ?? 0 })
        if let first = found.unreadable.first {
            onWarning(
                "the device could not read \(found.unreadable.count) pages (first \(first): \(found.unreadableError.map { "\($0)" } ?? "?")) to check them"
            )
        }
        return (found.corrupt.count, found.lost.count)
    }

    /// Measures what the harness adds to each op and each repetition.
    func measureOverhead() {
        var h = Self.histogram()
        let n = 20000
        let shouldStop = self.shouldStop
        let onProgress = self.onProgress
        let progress = Progress(
            strategy: .unified, direction: .toDevice, rep: 0, reps: 0, warmup: true, op: 0, ops: n, done: 0, total: 1)
        let t0 = monotonicNanoseconds()
        for _ in 0..<n {
            onProgress?(progress)
            if shouldStop() { break }
            let a = monotonicNanoseconds()
            let b = monotonicNanoseconds()
            _ = h.record(b &- a)
        }
        overheadPerOpNs = Double(monotonicNanoseconds() - t0) / Double(n)
        let t1 = monotonicNanoseconds()
        for _ in 0..<10 { _ = counters?.read() }
        overheadPerRepNs = Double(monotonicNanoseconds() - t1) / 10 * 4  // two reads per direction
    }
}
