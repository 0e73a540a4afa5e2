import Testing

@testable import HMMLab

/// The kernel per-page costs the model pays (`--costs`): each is paid when on, and gone when off, with
/// the counts and the data unchanged.
@Suite("Costs: TLB shootdowns paid for real or counted only")
struct CostsTests {

    /// Migrates 256 written pages with `strategy` on memory paying `costs`; returns the mm's flush
    /// count and the nanoseconds its shootdowns took.
    func migrate(_ strategy: Strategy, costs: Costs) throws -> (flushes: Int, ns: UInt64) {
        let f = try MMFixture(costs: costs)
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 256
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 7)
        let r = d.makeResident(a, pages: n, strategy: strategy)
        #expect(r.errno == 0 && r.migrated == n)
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: n, seed: 7) == [])
        let counts = (
            f.mm.counters.tlbFlushes.load(ordering: .relaxed), f.mm.counters.flushNanoseconds.load(ordering: .relaxed)
        )
        f.finish(devices: [d])
        return counts
    }

    @Test(
        "Every modelled flush is a host shootdown with the flush cost, and counted only without it",
        arguments: Strategy.allCases)
    func flushPaidOrCounted(_ strategy: Strategy) throws {
        let paid = try migrate(strategy, costs: .all)
        let counted = try migrate(strategy, costs: [.lru, .driver])
        #expect(paid.flushes == counted.flushes)
        #expect(
            paid.flushes >= 256,
            "collect's ptep_clear_flush per anon-exclusive page, or the unified walk's per-page flushes")
        #expect(paid.ns > 0)
        #expect(counted.ns == 0)
    }

    @Test("The host shootdown reaches another CPU: with a thread spinning elsewhere it still completes")
    func shootdownWithRemoteThread() {
        let figures = Calibration.measureTLB(n: 50, Calibration.Timer(repetitions: 1))
        #expect(figures.map(\.name) == ["syscall_ns", "tlb_flush_local_ns", "tlb_flush_remote_ns"])
        #expect(figures[0].value > 0 && figures[1].value > 0)
        #expect(figures[2].value > 0 || figures[2].detail.contains("no second CPU"))
    }

    @Test("The mprotect fallback makes a shootdown too: the shadow page is mapped and stays writable")
    func mprotectFallback() {
        let fallback = TLBShootdown(forcing: .mprotect)
        #expect(fallback.mechanism == .mprotect)
        let t0 = monotonicNanoseconds()
        for _ in 0..<100 { fallback.shootdown() }
        #expect(monotonicNanoseconds() - t0 > 100 * 200, "two mprotect calls cost far more than 200 ns")
    }

    @Test("--costs and --tlb-flush parse, agree, and refuse what is not allowed")
    func parse() throws {
        #expect(try RunConfig.parse([:]).costs == .all)
        #expect(try RunConfig.parse(["costs": "none"]).costs == [])
        #expect(try RunConfig.parse(["costs": "lru,flush"]).costs == [.lru, .flush])
        #expect(try RunConfig.parse(["tlb-flush": "count"]).costs == [.lru, .driver])
        #expect(try RunConfig.parse(["costs": "flush", "tlb-flush": "real"]).costs == [.flush])
        #expect(throws: ConfigError.self) { try RunConfig.parse(["costs": "flush,flush"]) }
        #expect(throws: ConfigError.self) { try RunConfig.parse(["costs": "tlb"]) }
        #expect(throws: ConfigError.self) { try RunConfig.parse(["tlb-flush": "maybe"]) }
        #expect(throws: ConfigError.self) { try RunConfig.parse(["costs": "none", "tlb-flush": "real"]) }
        #expect(Costs.all.description == "flush,lru,driver" && Costs().description == "none")
    }
}
