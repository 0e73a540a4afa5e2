import Glibc

/// Which way a repetition moves the range (`--direction`).
public enum Direction: String, Sendable, CaseIterable {
    /// System memory to the device, window by window, with the strategy.
    case toDevice = "to-device"
    /// To the device, then back through CPU faults on every page (`migrate_to_ram`): two rows.
    case roundTrip = "round-trip"

    /// The `direction` a row of this leg records: the way its pages moved (`to-device`, or `to-system`
    /// for the way back of a round trip; files from before read `round-trip` as `to-system`).
    public var rowLabel: String { self == .toDevice ? "to-device" : "to-system" }
}

/// The access the driver asks for when a strategy faults pages in (`--device-access`), the same for
/// all three strategies: it sets whether `HMM_PFN_REQ_WRITE` joins the strategy's `hmm_range_fault`
/// requests (`REQ_FAULT` for fault-then-migrate and migrate-then-fault, `REQ_FAULT | REQ_MIGRATE` for
/// unified).
public enum DeviceAccess: String, Sendable, CaseIterable {
    /// No `REQ_WRITE`, as the RFC's driver (Aug 2025 v1, `dmirror_fault_and_migrate_to_device`:
    /// `REQ_FAULT | REQ_MIGRATE`) and test_hmm's `HMM_DMIRROR_READ` ask: untouched pages read-fault to
    /// the zero page and migrate as source-less holes; copy-on-write stays shared.
    case read
    /// `REQ_WRITE` added: writable pages (copy-on-write broken, untouched pages allocated) before they
    /// migrate.
    case write

    /// The `hmm_range_fault` request bits this access adds to `REQ_FAULT`.
    var requestFlags: UInt64 { self == .write ? HMMPfn.requestFault | HMMPfn.requestWrite : HMMPfn.requestFault }
}

/// Where the range's `device` pages sit before the run (`--device-pages`), with several devices.
enum DevicePages: String, Sendable, CaseIterable {
    /// On the device that migrates their window: nothing to move.
    case own
    /// On the next device (window `w`'s on device `w + 1` of N): each op takes them from that device
    /// to system memory (`migrate_to_ram` of the other device's pagemap, through the fault
    /// `hmm_range_fault` takes, or the walk the strategy starts again) and then to its own device,
    /// as hmm-tests' `migrate_mixed` and `double_map` move pages between two dmirror devices.
    case other
}

/// Everything that defines a harness run, validated (`bench --strategy …`).
///
/// Built from the command line's option values by ``parse(_:)``, which checks every value and throws a
/// ``ConfigError`` naming the option, the value and what is allowed.
public struct RunConfig: Sendable, Equatable {
    /// `--strategy` as given (`all` or one strategy), and the strategies it means, in run order.
    public var strategyName = "unified"
    public var strategies: [Strategy] = [.unified]
    public var pages = 16384
    public var windowPages = 512
    public var mix = Mix.allPresent
    /// Fraction of the present pages' 2 MiB blocks backed by PMD-mapped 2 MiB folios.
    public var thp = 0.0
    /// Probability that the device fails a 2 MiB allocation.
    public var deviceLargeFail = 0.0
    var splitPolicy = Device.SplitPolicy.afterIsolation
    var selfInvalidation = Device.SelfInvalidation.skip
    public var direction = Direction.toDevice
    /// Copy workers per migration.
    public var threads = 1
    /// Op threads sharing the address space and its devices, taking windows from one queue
    /// (``WindowQueue``).
    public var jobs = 1
    /// CPU threads storing into the range while it migrates.
    public var mutators = 0
    public var reps = 5
    public var warmup = 1
    public var seed: UInt64 = 1
    public var systemNode = 0
    /// nil: the next node after the system node, or the system node on a one-node machine.
    public var deviceNode: Int?
    /// dmirror devices mirroring the address space, each with its own device pool; windows are
    /// assigned to them round-robin.
    public var devices = 1
    /// Each device's node (`--device-nodes`); nil: ``NodeTable/deviceNodes(count:systemNode:)``.
    public var deviceNodes: [Int]?
    /// Which device holds the range's `device` pages when the run starts.
    var devicePages = DevicePages.own
    public var backing = BackingRequest.auto
    public var counters = RunConfig.defaultCounters
    public var verify = false
    /// Injected failures (`--inject trylock=P,pin=P,invalidate=P,swapin=P,device4k=P`): probabilities
    /// per point of the address space's ``FaultInjector``, and of a 4 KiB device allocation failing.
    public var inject: [FaultInjector.Point: Double] = [:]
    var deviceSmallFail = 0.0
    /// The strategies' device access and pages per `hmm_range_fault` call (nil: the whole window).
    public var deviceAccess = DeviceAccess.read
    var faultPages: Int?
    /// The kernel per-page costs paid for real (`--costs`, `--tlb-flush`).
    public var costs = Costs.all
    /// Each device's `hmm_range_fault` retry budget per window. Not an option: runs use the kernel's
    /// fixed 1 s; in-process tests raise it, because on a busy 2-core test machine several jobs and
    /// a mutator can keep one window retrying past 1 s, an `-EBUSY` the tests do not look for.
    var rangeTimeoutNanoseconds = Device.defaultRangeTimeoutNanoseconds

