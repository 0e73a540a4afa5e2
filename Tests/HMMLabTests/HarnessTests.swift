import Testing

@testable import HMMLab

@Suite("Harness: configuration, workloads, runs")
struct HarnessTests {
    @Test("defaults are the documented ones")
    func defaults() throws {
        let c = try RunConfig.parse([:], nodes: [0])
        #expect(c.strategies == [.unified] && c.pages == 16384 && c.windowPages == 512 && c.mix == .allPresent)
        #expect(c.reps == 5 && c.warmup == 1 && c.threads == 1 && c.mutators == 0 && c.direction == .toDevice)
        #expect(
            c.counters == [
                "cycles", "instructions", "cache-misses", "dTLB-load-misses", "page-faults", "context-switches",
            ])
        let all = try RunConfig.parse(["strategy": "all", "counters": "none"], nodes: [0])
        #expect(all.strategies == Strategy.allCases && all.counters.isEmpty)
    }

    @Test("bad values name the option, the value and what is allowed")
    func messages() {
        func message(_ options: [String: String]) -> String {
            do {
                _ = try RunConfig.parse(options, nodes: [0, 1])
                return ""
            } catch {
                return error.message
            }
        }
        #expect(
            message(["pages": "-3"])
                == "--pages '-3' is not allowed; use a number of 4 KiB pages: an integer from 1 to 16777216")
        #expect(
            message(["device-node": "2"])
                == "--device-node '2' is not a node with memory on this machine; use one of 0, 1")
        #expect(message(["mix": "present=0.7,swap=0.2"]).contains("sum to 0.9"))
        #expect(message(["strategy": "x"]).contains("fault-then-migrate, migrate-then-fault, unified, all"))
        #expect(message(["nosuch": "1"]).contains("--nosuch is not an option"))
        #expect(message(["pages": "1000", "window-pages": "512"]).contains("does not divide"))
        #expect(
            message(["inject": "lock=0.1"]).contains(
                "'lock' is not an injection point; use trylock, pin, invalidate, swapin, cpufault, device4k"))
        #expect(message(["inject": "pin=2"]).contains("not a number from 0 to 1"))
    }

    @Test("a mix parses, prints back, and splits a range into counts that sum to it")
    func mixCounts() throws {
        let mix = try Mix.parse("present=0.5, swap=0.25,none=0.25")
        #expect(mix.description == "none=0.25,present=0.5,swap=0.25")
        #expect(mix.counts(pages: 10).reduce(0, +) == 10)
        let thirds = try Mix.parse("present=0.333334,zero=0.333333,cow=0.333333")
        #expect(thirds.counts(pages: 1000).reduce(0, +) == 1000)
    }

    @Test("CSV: quoted fields with commas, quotes and newlines survive a round trip; a truncated quote is an error")
    func csvQuoting() throws {
        let fields = ["a", "b,c", "say \"hi\"", "two\nlines", ""]
        let parsed = try CSV.parse(CSV.line(fields) + CSV.line(["x", "y", "z", "w", "v"]))
        #expect(parsed == [fields, ["x", "y", "z", "w", "v"]])
        #expect(throws: CSV.ParseError.self) { try CSV.parse("a,\"b\nc") }
    }

    @Test("a workload puts every page in the state its mix asks for")
    func workloadStates() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 64 << 20, deviceBytes: 16 << 20, backing: .small))
        let swap = try SwapArea(bytes: 8 << 20, backing: .small)
        var config = try RunConfig.parse(
            [
                "pages": "2048", "mix": "none=0.1,zero=0.1,present=0.3,cow=0.1,swap=0.1,device=0.1,pinned=0.2",
                "thp": "1",
            ], nodes: [0])
        config.verify = true
        let w = try Workload(memory: memory, swap: swap, config: config, seed: 7)
        let states = w.mm.snapshot(w.start, pages: w.pages)
        let expected: [PageKind: PageState] = [
            .none: .none, .zero: .zero, .present: .write, .cow: .read, .swap: .swap, .device: .devicePrivate,
            .pinned: .write,
        ]
        for k in 0..<w.pages {
            #expect(states[k] == expected[w.kinds[k]], "page \(k) is \(w.kinds[k]) but its entry is \(states[k])")
        }
        #expect(w.built == config.mix.counts(pages: 2048))
        #expect(w.thpBlockSet.count == 1, "0.3 of 2048 present pages fill one 2 MiB block")
        w.tearDown()
        #expect(memory.system.allocator.freeFrames > 0)
    }

    @Test("the invariant checker accepts a built workload with its pins declared, and finds an undeclared reference")
    func invariants() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 32 << 20, deviceBytes: 8 << 20, backing: .small))
        let config = try RunConfig.parse(["pages": "512", "mix": "present=0.5,pinned=0.25,device=0.25"], nodes: [0])
        let w = try Workload(memory: memory, swap: nil, config: config, seed: 5)
        var pins: [Pfn: Int32] = [:]
        for p in w.pins { pins[memory.folio(containing: p).pfn, default: 0] += 1 }
        #expect(Invariants.check([w.mm], devices: [w.device], knownReferences: pins) == [])
        #expect(
            Invariants.check([w.mm], devices: [w.device]).count == w.pins.count,
            "each pin is a reference no mapping explains")
        w.tearDown()
    }

    @Test(
        "the content check reads every page through the device; a window whose reads keep ending in -EBUSY (the budget spent) is tried 4 times, then unreadable with that error"
    )
    func contentCheckBusy() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 32 << 20, deviceBytes: 8 << 20, backing: .small))
        let config = try RunConfig.parse(["pages": "1024", "mix": "none=0.25,present=0.5,device=0.25"], nodes: [0])
        let w = try Workload(memory: memory, swap: nil, config: config, seed: 9)
        defer { w.tearDown() }
        let clean = w.checkContent(expectedStamp: { _ in 0 })
        #expect(clean.corrupt.isEmpty && clean.unreadable.isEmpty && clean.busyRetries == 0)
        try w.mm.munmap(w.start, length: w.pages * PageSize.bytes)
        _ = try w.mm.mmap(length: w.pages * PageSize.bytes, protection: .readWrite, at: w.start)
        w.device.rangeTimeoutNanoseconds = 0
        let busy = w.checkContent(expectedStamp: { _ in 0 })
        #expect(busy.unreadable == Array(0..<w.pages) && busy.unreadableError == .errno(Errno.EBUSY))
        #expect(busy.busyRetries == (Workload.busyReadTries - 1) * (w.pages / Device.migrationWindow))
    }

    @Test("THP blocks are PMD-mapped 2 MiB folios")
    func workloadThp() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 64 << 20, deviceBytes: 16 << 20, backing: .small))
        let config = try RunConfig.parse(["pages": "2048", "mix": "present=1", "thp": "0.5"], nodes: [0])
        let w = try Workload(memory: memory, swap: nil, config: config, seed: 3)
        #expect(w.thpBlockSet.count == 2)
        for b in w.thpBlockSet {
            let pmd = w.mm.pageTable.pmdSlot(w.address(b * 512), allocate: false)
            #expect(pmd?.load().isHuge == true)
        }
        w.tearDown()
    }

    /// A small run in process: every strategy, both directions, with verify and a mutator.
    func run(_ options: [String: String]) throws -> (rows: [ResultRow], runner: Runner) {
        try runInProcess(options)
    }

    @Test(
        "all strategies over every page state, both ways, with mutators and two copy workers, read and write access: data intact, no store lost, nothing leaked",
        arguments: DeviceAccess.allCases)
    func everyStateWithMutators(access: DeviceAccess) throws {
        let (rows, _) = try run([
            "strategy": "all", "pages": "2048", "reps": "2", "direction": "round-trip", "mutators": "2", "threads": "2",
            "mix": "none=0.1,zero=0.1,present=0.3,cow=0.1,swap=0.2,device=0.1,pinned=0.1",
            "device-access": access.rawValue,
        ])
        #expect(rows.count == 12)
        for row in rows {
            #expect(row.verifyFailures == 0 && row.lostStores == 0, "\(row.strategy) \(row.direction) rep \(row.rep)")
        }
        #expect(rows.contains { $0.mutatorStores > 0 })
        #expect(
            rows.filter { $0.direction == "to-device" }.allSatisfy { $0.pagesSkipped >= 204 },
            "pinned pages stay behind")
    }

    @Test("walks per op as DESIGN.md says: present pages 2/1/1; with swap entries 2/3/1 plus restarts")
    func walkCounts() throws {
        let present = try run(["strategy": "all", "pages": "1024", "reps": "1"]).rows
        let walks = Dictionary(uniqueKeysWithValues: present.map { ($0.strategy, Double($0.walks) / Double($0.ops)) })
        #expect(walks == ["fault-then-migrate": 2, "migrate-then-fault": 1, "unified": 1])
        #expect(present.allSatisfy { $0.walkRestarts == 0 })
        let swapped = try run(["strategy": "all", "pages": "1024", "reps": "1", "mix": "present=0.9,swap=0.1"]).rows
        let s = Dictionary(uniqueKeysWithValues: swapped.map { ($0.strategy, $0) })
        #expect(s["fault-then-migrate"]!.walks == 4 && s["fault-then-migrate"]!.walkRestarts > 0)
        #expect(s["migrate-then-fault"]!.walks == 6)
        #expect(s["unified"]!.walks == 2 && s["unified"]!.walkRestarts > 0)
        #expect(swapped.allSatisfy { $0.swapins == 102 && $0.pagesSkipped == 0 })
        #expect(s["fault-then-migrate"]!.pagesMigrated == 1024 && s["unified"]!.pagesMigrated == 1024)
        // hmm_range_fault faults every page from the first swap entry to the end of the walk, and a
        // fault on a device-private page migrates it back (do_swap_page → migrate_to_ram): the second
        // collect moves those pages again.
        #expect(s["migrate-then-fault"]!.pagesMigrated > 1024)
    }

    @Test("THP with failing 2 MiB device allocations: split, counted, data intact, under both split policies")
    func thpSplits() throws {
        for policy in ["after-isolation", "before-collect"] {
            let rows = try run([
                "strategy": "all", "pages": "2048", "reps": "1", "thp": "1", "device-large-fail": "1",
                "split-policy": policy,
            ]).rows
            for row in rows {
                #expect(
                    row.thpMigrated == 0 && row.thpSplits == 4 && row.deviceAllocFails >= 4
                        && row.pagesMigrated == 2048, "\(policy) \(row.strategy)")
                #expect(row.verifyFailures == 0)
            }
        }
    }

    /// Each injection point, with a mutator storing all along: every page ends migrated whole or
    /// restored whole (verify and invariant checks clean, no lost store), and the failure shows in
    /// its count.
    static let injections: [(String, String)] = [
        ("trylock=0.05", "folio_lock_fails"), ("pin=0.05", "pages_skipped"), ("invalidate=0.1", "notifier_retries"),
        ("swapin=0.2", "failed_ops"), ("device4k=0.05", "device_alloc_fails"), ("cpufault=0.2", "cpu_faults"),
    ]

    @Test("injected failures leave every page whole and are counted", arguments: injections)
    func injected(_ c: (String, String)) throws {
        var config = try RunConfig.parse(
            [
                "strategy": "all", "pages": "2048", "reps": "2", "warmup": "0", "mutators": "1", "counters": "none",
                "direction": "round-trip",
                "mix": "present=0.8,swap=0.1,none=0.1", "inject": c.0,
            ], nodes: [0])
        config.verify = true
        config.backing = .small
        let runner = try Runner(config: config)
        var warnings: [String] = []
        runner.onWarning = { warnings.append($0) }
        let rows = try runner.run()
        #expect(warnings.filter { !$0.contains("-EBUSY") }.isEmpty, "\(warnings)")
        #expect(rows.allSatisfy { $0.verifyFailures == 0 && $0.lostStores == 0 }, "\(c.0)")
        #expect(runner.injected.reduce(0, +) > 0 || c.0.hasPrefix("device4k"))
        let toDevice = rows.filter { $0.direction == "to-device" }
        switch c.1 {
        case "folio_lock_fails": #expect(toDevice.reduce(0) { $0 + $1.folioLockFails } > 0)
        case "pages_skipped": #expect(toDevice.reduce(0) { $0 + $1.pagesSkipped } > 0)
        case "notifier_retries": #expect(toDevice.reduce(0) { $0 + $1.notifierRetries } > 0)
        case "failed_ops": #expect(runner.failedOps > 0 && toDevice.reduce(0) { $0 + $1.pagesSkipped } > 0)
        // Each injected store's stamp was checked as its page's final content by verify above.
        case "cpu_faults": #expect(runner.injected[FaultInjector.Point.cpufault.rawValue] > 0)
        default: #expect(toDevice.reduce(0) { $0 + $1.deviceAllocFails } > 0)
        }
    }

    @Test("per-thread counters: a software event opens and counts; the column name is cnt_ and the name with _")
    func counters() throws {
        let set = try PerfCounterSet(["page-faults", "context-switches"])
        set.enterWorkerThread()
        set.enterWorkerThread()
        #expect(set.threadCount == 1, "once per thread")
        #expect(set.read().allSatisfy { $0 != nil })
        #expect(PerfCounterSet.columnName("dTLB-load-misses") == "cnt_dTLB_load_misses")
        #expect(throws: PerfEventError.self) { try PerfCounterSet(["no-such-event"]) }
    }
}
