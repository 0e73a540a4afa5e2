import Glibc

/// A bounded randomised stress run (README, "Reliability"): the device-memory paths interleaved
/// with everything that can happen to a range meanwhile, with the invariant checker after every op and
/// a full content and leak check after every round. `bench stress` and the stress test run this loop.
///
/// A round builds a fresh ``Workload`` (every page state of a ``Mix``, THP blocks, a `cow` child) with
/// a ``FaultInjector`` on its address space (every ``FaultInjector/Point``, the `cpufault` point
/// included) and device allocation failures (4 KiB and 2 MiB), then runs ops chosen at random from the
/// seed (``Op``): the three strategies on a random window, migration back (`migrate_vma` to system and
/// `migrate_to_ram` through CPU loads), device eviction, swap-out, fork, munmap, mremap and mprotect.
/// During the ops that do not change the VMAs, ``Mutators`` store version stamps into random pages.
/// After every op the mutators are stopped and ``Invariants/check(_:devices:knownReferences:)`` runs
/// over every address space of the round. At the end of a round every page must hold its header (or
/// zeros), its mutators' last stamp and its last injected CPU-fault stamp, wherever it lives
/// (``Workload/checkContent(expectedStamp:acceptsInjected:)``: system memory, device or swap); no copy
/// may have failed its verify; and after teardown every system frame, device frame and swap slot must
/// be back. Anything else is a violation, reported with the seed, the round and the op.
///
/// Reproducing: the ops, their arguments and the injector's draws follow from the seed, so a failing
/// seed replays the same sequence of ops; what the mutator and injected threads interleave with them
/// is up to the scheduler, as in the kernel.
///
/// Simplifications, said here: `munmap` is followed by a fresh `mmap` at the same address and the
/// model's content is stored back, so that every page keeps one expected content (the unmapping, its
/// zap of device, swap and THP entries and the page-table freeing are what is exercised); `mremap`
/// moves a run of pages away and back within the op; `mprotect` makes a window read-only for one
/// migration and restores it.
public final class Stress {
    /// What a stress run does.
    public struct Configuration: Sendable, Equatable {
        /// Time budget for the ops (the round under way still finishes its checks).
        public var seconds: Double = 10
        /// Most ops in all (nil: no cap but the time).
        public var maxOps: Int?
        public var seed: UInt64 = 1
        /// Pages per round's range (a multiple of 512).
        public var pages = 2048
        /// Ops per round before it is checked and torn down.
        var opsPerRound = 150
        /// How long one op may run: an op still running then is a violation (a fault that never
        /// completes: a livelock), and its CPU accesses give up as on a fatal signal.
        var opTimeLimit: Double = 60
        /// CPU threads storing stamps during the ops that keep the VMAs.
        public var mutators = 2
        /// Op threads: a strategy op runs this many windows at once, one per thread (windows drawn at
        /// random, so they may overlap), as `--jobs` does.
        public var jobs = 1
        /// Devices mirroring the range, each with its own pool; each window of a strategy op, each
        /// migration to system and each eviction goes to one drawn at random.
        public var devices = 1
        public var backing = BackingRequest.auto
        public var systemNode = 0
        public var deviceNode: Int?
        /// Probabilities per injection point.
        public var inject: [FaultInjector.Point: Double] = Stress.defaultInjection
        /// Probabilities of a 4 KiB and a 2 MiB device allocation failing.
        var deviceSmallFail = 0.02
        public var deviceLargeFail = 0.3

        public init() {}

        /// The pools' sizes: room for the range four times over in system memory (copy-on-write
        /// copies, the way back, a forked child's copies) plus a backing page for every device page
        /// and a block for the huge zero folio, twice in device memory (per device pool), once in swap.
        var poolBytes: (system: Int, device: Int, swap: Int) {
            let range = pages * PageSize.bytes
            let block = PageSize.pmdBytes
            return (6 * range + 13 * block, 2 * range + 4 * block, range + block)
        }

        /// Where its areas go and what backs them on `table` (``PoolPlan``), as ``Stress/init(_:)``
        /// maps them.
        public func plan(_ table: NodeTable) -> PoolPlan {
            let bytes = poolBytes
            let nodes = deviceNodes(table)
            let descriptors =
                (bytes.system + bytes.device * nodes.count) / PageSize.bytes * PhysicalMemory.descriptorSize
            let pools = nodes.enumerated().map { i, node in
                (
                    name: nodes.count == 1 ? "device pool" : "device pool \(i)", node: node, bytes: bytes.device,
                    candidates: backing.candidates
                )
            }
            return PoolPlan(
                [("system pool", systemNode, bytes.system, backing.candidates)] + pools + [
                    ("descriptors", systemNode, descriptors, backing == .small ? [.small] : [.thp, .small]),
                    (
                        "swap area", systemNode, bytes.swap,
                        (backing == .hugetlb ? BackingRequest.auto : backing).candidates
                    ),
                ], table: table)
        }

