import Testing

@testable import HMMLab

@Suite("RunOption: each run option declared once, parsed and rebuilt from the one table")
struct RunOptionTests {
    /// Bad option values and the exact one-line message each gives (nodes with memory: 0 and 1).
    static let messages: [([String: String], String)] = [
        (
            ["bogus": "1"],
            "--bogus is not an option of a run; use one of --strategy, --pages, --window-pages, --mix, --thp, --device-large-fail, --split-policy, --self-invalidation, --direction, --threads, --jobs, --mutators, --reps, --warmup, --seed, "
                + "--system-node, --device-node, --devices, --device-nodes, --device-pages, --backing, --counters, --inject, --device-access, --fault-pages, --costs, --tlb-flush"
        ),
        (
            ["strategy": "x"],
            "--strategy 'x' is not a strategy; use one of fault-then-migrate, migrate-then-fault, unified, all"
        ),
        (["pages": "0"], "--pages '0' is not allowed; use a number of 4 KiB pages: an integer from 1 to 16777216"),
        (["pages": "100"], "--window-pages 512 does not divide --pages 100; use a divisor of --pages from 1 to 512"),
        (
            ["window-pages": "3"],
            "--window-pages 3 does not divide --pages 16384; use a divisor of --pages from 1 to 512"
        ),
        (
            ["window-pages": "1024"],
            "--window-pages '1024' is not allowed; use pages per window (dmirror uses 512): an integer from 1 to 512"
        ),
        (["mix": "present=0.5"], "--mix 'present=0.5': fractions sum to 0.5; they must sum to 1"),
        (
            ["thp": "2"],
            "--thp '2' is not allowed; use the fraction of 2 MiB blocks of present pages backed by THPs: a number from 0 to 1"
        ),
        (
            ["device-large-fail": "x"],
            "--device-large-fail 'x' is not allowed; use the probability that a 2 MiB device allocation fails: a number from 0 to 1"
        ),
        (["split-policy": "m"], "--split-policy 'm' is not a split policy; use before-collect or after-isolation"),
        (["self-invalidation": "m"], "--self-invalidation 'm' is not allowed; use skip or bump"),
        (["direction": "m"], "--direction 'm' is not a direction; use to-device or round-trip"),
        (["device-access": "m"], "--device-access 'm' is not allowed; use read or write"),
        (
            ["fault-pages": "0"],
            "--fault-pages '0' is not allowed; use pages per hmm_range_fault call, at most --window-pages: an integer from 1 to 512"
        ),
        (
            ["fault-pages": "600"],
            "--fault-pages '600' is not allowed; use pages per hmm_range_fault call, at most --window-pages: an integer from 1 to 512"
        ),
        (
            ["window-pages": "64", "fault-pages": "65"],
            "--fault-pages '65' is not allowed; use pages per hmm_range_fault call, at most --window-pages: an integer from 1 to 64"
        ),
        (["costs": "x"], "--costs 'x' is not allowed; use all, none, or a comma-separated list of flush, lru, driver"),
        (["tlb-flush": "x"], "--tlb-flush 'x' is not allowed; use real or count"),
        (["costs": "none", "tlb-flush": "real"], "--tlb-flush real contradicts --costs none; give one of them"),
        (["threads": "0"], "--threads '0' is not allowed; use copy worker threads: an integer from 1 to 256"),
        (
            ["jobs": "x"],
            "--jobs 'x' is not allowed; use op threads sharing the address space: an integer from 1 to 256"
        ),
        (
            ["mutators": "65"],
            "--mutators '65' is not allowed; use CPU threads storing into the range: an integer from 0 to 64"
        ),
        (["reps": "0"], "--reps '0' is not allowed; use timed repetitions: an integer from 1 to 100000"),
        (
            ["warmup": "1001"],
            "--warmup '1001' is not allowed; use untimed repetitions first: an integer from 0 to 1000"
        ),
        (["seed": "-1"], "--seed '-1' is not allowed; use an unsigned 64-bit integer (decimal or 0x hex)"),
        (["seed": "0xZZ"], "--seed '0xZZ' is not allowed; use an unsigned 64-bit integer (decimal or 0x hex)"),
        (["system-node": "9"], "--system-node '9' is not a node with memory on this machine; use one of 0, 1"),
        (["device-node": "x"], "--device-node 'x' is not a node with memory on this machine; use one of 0, 1"),
        (
            ["devices": "0"],
            "--devices '0' is not allowed; use dmirror devices, each with its own device pool: an integer from 1 to 16"
        ),
        (["device-pages": "x"], "--device-pages 'x' is not allowed; use own or other"),
        (
            ["device-pages": "other"],
            "--device-pages other puts pages on another device; it needs --devices 2 or more (or --device-nodes with two nodes or more)"
        ),
        (
            ["device-nodes": "0,9"],
            "--device-nodes '0,9': '9' is not a node with memory on this machine; use a comma-separated list of 0, 1"
        ),
        (
            ["device-nodes": "0", "device-node": "0"],
            "--device-nodes '0' and --device-node both name device nodes; give one of them"
        ),
        (
            ["device-nodes": "0,1", "devices": "3"],
            "--device-nodes '0,1' names 2 nodes for --devices 3; give one node per device"
        ),
        (
            ["device-nodes": "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0"],
            "--device-nodes '0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0' names 17 nodes; use at most 16 (one per device)"
        ),
        (["backing": "x"], "--backing 'x' is not a backing; use one of auto, hugetlb, thp, 4k"),
        (["counters": "cycles,cycles"], "--counters 'cycles,cycles' names an event twice"),
        (
            ["counters": "nosuch"],
            "--counters: 'nosuch' is not a perf event libpfm4 knows; use names such as page-faults, context-switches, cycles, dTLB-load-misses (or none)"
        ),
        (
            ["inject": "x"],
            "--inject 'x': 'x' is not POINT=PROBABILITY; use points trylock, pin, invalidate, swapin, cpufault, device4k"
        ),
        (["inject": "pin=2"], "--inject 'pin=2': probability '2' of pin is not a number from 0 to 1"),
        (
            ["inject": "bogus=0.1"],
            "--inject 'bogus=0.1': 'bogus' is not an injection point; use trylock, pin, invalidate, swapin, cpufault, device4k"
        ),
        (["tlb-flush": "count", "costs": "flush"], "--tlb-flush count contradicts --costs flush; give one of them"),
    ]