    static let defaultCounters = [
        "cycles", "instructions", "cache-misses", "dTLB-load-misses", "page-faults", "context-switches",
    ]

    /// The options `parse` knows (names without the leading dashes), in ``RunOption/all``'s order.
    public static var optionNames: [String] { RunOption.all.map(\.name) }

    /// Largest range a run accepts: 64 GiB.
    static let maxPages = 1 << 24

    public init() {}

    /// Builds a configuration from option values (name without dashes → value as typed), each parsed
    /// by its ``RunOption`` in ``RunOption/all``'s order; options not given keep their defaults.
    /// `nodes`: the nodes with memory a node option may name (nil: this machine's). `verify` is a flag
    /// and set directly.
    /// - Throws: ``ConfigError`` for the first bad value.
    public static func parse(_ options: [String: String], nodes: [Int]? = nil) throws(ConfigError) -> RunConfig {
        for key in options.keys where RunOption.named(key) == nil {
            throw ConfigError(
                "--\(key) is not an option of a run; use one of \(optionNames.map { "--" + $0 }.joined(separator: ", "))"
            )
        }
        let known = nodes ?? NUMA.nodesWithMemory()
        var c = RunConfig()
        for option in RunOption.all {
            if let text = options[option.name] {
                try option.parse(&c, RunOption.Value(option: option.name, text: text, given: options, nodes: known))
            }
            try option.check?(c)
        }
        return c
    }

    /// `trylock=0.05,pin=0.01,device4k=0.01`, or empty.
    public var injectDescription: String {
        var parts = FaultInjector.Point.allCases.compactMap { p in inject[p].map { "\(p.name)=\(Mix.format($0))" } }
        if deviceSmallFail > 0 { parts.append("device4k=\(Mix.format(deviceSmallFail))") }
        return parts.joined(separator: ",")
    }

    /// `value` as an integer in `range`, else the error naming `--option`, the value and `what` it counts.
    static func integer(
        _ option: String, _ value: String, _ range: ClosedRange<Int>, _ what: String
    ) throws(ConfigError) -> Int {
        guard let n = Int(value), range.contains(n) else {
            throw ConfigError(
                "--\(option) '\(value)' is not allowed; use \(what): an integer from \(range.lowerBound) to \(range.upperBound)"
            )
        }
        return n
    }