        /// Each device pool's node: `deviceNode` for all when given, else as a run places them
        /// (``NodeTable/deviceNodes(count:systemNode:)``; the farthest node for one device).
        public func deviceNodes(_ table: NodeTable) -> [Int] {
            if let deviceNode { return Array(repeating: deviceNode, count: devices) }
            return devices == 1
                ? [table.farthestNodeWithMemory(from: systemNode)]
                : table.deviceNodes(count: devices, systemNode: systemNode)
        }

        /// `trylock=0.01,…,device4k=0.02,device2m=0.3`.
        public var injectDescription: String {
            var run = RunConfig()
            run.inject = inject
            run.deviceSmallFail = deviceSmallFail
            let points = run.injectDescription
            return (points.isEmpty ? "" : points + ",") + "device2m=\(Mix.format(deviceLargeFail))"
        }
    }

    /// Options of `bench stress` (names without dashes).
    public static let optionNames = [
        "seconds", "seed", "pages", "mutators", "jobs", "devices", "max-ops", "backing", "inject", "device-large-fail",
        "system-node", "device-node",
    ]

    /// Builds a configuration from option values as typed (`bench stress`).
    /// - Throws: ``ConfigError`` naming the first bad value and what is allowed.
    public static func parse(_ options: [String: String]) throws(ConfigError) -> Configuration {
        var c = Configuration()
        for key in options.keys where !optionNames.contains(key) {
            throw ConfigError(
                "--\(key) is not an option of stress; use one of \(optionNames.map { "--" + $0 }.joined(separator: ", "))"
            )
        }
        if let v = options["seconds"] {
            guard let s = Double(v), s.isFinite, s > 0, s <= 86_400 else {
                throw ConfigError(
                    "--seconds '\(v)' is not allowed; use a number of seconds greater than 0, at most 86400")
            }
            c.seconds = s
        }
        if let v = options["seed"] {
            let parsed = v.hasPrefix("0x") ? UInt64(v.dropFirst(2), radix: 16) : UInt64(v)
            guard let s = parsed else {
                throw ConfigError("--seed '\(v)' is not allowed; use an unsigned 64-bit integer (decimal or 0x hex)")
            }
            c.seed = s
        }
        if let v = options["pages"] {
            guard let n = Int(v), n >= PageSize.pmdPages, n <= 65536, n % PageSize.pmdPages == 0 else {
                throw ConfigError("--pages '\(v)' is not allowed; use a multiple of 512 from 512 to 65536")
            }
            c.pages = n
        }
        if let v = options["mutators"] {
            c.mutators = try RunConfig.integer("mutators", v, 0...64, "CPU threads storing stamps")
        }
        if let v = options["jobs"] {
            c.jobs = try RunConfig.integer("jobs", v, 1...64, "op threads running strategy ops at once")
        }
        if let v = options["devices"] {
            c.devices = try RunConfig.integer("devices", v, 1...16, "devices, each with its own pool")
        }
        if let v = options["max-ops"] {
            c.maxOps = try RunConfig.integer("max-ops", v, 1...Int(Int32.max), "a number of ops")
        }
        if let v = options["backing"] {
            guard let b = BackingRequest(rawValue: v) else {
                throw ConfigError("--backing '\(v)' is not a backing; use one of auto, hugetlb, thp, 4k")
            }
            c.backing = b
        }
        if options["system-node"] != nil || options["device-node"] != nil {
            // The run's syntax and checks: a node with memory on this machine.
            let nodes = options.filter { $0.key == "system-node" || $0.key == "device-node" }
            let run = try RunConfig.parse(nodes)
            c.systemNode = run.systemNode
            c.deviceNode = run.deviceNode
        }
        if let v = options["device-large-fail"] {
            c.deviceLargeFail = try RunConfig.fraction(
                "device-large-fail", v, "the probability that a 2 MiB device allocation fails")
        }
        if let v = options["inject"] {
            // The run's syntax; the points given replace the defaults.
            let run = try RunConfig.parse(["inject": v], nodes: [0])
            c.inject = run.inject
            c.deviceSmallFail = run.deviceSmallFail
        }
        return c
    }

