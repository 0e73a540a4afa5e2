/// The run options, in four groups whose concatenation is ``RunOption/all``; each entry's help text
/// names its default (``RunConfig``'s initial value).
extension RunOption {
    /// The range, its pages' states and how the strategies move it.
    static let workload: [RunOption] = [
        RunOption(
            "strategy", "unified, fault-then-migrate, migrate-then-fault or all (interleaved per repetition).",
            rebuilt: true
        ) { c, v throws(ConfigError) in
            c.strategies = try parseStrategies(v)
            c.strategyName = v.text
        },
        RunOption("pages", "4 KiB pages in the range (default 16384).", rebuilt: true) { c, v throws(ConfigError) in
            c.pages = try v.integer(1...RunConfig.maxPages, "a number of 4 KiB pages")
        },
        RunOption(
            "window-pages", "Pages per op, a divisor of --pages up to 512 (default 512).", rebuilt: true,
            check: { c throws(ConfigError) in
                guard c.windowPages <= c.pages, c.pages % c.windowPages == 0 else {
                    throw ConfigError(
                        "--window-pages \(c.windowPages) does not divide --pages \(c.pages); use a divisor of --pages from 1 to 512"
                    )
                }
            }
        ) { c, v throws(ConfigError) in
            c.windowPages = try v.integer(1...Device.migrationWindow, "pages per window (dmirror uses 512)")
        },
        RunOption(
            "mix", "STATE=FRACTION,... over none, zero, present, cow, swap, device, pinned (sum 1; default present=1).",
            rebuilt: true
        ) { c, v throws(ConfigError) in
            c.mix = try Mix.parse(v.text)
        },
        RunOption("thp", "Fraction of the present pages' 2 MiB blocks backed by THPs (default 0).", rebuilt: true) {
            c, v throws(ConfigError) in
            c.thp = try v.fraction("the fraction of 2 MiB blocks of present pages backed by THPs")
        },
        RunOption("device-large-fail", "Probability that a 2 MiB device allocation fails (default 0).", rebuilt: true) {
            c, v throws(ConfigError) in
            c.deviceLargeFail = try v.fraction("the probability that a 2 MiB device allocation fails")
        },
        RunOption("split-policy", "before-collect or after-isolation (default).", rebuilt: true) {
            c, v throws(ConfigError) in
            c.splitPolicy = try v.choice("a split policy", "before-collect or after-isolation")
        },
        RunOption("self-invalidation", "skip (default, as dmirror) or bump.", rebuilt: true) {
            c, v throws(ConfigError) in
            c.selfInvalidation = try v.choice(nil, "skip or bump")
        },
        RunOption("direction", "to-device (default) or round-trip (back through CPU faults: a second row).") {
            c, v throws(ConfigError) in
            c.direction = try v.choice("a direction", "to-device or round-trip")
        },
    ]

    /// The threads of a run, its repetitions and its seed.
    static let threadsAndRepetitions: [RunOption] = [
        RunOption("threads", "Copy worker threads (default 1).", rebuilt: true) { c, v throws(ConfigError) in
            c.threads = try v.integer(1...256, "copy worker threads")
        },
        RunOption(
            "jobs", "Op threads sharing the address space and its devices, taking windows from one queue (default 1)."
        ) { c, v throws(ConfigError) in
            c.jobs = try v.integer(1...256, "op threads sharing the address space")
        },
        RunOption("mutators", "CPU threads storing into the range during the run (default 0).", rebuilt: true) {
            c, v throws(ConfigError) in
            c.mutators = try v.integer(0...64, "CPU threads storing into the range")
        },
        RunOption("reps", "Timed repetitions (default 5).") { c, v throws(ConfigError) in
            c.reps = try v.integer(1...100_000, "timed repetitions")
        },
        RunOption("warmup", "Untimed repetitions first (default 1).") { c, v throws(ConfigError) in
            c.warmup = try v.integer(0...1000, "untimed repetitions first")
        },
        RunOption("seed", "Seed of the workload and injected failures (default 1).", rebuilt: true) {
            c, v throws(ConfigError) in
            let parsed = v.text.hasPrefix("0x") ? UInt64(v.text.dropFirst(2), radix: 16) : UInt64(v.text)
            guard let s = parsed else {
                throw v.error("is not allowed; use an unsigned 64-bit integer (decimal or 0x hex)")
            }
            c.seed = s
        },
    ]
}