    @Test("each bad value gives the message it always gave", arguments: messages)
    func message(_ bad: ([String: String], String)) {
        #expect(throws: ConfigError(bad.1)) { try RunConfig.parse(bad.0, nodes: [0, 1]) }
    }

    @Test("the table's names: each once, the order of --help, and RunConfig.optionNames")
    func names() {
        let names = RunOption.all.map(\.name)
        #expect(Set(names).count == names.count)
        #expect(RunConfig.optionNames == names)
        #expect(names.first == "strategy" && names.last == "tlb-flush")
        for option in RunOption.all {
            #expect(RunOption.named(option.name)?.name == option.name && !option.help.isEmpty)
        }
    }

    @Test("bench report rebuilds the options it did, from their columns, against what a default run writes there")
    func rebuilt() throws {
        let options = Report.options.map { "\($0.column) \($0.option) \($0.defaultValue)" }
        #expect(
            options == [
                "engine engine model", "strategy strategy ", "pages pages 16384", "window_pages window-pages 512",
                "mix mix present=1",
                "thp thp 0", "device_large_fail device-large-fail 0", "split_policy split-policy after-isolation",
                "self_invalidation self-invalidation skip", "threads threads 1", "mutators mutators 0", "seed seed 1",
                "device_access device-access read",
                "fault_pages fault-pages window", "costs costs flush,lru,driver",
            ])
        for option in RunOption.all where option.rebuilt {
            #expect(ResultRow.columns.contains(option.column), "\(option.name)")
        }
    }

    @Test("each rebuilt option's default, given as a value, is the default configuration (strategy is always given)")
    func defaults() throws {
        for o in Report.options where !["engine", "strategy", "fault-pages"].contains(o.option) {
            #expect(
                try RunConfig.parse([o.option: o.defaultValue], nodes: [0]) == RunConfig(),
                "\(o.option) \(o.defaultValue)")
        }
        #expect(try RunConfig.parse([:], nodes: [0]).faultPages == nil, "fault-pages: the window")
    }
}