    /// Every point, at a rate that fires it a few times per round.
    static let defaultInjection: [FaultInjector.Point: Double] = [
        .trylock: 0.01, .pin: 0.01, .invalidate: 0.05, .swapin: 0.05, .cpufault: 0.1,
    ]

    /// The kinds of op.
    public enum Op: String, CaseIterable, Sendable {
        case unified
        case faultThenMigrate = "fault-then-migrate"
        case migrateThenFault = "migrate-then-fault"
        /// `HMM_DMIRROR_MIGRATE_TO_SYS` on a window (`migrate_vma` with `SELECT_DEVICE_PRIVATE`).
        case toSystem = "migrate-to-system"
        /// CPU loads of random pages: device pages come back through `migrate_to_ram`.
        case cpuFault = "cpu-fault"
        /// `HMM_DMIRROR_RELEASE`: every device page evicted.
        case release
        case swapOut = "swap-out"
        /// Fork a child that writes into its copy-on-write pages, or tear the last child down.
        case fork
        case munmap
        case mremap
        case mprotect

        var weight: Int {
            switch self {
            case .unified, .faultThenMigrate, .migrateThenFault: 4
            case .toSystem, .cpuFault, .swapOut: 3
            case .fork, .munmap, .mremap, .mprotect: 2
            case .release: 1
            }
        }

        var strategy: Strategy? {
            switch self {
            case .unified: .unified
            case .faultThenMigrate: .faultThenMigrate
            case .migrateThenFault: .migrateThenFault
            default: nil
            }
        }
    }

    /// What a run did and found.
    public struct Report: Sendable {
        public var seed: UInt64
        /// Ops done per ``Op`` (indexed by `Op.allCases`), and rounds begun.
        public var ops = [Int](repeating: 0, count: Op.allCases.count)
        public var rounds = 0
        /// Failures injected per ``FaultInjector/Point`` (indexed by `rawValue`).
        public var injected = [Int](repeating: 0, count: FaultInjector.Point.allCases.count)
        /// Device allocations that failed (injected, 4 KiB or 2 MiB; or the pool exhausted).
        public var deviceAllocFailures = 0
        /// Injected CPU stores that landed, and how many of them found their migration entry and waited.
        public var cpuFaultStores = 0
        public var cpuFaultWaits = 0
        /// Mutator stores made.
        public var mutatorStores = 0
        /// Ops that ended with an errno or an access error, as injected failures and races make some do.
        public var opsWithErrors = 0
        /// Reads of the end-of-round content check tried again after `-EBUSY` (the 1 s budget of
        /// `dmirror_range_fault` spent on a loaded machine; see ``Workload/readCheckingBusy``).
        public var checkReadRetries = 0
        public var seconds = 0.0
        /// One line per violation found (at most ``maxViolationLines`` kept), and how many there were.
        public var violations: [String] = []
        public var violationCount = 0
        /// Whether ``shouldStop`` ended the run early.
        public var interrupted = false

        public var totalOps: Int { ops.reduce(0, +) }
        public func count(_ op: Op) -> Int { ops[Op.allCases.firstIndex(of: op)!] }
        public func injected(_ point: FaultInjector.Point) -> Int { injected[point.rawValue] }
    }

    static let maxViolationLines = 50

    /// Why a stress run could not start.
    public struct StressError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Where a run is.
    public struct Progress: Sendable {
        public var round: Int
        public var ops: Int
        public var seconds: Double
        public var violations: Int
    }

    /// One finished round, for the log `bench stress --rounds FILE` writes as the run goes: where the
    /// time of a long run goes, round by round, and whether anything grows from one to the next.
    public struct RoundRecord: Sendable {
        public var round: Int
        /// Ops of the round, and of the run so far.
        public var ops = 0
        public var totalOps = 0
        /// Since the run began, at the end of the round.
        public var seconds = 0.0
        /// Time in the ops, in the invariant checks after them, and in the end-of-round content
        /// check; the slowest op and the slowest read of that check.
        var opSeconds = 0.0
        var invariantSeconds = 0.0
        var checkSeconds = 0.0
        var slowestOpSeconds = 0.0
        var slowestReadSeconds = 0.0
        /// Content-check reads tried again after `-EBUSY` in this round.
        public var checkReadRetries = 0
        /// The system pool's free frames when the content check began (pages on a device come back
        /// to system memory as the check reads them), and the round's failed device allocations.
        var systemFreeAtCheck = 0
        var deviceAllocFailures = 0
        /// The process's resident memory (`/proc/self/statm`) at the end of the round, in KiB.
        var residentKiB = 0
        public var violations = 0