    /// `value` as a number from 0 to 1, else the error naming `--option`, the value and `what` it is.
    static func fraction(_ option: String, _ value: String, _ what: String) throws(ConfigError) -> Double {
        guard let f = Double(value), f.isFinite, f >= 0, f <= 1 else {
            throw ConfigError("--\(option) '\(value)' is not allowed; use \(what): a number from 0 to 1")
        }
        return f
    }

    /// One repetition of one strategy in a run's order.
    struct Repetition: Sendable {
        public var strategy: Strategy
        /// 1-based among the warm-ups, or among the timed repetitions.
        public var number: Int
        public var warmup: Bool
        /// Every strategy of a repetition, in either engine, builds the same range from it.
        public var seed: UInt64
    }

    /// Warm-ups, then timed repetitions, the strategies interleaved repetition by repetition (so
    /// drift hits them alike).
    var schedule: [Repetition] {
        (0..<(warmup + reps)).flatMap { rep in
            strategies.map { strategy in
                Repetition(
                    strategy: strategy, number: rep < warmup ? rep + 1 : rep - warmup + 1, warmup: rep < warmup,
                    seed: seed &+ UInt64(rep) &* 0x9E37_79B9_7F4A_7C15)
            }
        }
    }

    /// The device node the run uses (the first device's).
    var resolvedDeviceNode: Int { resolvedDeviceNodes(table: .read())[0] }

    /// Each device's node: `--device-nodes`, else `--device-node` (or the farthest node) for one
    /// device, else round-robin over the other nodes with memory, farthest first.
    func resolvedDeviceNodes(table: NodeTable) -> [Int] {
        if let deviceNodes { return deviceNodes }
        if devices == 1 || deviceNode != nil {
            return Array(repeating: deviceNode ?? table.farthestNodeWithMemory(from: systemNode), count: devices)
        }
        return table.deviceNodes(count: devices, systemNode: systemNode)
    }

    /// Pages that must sit in swap at once.
    var swapPages: Int { mix.counts(pages: pages)[Int(PageKind.swap.rawValue)] }

    /// The memory a run needs: system pool (the range twice over, for copy-on-write copies and the way
    /// back, plus page tables, plus one backing page per device page with the driver cost, plus the
    /// huge zero folio's block), each device pool (one per device, each able to hold the whole range),
    /// swap area and page descriptors.
    var memoryNeeded: (system: Int, device: Int, swap: Int, total: Int) {
        let block = PageSize.pmdBytes
        func round(_ n: Int) -> Int { (n + block - 1) / block * block }
        let range = pages * PageSize.bytes
        let device = round(range + 4 * block)
        let backing = costs.contains(.driver) ? device : 0
        // One more block holds the huge zero folio, which read faults in the range's THP blocks map.
        let system = round(2 * range + (pages / PageSize.pmdPages + 64) * PageSize.bytes + 9 * block) + backing
        let swap = round(swapPages * PageSize.bytes + block)
        let descriptors = (system + device * devices) / PageSize.bytes * PhysicalMemory.descriptorSize
        return (system, device, swap, system + device * devices + swap + descriptors)
    }

    /// A one-line description of the settings (for logs and the summary).
    public var settingsLine: String {
        "pages \(pages), window \(windowPages), mix \(mix), thp \(Mix.format(thp)), device-large-fail \(Mix.format(deviceLargeFail)), split-policy \(splitPolicy.rawValue), "
            + "self-invalidation \(selfInvalidation.rawValue), direction \(direction.rawValue), threads \(threads), mutators \(mutators), "
            + "reps \(reps) (+\(warmup) warm-up), seed \(seed), costs \(costs)"
            + (injectDescription.isEmpty ? "" : ", inject \(injectDescription)")
            + ", device-access \(deviceAccess.rawValue)" + (faultPages.map { ", fault-pages \($0)" } ?? "")
            + (jobs > 1 ? ", jobs \(jobs)" : "")
            + (devices > 1 ? ", devices \(devices)" + (devicePages == .other ? ", device-pages other" : "") : "")
    }
}
