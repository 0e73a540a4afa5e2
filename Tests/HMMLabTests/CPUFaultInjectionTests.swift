import Testing

@testable import HMMLab

/// The `cpufault` injection point: a CPU store from another thread hits a page while its migration
/// entry is installed, waits (`migration_entry_wait`), and lands once the migration is done or undone,
/// faulting a device page back through `migrate_to_ram`. In every path and direction the data survives
/// byte for byte, the injected stamp is the page's final content, the invariants hold, every frame
/// comes back and each injection is counted once.
@Suite("FaultInjector cpufault: a CPU fault on a page under migration")
struct CPUFaultInjectionTests {
    enum Path: String, CaseIterable, CustomTestStringConvertible {
        case migrateVMA = "migrate_vma to the device"
        case unified = "unified fault-and-migrate to the device"
        case thp = "migrate_vma of a 2 MiB folio to the device"
        case toSystem = "migrate_vma back to system memory"
        case migrateToRAM = "migrate_to_ram on a CPU fault"
        var testDescription: String { rawValue }
    }

    @Test("the injected store waits for the migration and survives; nothing else changes", arguments: Path.allCases)
    func injectedStore(_ path: Path) throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let pages = path == .migrateToRAM ? 64 : 1024
        let a = try f.mm.mmap(length: pages * 4096, protection: .readWrite)
        if path == .thp { try f.mm.madvise(a, length: pages * 4096, hugepage: true) }
        try f.fill(a, pages: pages, seed: 7)
        let injector = FaultInjector([.cpufault: 1], seed: 3)
        var expectedInjections = 0
        switch path {
        case .migrateVMA, .thp:
            f.mm.injector = injector
            #expect(d.migrateToDevice(a, pages: pages).errno != Errno.EINVAL)
            expectedInjections = pages / Device.migrationWindow
        case .unified:
            f.mm.injector = injector
            _ = d.makeResident(a, pages: pages, strategy: .unified)
            // One per walk that reached migrate_vma_pages (a window is walked again if its store
            // bumped the sequence).
            expectedInjections = injector.injected(.cpufault)
            #expect(expectedInjections >= pages / Device.migrationWindow)
        case .toSystem:
            #expect(d.migrateToDevice(a, pages: pages).errno == 0)
            f.mm.injector = injector
            let back = d.migrateToSystem(a, pages: pages)
            #expect(back.errno == 0)
            #expect(back.migrated == pages)
            expectedInjections = pages / Device.migrationWindow
        case .migrateToRAM:
            #expect(d.migrateToDevice(a, pages: pages).errno == 0)
            f.mm.injector = injector
            // Every page is its own device folio: each load is one migrate_to_ram, one injection.
            for k in 0..<pages { _ = try f.mm.load(UInt8.self, from: a + UInt64(k) << 12) }
            expectedInjections = pages
        }
        f.mm.injector = nil
        #expect(injector.injected(.cpufault) == expectedInjections)
        let (stores, failures) = injector.takeCPUFaultStores()
        #expect(failures.isEmpty, "\(failures)")
        #expect(stores.count == expectedInjections)
        #expect(stores.allSatisfy { $0.waited }, "every injected store found its migration entry and waited")
        #expect(Set(stores.map(\.stamp)).count == stores.count)
        let problems = Invariants.check([f.mm], devices: [d])
        #expect(problems.isEmpty, "\(problems)")
        // Byte for byte: the fill, with the last stamp stored into each stamped page.
        var stamped: [Int: UInt64] = [:]
        for s in stores { stamped[Int((s.address - a) >> 12)] = s.stamp }
        #expect(stamped.keys.allSatisfy { $0 >= 0 && $0 < pages })
        for k in 0..<pages {
            var expected = MMFixture.pattern(seed: 7, page: k)
            if let stamp = stamped[k] {
                withUnsafeBytes(of: stamp.littleEndian) { b in
                    for i in 0..<8 { expected[Int(injector.cpuFaultStampOffset) + i] = b[i] }
                }
            }
            let bytes = try f.mm.loadBytes(4096, from: a + UInt64(k) << 12)
            #expect(bytes == expected, "page \(k)")
        }
        #expect(d.stats.verifyFailures.load(ordering: .relaxed) == 0)
        #expect(Invariants.check([f.mm], devices: [d]).isEmpty)
        d.release()
        d.close()
        f.finish()
    }

    @Test("the point parses in --inject and counts nothing at probability 0")
    func parsesAndIsOff() throws {
        let c = try RunConfig.parse(["inject": "cpufault=0.25"], nodes: [0])
        #expect(c.inject[.cpufault] == 0.25)
        #expect(c.injectDescription == "cpufault=0.25")
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let a = try f.mm.mmap(length: 512 * 4096, protection: .readWrite)
        try f.fill(a, pages: 512, seed: 1)
        let injector = FaultInjector([.cpufault: 0], seed: 1)
        f.mm.injector = injector
        #expect(d.migrateToDevice(a, pages: 512).errno == 0)
        f.mm.injector = nil
        #expect(injector.injected(.cpufault) == 0)
        #expect(injector.takeCPUFaultStores().stores.isEmpty)
        #expect(try f.mismatches(a, pages: 512, seed: 1).isEmpty)
        d.release()
        d.close()
        f.finish()
    }
}