        /// Each CSV column with the field it holds, declared once: seconds to 4 decimals, the slowest
        /// op and read in ms to 3.
        static let table: [(name: String, value: @Sendable (RoundRecord) -> String)] = [
            ("round", { "\($0.round)" }), ("ops", { "\($0.ops)" }), ("total_ops", { "\($0.totalOps)" }),
            ("seconds", { Summary.fixed($0.seconds, 4) }), ("op_seconds", { Summary.fixed($0.opSeconds, 4) }),
            ("invariant_seconds", { Summary.fixed($0.invariantSeconds, 4) }),
            ("check_seconds", { Summary.fixed($0.checkSeconds, 4) }),
            ("slowest_op_ms", { Summary.fixed($0.slowestOpSeconds * 1e3, 3) }),
            ("slowest_read_ms", { Summary.fixed($0.slowestReadSeconds * 1e3, 3) }),
            ("check_read_retries", { "\($0.checkReadRetries)" }),
            ("system_free_at_check", { "\($0.systemFreeAtCheck)" }),
            ("device_alloc_failures", { "\($0.deviceAllocFailures)" }), ("resident_kib", { "\($0.residentKiB)" }),
            ("violations", { "\($0.violations)" }),
        ]

        /// The CSV header.
        public static var columns: [String] { table.map(\.name) }

        /// The CSV fields, in the header's order.
        public var fields: [String] { Self.table.map { $0.value(self) } }
    }

    public let configuration: Configuration
    /// Where the stress threads run (the main thread and the mutators), and why pinning the main
    /// thread failed, if it did.
    public let placement: ThreadPlacement
    public let pinFailure: String?
    public let memory: PhysicalMemory
    let swap: SwapArea
    /// Polled between ops: true ends the run after the current round's checks.
    public var shouldStop: () -> Bool = { false }
    /// When the time budget ends (monotonic ns), set by ``run()``.
    private var deadline: UInt64 = .max
    /// When the op under way reaches ``Configuration/opTimeLimit`` (monotonic ns).
    private var opDeadline: UInt64 = .max

    /// The stress thread's "fatal signal pending": the budget is spent, the op has run out of its
    /// time limit, or ``shouldStop`` says so. A CPU access whose fault keeps failing (an injected pin
    /// on every migration back, or a fault that makes no progress) gives up on it.
    func signalPending() -> Bool {
        let now = monotonicNanoseconds()
        return now >= deadline || now >= opDeadline || shouldStop()
    }
    /// Called after each op.
    public var onProgress: ((Progress) -> Void)?
    /// Called at the end of each round, its checks done.
    public var onRound: ((RoundRecord) -> Void)?

    /// Pins the calling thread (``placement``) and allocates the pools
    /// (``Configuration/poolBytes``).
    public init(_ configuration: Configuration) throws(StressError) {
        guard configuration.pages > 0, configuration.pages % PageSize.pmdPages == 0 else {
            throw StressError(
                description: "stress pages \(configuration.pages) must be a positive multiple of \(PageSize.pmdPages)")
        }
        self.configuration = configuration
        placement = ThreadPlacement(systemNode: configuration.systemNode, table: NodeTable.read())
        pinFailure = placement.pinCallingThread()
        let bytes = configuration.poolBytes
        let deviceNodes = configuration.deviceNodes(NodeTable.read())
        do {
            memory = try PhysicalMemory(
                .init(
                    systemBytes: bytes.system, deviceBytes: bytes.device, systemNode: configuration.systemNode,
                    deviceNode: deviceNodes[0], backing: configuration.backing,
                    moreDeviceNodes: Array(deviceNodes.dropFirst())))
            swap = try SwapArea(
                bytes: bytes.swap, node: configuration.systemNode,
                backing: configuration.backing == .hugetlb ? .auto : configuration.backing)
        } catch {
            throw StressError(description: "memory for the stress run: \(error)")
        }
    }

    /// The op threads beside the stress thread with ``Configuration/jobs`` above 1, set while
    /// ``run()`` runs.
    var jobThreads: JobThreads?

    /// Runs rounds until the time or op budget is spent, a violation is found, or ``shouldStop``.
    public func run() -> Report {
        var report = Report(seed: configuration.seed)
        if configuration.jobs > 1 {
            let placement = self.placement
            jobThreads = JobThreads(count: configuration.jobs) { placement.pinCallingThread() }
        }
        defer {
            jobThreads?.stop()
            jobThreads = nil
        }
        let started = monotonicNanoseconds()
        let budget = UInt64(max(0, configuration.seconds) * 1e9)
        deadline = started &+ budget
        var round = 0
        while report.violationCount == 0 {
            if monotonicNanoseconds() - started >= budget { break }
            if let cap = configuration.maxOps, report.totalOps >= cap { break }
            if shouldStop() {
                report.interrupted = true
                break
            }
            round += 1
            report.rounds = round
            runRound(round, started: started, budget: budget, &report)
        }
        report.seconds = Double(monotonicNanoseconds() - started) / 1e9
        return report
    }

