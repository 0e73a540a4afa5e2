import Testing

@testable import HMMLab

@Suite("Strategies: the walk counts of DESIGN.md")
struct StrategyTests {

    func run(_ strategy: Strategy, swapped: Int) throws -> MigrationResult {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 512
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 1)
        if swapped > 0 { #expect(try f.mm.swapOut(a + 100 * 4096, pages: swapped).swapped == swapped) }
        let r = d.makeResident(a, pages: n, strategy: strategy)
        #expect(r.errno == 0, "\(strategy): \(Errno.name(r.errno))")
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .devicePrivate }, "\(strategy): every page on the device")
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: n, seed: 1) == [], "\(strategy): data intact")
        f.finish(devices: [d])
        return r
    }

    @Test("present pages: fault-then-migrate 2 walks, migrate-then-fault 1, unified 1; no restart")
    func presentPages() throws {
        let ftm = try run(.faultThenMigrate, swapped: 0)
        let mtf = try run(.migrateThenFault, swapped: 0)
        let uni = try run(.unified, swapped: 0)
        #expect(ftm.walks == 2 && ftm.restarts == 0)
        #expect(mtf.walks == 1 && mtf.restarts == 0)
        #expect(uni.walks == 1 && uni.restarts == 0)
        #expect(ftm.faults == 0 && mtf.faults == 0 && uni.faults == 0)
    }

    @Test("with swap entries: fault-then-migrate 2 walks + restarts, migrate-then-fault 3, unified 1 + restarts")
    func swappedPages() throws {
        let ftm = try run(.faultThenMigrate, swapped: 8)
        let mtf = try run(.migrateThenFault, swapped: 8)
        let uni = try run(.unified, swapped: 8)
        #expect(ftm.walks == 2 && ftm.restarts == 1, "one fault batch: one restart")
        #expect(mtf.walks == 3)
        #expect(uni.walks == 1 && uni.restarts == 1)
        #expect(ftm.faults > 0 && mtf.faults > 0 && uni.faults > 0)
    }

    @Test(
        "a read request in 32-page calls, as test_hmm's READ: untouched pages get the zero page (16 calls, each walked again after its faults), which migrate_vma_pages replaces with a TLB flush each"
    )
    func readRequestAsDmirror() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 512
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        let flushes = f.mm.counters.tlbFlushes.load(ordering: .relaxed)
        let r = d.makeResident(a, pages: n, strategy: .faultThenMigrate, access: .read, faultPages: Device.faultWindow)
        #expect(r.errno == 0 && r.migrated == n)
        #expect(r.walks == 17 && r.restarts == 16 && r.faults == n, "\(r)")
        #expect(
            f.mm.counters.tlbFlushes.load(ordering: .relaxed) - flushes == n,
            "one ptep_clear_flush per zero page replaced")
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .devicePrivate })
        f.check(devices: [d])
        f.finish(devices: [d])
    }
}