extension RunOption {
    /// Where the pools live, how many devices there are, what backs the pools.
    static let placement: [RunOption] = [
        RunOption("system-node", "NUMA node of system memory (default 0).") { c, v throws(ConfigError) in
            c.systemNode = try v.node()
        },
        RunOption("device-node", "NUMA node of device memory (default: the next node, or the system node on one node).")
        { c, v throws(ConfigError) in
            c.deviceNode = try v.node()
        },
        RunOption(
            "devices",
            "dmirror devices mirroring the range, each with its own device pool; windows go to them round-robin (default 1)."
        ) { c, v throws(ConfigError) in
            c.devices = try v.integer(1...16, "dmirror devices, each with its own device pool")
        },
        RunOption(
            "device-nodes",
            "Each device's node, comma-separated (default: round-robin over the other nodes with memory, farthest first)."
        ) { c, v throws(ConfigError) in
            try parseDeviceNodes(v, into: &c)
        },
        RunOption(
            "device-pages",
            "With several devices, where the mix's device pages start: own (default: on the device that migrates their window) or other (on the next device: device to system to device).",
            check: { c throws(ConfigError) in
                if c.devicePages == .other, c.devices < 2 {
                    throw ConfigError(
                        "--device-pages other puts pages on another device; it needs --devices 2 or more (or --device-nodes with two nodes or more)"
                    )
                }
            }
        ) { c, v throws(ConfigError) in
            c.devicePages = try v.choice(nil, "own or other")
        },
        RunOption("backing", "auto (default), hugetlb, thp or 4k.") { c, v throws(ConfigError) in
            c.backing = try v.choice("a backing", "one of auto, hugetlb, thp, 4k")
        },
    ]

    /// What is counted, what fails on purpose, how the strategies fault and what the model pays.
    static let measurement: [RunOption] = [
        RunOption(
            "counters",
            "perf events by libpfm4 name, comma-separated, or none (default cycles,instructions,cache-misses,dTLB-load-misses,page-faults,context-switches)."
        ) { c, v throws(ConfigError) in
            c.counters = try parseCounters(v)
        },
        RunOption(
            "inject",
            "Injected failures: POINT=PROBABILITY,... over trylock, pin, invalidate, swapin, cpufault, device4k (seeded by --seed)."
        ) { c, v throws(ConfigError) in
            try parseInjection(v, into: &c)
        },
        RunOption(
            "device-access",
            "The access the strategies' hmm_range_fault asks for: read (default: REQ_FAULT, and REQ_FAULT|REQ_MIGRATE for unified, as the RFC's driver and test_hmm's READ) or write (REQ_WRITE added).",
            rebuilt: true
        ) { c, v throws(ConfigError) in
            c.deviceAccess = try v.choice(nil, "read or write")
        },
        RunOption(
            "fault-pages",
            "Pages per hmm_range_fault call when a strategy faults (default: the window; test_hmm's READ uses 32).",
            rebuilt: true
        ) { c, v throws(ConfigError) in
            c.faultPages = try v.integer(1...c.windowPages, "pages per hmm_range_fault call, at most --window-pages")
        },
        RunOption(
            "costs", "Kernel per-page costs paid for real: all (default), none, or a list of flush, lru, driver.",
            rebuilt: true
        ) { c, v throws(ConfigError) in
            guard let costs = Costs(parsing: v.text) else {
                throw v.error(
                    "is not allowed; use all, none, or a comma-separated list of \(Costs.names.map(\.0).joined(separator: ", "))"
                )
            }
            c.costs = costs
        },
        RunOption("tlb-flush", "real (default: each modelled TLB flush is a host shootdown) or count (counted only).") {
            c, v throws(ConfigError) in
            try parseTLBFlush(v, into: &c)
        },
    ]
}