    // MARK: - One round

    /// The state of one round.
    final class Round {
        let number: Int
        let w: Workload
        let injector: FaultInjector
        let mutators: Mutators
        var rng: SplitMix64
        /// The stamp each page's last injected CPU fault stored (0: none).
        var injectedStamp: [UInt64]
        /// A child forked by a `fork` op, torn down by the next one or at the end of the round.
        var forked: AddressSpace?

        init(number: Int, w: Workload, injector: FaultInjector, mutators: Mutators, seed: UInt64) {
            self.number = number
            self.w = w
            self.injector = injector
            self.mutators = mutators
            rng = SplitMix64(seed: seed ^ 0x5354_5245_5353)
            injectedStamp = [UInt64](repeating: 0, count: w.pages)
        }

        func below(_ n: Int) -> Int { Int(rng.next() % UInt64(max(n, 1))) }
        var spaces: [AddressSpace] { [w.mm] + (w.child.map { [$0] } ?? []) + (forked.map { [$0] } ?? []) }
    }

    /// One round, then the leak check once its address spaces are gone, then ``onRound``.
    func runRound(_ number: Int, started: UInt64, budget: UInt64, _ report: inout Report) {
        let systemFree = memory.system.allocator.freeFrames
        let deviceFree = memory.deviceFreeFrames
        let opsBefore = report.totalOps
        var record = RoundRecord(round: number)
        if let r = startRound(number, &report) {
            runOps(r, started: started, budget: budget, &report, &record)
            endRound(r, &report, &record)
        }
        let system = systemFree - memory.system.allocator.freeFrames
        let device = deviceFree - memory.deviceFreeFrames
        if system != 0 || device != 0 || swap.usedSlots != 0 {
            violation(
                &report, number, nil, nil,
                "not returned after teardown: \(system) system frames, \(device) device frames, \(swap.usedSlots) swap slots"
            )
        }
        guard let onRound else { return }
        record.ops = report.totalOps - opsBefore
        record.totalOps = report.totalOps
        record.seconds = Double(monotonicNanoseconds() - started) / 1e9
        record.residentKiB = Self.residentKiB()
        record.violations = report.violationCount
        onRound(record)
    }

    /// The round's workload (a policy drawn from its seed), injector, devices and mutators; nil, with a
    /// violation, when the range cannot be built.
    func startRound(_ number: Int, _ report: inout Report) -> Round? {
        let seed = configuration.seed &+ UInt64(number) &* 0x9E37_79B9_7F4A_7C15
        var run = RunConfig()
        run.pages = configuration.pages
        run.windowPages = PageSize.pmdPages
        run.mix = Self.mix
        run.thp = 0.5
        run.verify = true
        run.counters = []
        run.devices = configuration.devices
        var policy = SplitMix64(seed: seed)
        run.splitPolicy = policy.next() & 1 == 0 ? .afterIsolation : .beforeCollect
        run.selfInvalidation = policy.next() & 1 == 0 ? .skip : .bump
        let w: Workload
        do {
            let placement = self.placement
            var pin: (@Sendable () -> Void)?
            if placement.node != nil { pin = { @Sendable in _ = placement.pinCallingThread() } }
            w = try Workload(memory: memory, swap: swap, config: run, seed: seed, copyWorkerHook: pin)
        } catch {
            violation(&report, number, 0, nil, "building the round's range: \(error)")
            return nil
        }
        let injector = FaultInjector(configuration.inject, seed: seed)
        w.mm.injector = injector
        for (i, d) in w.devices.enumerated() {
            d.concurrentJobs = configuration.jobs > 1
            d.setAllocationFailure(
                FailureInjection(
                    order0: configuration.deviceSmallFail, order9: configuration.deviceLargeFail,
                    seed: seed ^ 0x6465_7669_6365 &+ UInt64(i)))
        }
        return Round(
            number: number, w: w, injector: injector,
            mutators: Mutators(workload: w, count: configuration.mutators, seed: seed, placement: placement), seed: seed
        )
    }

    /// The round's ops until its op count, the time or op budget, a stop or a violation, with the
    /// invariant checker after each.
    func runOps(_ r: Round, started: UInt64, budget: UInt64, _ report: inout Report, _ record: inout RoundRecord) {
        let pins = r.w.pinReferences
        for opIndex in 1...max(1, configuration.opsPerRound) {
            if monotonicNanoseconds() - started >= budget { break }
            if let cap = configuration.maxOps, report.totalOps >= cap { break }
            if shouldStop() {
                report.interrupted = true
                break
            }
            let op = pick(r)
            let opStarted = monotonicNanoseconds()
            let limit = UInt64(configuration.opTimeLimit * 1e9)
            opDeadline = opStarted &+ limit
            let problem = perform(op, r, &report)
            let opEnded = monotonicNanoseconds()
            opDeadline = .max
            if opEnded - opStarted >= limit {
                let seconds = Summary.fixed(Double(opEnded - opStarted) / 1e9, 1)
                violation(
                    &report, r.number, opIndex, op,
                    "the op ran \(seconds) s (limit \(Summary.fixed(configuration.opTimeLimit, 1)) s): a fault that makes no progress"
                )
            }
            report.ops[Op.allCases.firstIndex(of: op)!] += 1
            collectInjectedStores(r, base: r.w.start, &report)
            if let problem { violation(&report, r.number, opIndex, op, problem) }
            for line in Invariants.check(r.spaces, devices: r.w.devices, knownReferences: pins) {
                violation(&report, r.number, opIndex, op, "invariant: \(line)")
            }
            let opSeconds = Double(opEnded - opStarted) / 1e9
            record.opSeconds += opSeconds
            record.slowestOpSeconds = max(record.slowestOpSeconds, opSeconds)
            record.invariantSeconds += Double(monotonicNanoseconds() - opEnded) / 1e9
            onProgress?(
                Progress(
                    round: r.number, ops: report.totalOps, seconds: Double(monotonicNanoseconds() - started) / 1e9,
                    violations: report.violationCount))
            if report.violationCount > 0 { break }
        }
    }

    /// The end of the round: content wherever each page lives, copies verified, then the teardown.
    func endRound(_ r: Round, _ report: inout Report, _ record: inout RoundRecord) {
        let w = r.w
        if let child = r.forked {
            child.teardown()
            r.forked = nil
        }
        w.mm.injector = nil
        for p in FaultInjector.Point.allCases { report.injected[p.rawValue] += r.injector.injected(p) }
        record.deviceAllocFailures = w.devices.reduce(0) { $0 + $1.stats.allocationFailures.load(ordering: .relaxed) }
        report.deviceAllocFailures += record.deviceAllocFailures
        report.mutatorStores += r.mutators.finish().stores
        if let failure = r.mutators.startFailure {
            violation(&report, r.number, nil, nil, "a mutator thread did not start: \(failure)")
        }
        record.systemFreeAtCheck = memory.system.allocator.freeFrames
        let checkStarted = monotonicNanoseconds()
        let found = w.checkContent(
            expectedStamp: r.mutators.expectedStamp, acceptsInjected: { k, v in v == r.injectedStamp[k] })
        record.checkSeconds = Double(monotonicNanoseconds() - checkStarted) / 1e9
        record.slowestReadSeconds = Double(found.slowestReadNanoseconds) / 1e9
        record.checkReadRetries = found.busyRetries
        report.checkReadRetries += found.busyRetries
        if !found.unreadable.isEmpty {
            violation(
                &report, r.number, nil, nil,
                "the device could not read \(found.unreadable.count) pages, first \(found.unreadable[0]) (\(found.unreadableError.map { "\($0)" } ?? "?")); \(Self.unreadablePage(w, found.unreadable))"
            )
        }
        if !found.corrupt.isEmpty {
            violation(
                &report, r.number, nil, nil,
                "\(found.corrupt.count) pages with wrong content, first \(found.corrupt.prefix(5)); \(found.firstCorruption ?? "")"
            )
        }
        if !found.lost.isEmpty {
            violation(
                &report, r.number, nil, nil,
                "\(found.lost.count) pages lost their mutators' last stamp, first \(found.lost.prefix(5))")
        }
        let verifyFailures = w.devices.reduce(0) { $0 + $1.stats.verifyFailures.load(ordering: .relaxed) }
        if verifyFailures > 0 {
            violation(&report, r.number, nil, nil, "\(verifyFailures) copied pages differed from their source")
        }
        w.tearDown()
    }

    /// The process's resident set (`/proc/self/statm`, second field, in pages) in KiB; 0 when unreadable.
    static func residentKiB() -> Int {
        guard let fields = Sysfs.readLine("/proc/self/statm")?.split(separator: " "), fields.count > 1,
            let pages = Int(fields[1])
        else { return 0 }
        return pages * PageSize.bytes / 1024
    }

    /// The first of `pages` the device cannot read on its own, with its error and the state of the
    /// CPU's entry for it (`mm.snapshot`), for a violation's message.
    static func unreadablePage(_ w: Workload, _ pages: [Int]) -> String {
        for k in pages {
            do throws(MirrorError) {
                _ = try w.device.read(w.address(k), pages: 1)
            } catch {
                return
                    "page \(k) alone: \(error), CPU entry \(w.mm.snapshot(w.address(k), pages: 1)[0]) (\(w.kinds[k]))"
            }
        }
        return "each page reads alone"
    }

    /// Every page state, so every op meets every kind of entry.
    static let mix = try! Mix.parse("none=0.1,zero=0.1,present=0.35,cow=0.1,swap=0.15,device=0.15,pinned=0.05")

    func violation(_ report: inout Report, _ round: Int, _ op: Int?, _ kind: Op?, _ message: String) {
        report.violationCount += 1
        guard report.violations.count < Self.maxViolationLines else { return }
        let at = op.map { " op \($0)" + (kind.map { " (\($0.rawValue))" } ?? "") } ?? " end"
        report.violations.append("seed \(configuration.seed) round \(round)\(at): \(message)")
    }

    func pick(_ r: Round) -> Op {
        let total = Op.allCases.reduce(0) { $0 + $1.weight }
        var n = r.below(total)
        for op in Op.allCases {
            if n < op.weight { return op }
            n -= op.weight
        }
        return .unified
    }

    /// Moves what the injected CPU faults stored into the model: the last stamp per page, in the order
    /// the stores reached memory. `base`: where page 0 of the range is mapped now.
    func collectInjectedStores(_ r: Round, base: UInt64, _ report: inout Report) {
        let (stores, failures) = r.injector.takeCPUFaultStores()
        for s in stores {
            let k = Int((s.address &- base) >> PageSize.shift)
            guard s.address >= base, k < r.w.pages else {
                violation(
                    &report, r.number, nil, nil,
                    "an injected CPU store at 0x\(String(s.address, radix: 16)) outside the range")
                continue
            }
            r.injectedStamp[k] = s.stamp
            report.cpuFaultStores += 1
            if s.waited { report.cpuFaultWaits += 1 }
        }
        // A store that failed (an injected swap-in error on its way back, say) changed nothing.
        report.opsWithErrors += failures.count
    }

    /// A random window of `1`, `16`, `64` or `512` pages, aligned to its size.
    func window(_ r: Round) -> (first: Int, pages: Int) {
        let size = [1, 16, 64, 512][r.below(4)]
        return (r.below(r.w.pages / size) * size, size)
    }

    /// A random run of up to `most` pages inside one VMA of the range.
    func run(_ r: Round, most: Int) -> (first: Int, pages: Int) {
        let w = r.w
        let first = r.below(w.pages)
        var n = 1 + r.below(most)
        if let vma = w.mm.vma(containing: w.address(first)) {
            n = min(n, pageCount(w.address(first), vma.end), w.pages - first)
        }
        return (first, max(1, min(n, w.pages - first)))
    }

    /// Does one op; returns a violation it saw itself (an op that must not fail did), or nil.
    func perform(_ op: Op, _ r: Round, _ report: inout Report) -> String? {
        let w = r.w
        switch op {
        case .unified, .faultThenMigrate, .migrateThenFault:
            report.opsWithErrors += makeResident(op.strategy!, r)
        case .toSystem:
            let (first, n) = window(r)
            let device = pickDevice(r)
            r.mutators.start()
            let result = device.migrateToSystem(w.address(first), pages: n)
            r.mutators.finish()
            if result.errno != 0 { report.opsWithErrors += 1 }
        case .cpuFault:
            r.mutators.start()
            var failed = 0
            for _ in 0..<16 {
                let k = r.below(w.pages)
                do {
                    _ = try w.mm.load(
                        UInt64.self, from: w.address(k) + Workload.stampOffset, signalPending: signalPending)
                } catch { failed += 1 }
            }
            r.mutators.finish()
            if failed > 0 { report.opsWithErrors += 1 }
        case .release:
            let device = pickDevice(r)
            r.mutators.start()
            device.release()
            r.mutators.finish()
        case .swapOut:
            let (first, n) = run(r, most: 64)
            r.mutators.start()
            defer { r.mutators.finish() }
            do {
                _ = try w.mm.swapOut(w.address(first), pages: n)
            } catch {
                return "swap-out of \(n) pages at page \(first): \(error)"
            }
        case .fork: return forkOrTearDown(r, &report)
        case .munmap: return unmapAndRestore(r)
        case .mremap: return remapAndBack(r, &report)
        case .mprotect: return migrateReadOnly(r, &report)
        }
        return nil
    }

    /// `fork`: a child that writes into some of its copy-on-write pages (beyond the checked bytes:
    /// the parent's must not change), or, when the round has one, its teardown.
    private func forkOrTearDown(_ r: Round, _ report: inout Report) -> String? {
        let w = r.w
        if let child = r.forked {
            child.teardown()
            r.forked = nil
            return nil
        }
        do {
            let child = try w.mm.fork()
            r.forked = child
            for _ in 0..<8 {
                let k = r.below(w.pages)
                do { try child.store(r.rng.next() | 1, at: w.address(k) + 512, signalPending: signalPending) } catch {
                    report.opsWithErrors += 1
                }
            }
        } catch {
            return "fork: \(error)"
        }
        return nil
    }

    /// `munmap` of a run of pages, a fresh `mmap` in its place, and the process storing the pages'
    /// content back (see the type's doc).
    private func unmapAndRestore(_ r: Round) -> String? {
        let w = r.w
        let (first, n) = run(r, most: 32)
        do {
            try w.mm.munmap(w.address(first), length: n * PageSize.bytes)
            _ = try w.mm.mmap(length: n * PageSize.bytes, protection: .readWrite, at: w.address(first))
        } catch {
            return "munmap and mmap of \(n) pages at page \(first): \(error)"
        }
        for k in first..<(first + n) {
            do {
                if w.kinds[k].isWritten {
                    let (a, b) = w.header(k)
                    try w.mm.store(a, at: w.address(k))
                    try w.mm.store(b, at: w.address(k) + 8)
                }
                if r.mutators.expectedStamp(k) != 0 {
                    try w.mm.store(r.mutators.expectedStamp(k), at: w.address(k) + Workload.stampOffset)
                }
                if r.injectedStamp[k] != 0 {
                    try w.mm.store(r.injectedStamp[k], at: w.address(k) + Workload.injectedStampOffset)
                }
            } catch {
                return "storing page \(k) back after munmap: \(error)"
            }
        }
        return nil
    }

    /// `mremap` of a run of pages to a free target (2 MiB aligned, so whole huge PMDs can move), the
    /// moved headers read there, and back.
    private func remapAndBack(_ r: Round, _ report: inout Report) -> String? {
        let w = r.w
        let (first, n) = run(r, most: r.below(4) == 0 ? 512 : 64)
        let length = n * PageSize.bytes
        do {
            let target = try w.mm.mmap(length: length, protection: .readWrite)
            try w.mm.munmap(target, length: length)
            let moved = try w.mm.mremap(w.address(first), oldLength: length, newLength: length, to: target)
            var problem: String?
            for j in 0..<min(n, 8) {
                let k = first + j
                guard let h = try? w.mm.load(UInt64.self, from: pageAddress(moved, j), signalPending: signalPending)
                else { continue }
                if h != (w.kinds[k].isWritten ? w.header(k).0 : 0) {
                    problem = "page \(k) moved by mremap reads header \(h)"
                }
            }
            collectInjectedStores(r, base: moved &- addressOfPage(UInt64(first)), &report)
            _ = try w.mm.mremap(moved, oldLength: length, newLength: length, to: w.address(first))
            return problem
        } catch {
            return "mremap of \(n) pages at page \(first) and back: \(error)"
        }
    }

    /// `mprotect` of a window read-only for one migration with a random strategy, then restored.
    private func migrateReadOnly(_ r: Round, _ report: inout Report) -> String? {
        let w = r.w
        var (first, n) = window(r)
        if let vma = w.mm.vma(containing: w.address(first)) { n = max(1, min(n, pageCount(w.address(first), vma.end))) }
        let length = n * PageSize.bytes
        do {
            try w.mm.mprotect(w.address(first), length: length, protection: .read)
            let strategy = Strategy.allCases[r.below(Strategy.allCases.count)]
            let result = w.device.makeResident(w.address(first), pages: n, strategy: strategy)
            if result.errno != 0 { report.opsWithErrors += 1 }
            try w.mm.mprotect(w.address(first), length: length, protection: .readWrite)
        } catch {
            return "mprotect of \(n) pages at page \(first): \(error)"
        }
        return nil
    }
}
