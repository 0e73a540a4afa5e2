import Testing

@testable import HMMLab

@Suite(
    "Device access: what the unified walk faults and collects with REQ_FAULT|REQ_MIGRATE, with and without REQ_WRITE")
struct DeviceAccessTests {
    let n = 512

    /// Faults of each kind `mm` took while `body` ran.
    func faults(in mm: AddressSpace, _ body: () throws -> Void) rethrows -> [FaultKind: Int] {
        let before = FaultKind.allCases.map { mm.counters.faults($0) }
        try body()
        var delta: [FaultKind: Int] = [:]
        for (k, kind) in FaultKind.allCases.enumerated() where mm.counters.faults(kind) != before[k] {
            delta[kind] = mm.counters.faults(kind) - before[k]
        }
        return delta
    }

    @Test(
        "read access on untouched pages: read faults to the zero page, no write fault; every page reaches the device as a cleared hole"
    )
    func readAccessUntouched() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        var r = MigrationResult()
        let kinds = faults(in: f.mm) { r = d.migrateOnFault(a, pages: n, access: .read) }
        #expect(r.errno == 0 && r.collected == n && r.migrated == n, "\(r)")
        #expect(kinds == [.zeroPage: n], "do_anonymous_page without FAULT_FLAG_WRITE: \(kinds)")
        #expect(r.walks == 1 && r.restarts == 1, "one fault batch, one restart: \(r)")
        #expect(d.stats.bytesCopied.load(ordering: .relaxed) == 0, "source-less: nothing copied")
        #expect(d.stats.bytesCleared.load(ordering: .relaxed) == n * 4096, "every device page cleared")
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .devicePrivate })
        #expect(try d.read(a, pages: n).bytes.allSatisfy { $0 == 0 }, "the device reads zeros, byte for byte")
        f.check(devices: [d])
        #expect(try f.mm.loadBytes(n * 4096, from: a).allSatisfy { $0 == 0 }, "the CPU reads zeros back")
        f.finish(devices: [d])
    }

    @Test("write access on untouched pages: write faults allocate and the pages are copied")
    func writeAccessUntouched() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        var r = MigrationResult()
        let kinds = faults(in: f.mm) { r = d.migrateOnFault(a, pages: n, access: .write) }
        #expect(r.errno == 0 && r.migrated == n, "\(r)")
        #expect(kinds == [.anonymous: n], "\(kinds)")
        #expect(d.stats.bytesCopied.load(ordering: .relaxed) == n * 4096)
        #expect(try d.read(a, pages: n).bytes.allSatisfy { $0 == 0 })
        f.check(devices: [d])
        f.finish(devices: [d])
    }

    @Test(
        "read access on copy-on-write pages: no fault, COW not broken; the page moves and both mms map it on the device"
    )
    func readAccessCopyOnWrite() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 6)
        let child = try f.mm.fork()
        var r = MigrationResult()
        let parent = faults(in: child) {
            let kinds = faults(in: f.mm) { r = d.migrateOnFault(a, pages: n, access: .read) }
            #expect(kinds.isEmpty, "\(kinds)")
        }
        #expect(parent.isEmpty)
        #expect(r.errno == 0 && r.migrated == n && r.faults == 0, "\(r)")
        // try_to_migrate visits the parent's VMA too (try_to_migrate_one raises its invalidation before it
        // finds the page gone there), which moves the sequence: the lab's driver, which checks it after
        // finalize, walks the window once more and finds everything on the device.
        #expect(r.walks == 2 && r.collected == n, "\(r)")
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .devicePrivate })
        #expect(
            child.snapshot(a, pages: n).allSatisfy { $0 == .devicePrivate }, "try_to_migrate unmapped the child too")
        #expect(
            d.deviceMappings().count == n && d.deviceMappings().allSatisfy { !$0.writable },
            "the device maps the shared pages read-only")
        #expect(try f.mismatches(a, pages: n, seed: 6, in: child) == [], "the child reads its values back")
        #expect(try f.mismatches(a, pages: n, seed: 6) == [])
        f.check(devices: [d], others: [child])
        f.finish(devices: [d], others: [child])
    }

    @Test("write access on copy-on-write pages: each is broken by a write fault and the child keeps its copy")
    func writeAccessCopyOnWrite() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 7)
        let child = try f.mm.fork()
        var r = MigrationResult()
        let kinds = faults(in: f.mm) { r = d.migrateOnFault(a, pages: n, access: .write) }
        #expect(r.errno == 0 && r.migrated == n, "\(r)")
        #expect(kinds[.copyOnWrite] == n, "\(kinds)")
        #expect(child.snapshot(a, pages: n).allSatisfy { $0 == .read }, "the child keeps its read-only copy")
        #expect(try f.mismatches(a, pages: n, seed: 7) == [])
        #expect(try f.mismatches(a, pages: n, seed: 7, in: child) == [])
        f.check(devices: [d], others: [child])
        f.finish(devices: [d], others: [child])
    }

    @Test(
        "the unified walk collects this device's private pages with SELECT_DEVICE_PRIVATE, as the RFC's migrate_vma_setup does"
    )
    func unifiedWalkCollectsDevicePrivate() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let m = 64
        let a = try f.mm.mmap(length: m * 4096, protection: .readWrite)
        try f.fill(a, pages: m, seed: 8)
        #expect(d.migrateToDevice(a, pages: m).migrated == m)
        let args = MigrateVMA(mm: f.mm)
        let range = HMMRange(capacity: m)
        f.mm.mmapLock.withReadLock {
            args.vma = f.mm.vma(containing: a)
            args.start = a
            args.end = a + UInt64(m) * 4096
            args.pgmapOwner = d.owner
            args.flags = [.devicePrivate]
            #expect(f.mm.migrateVMASetupUnified(args, range: range, fault: false) == 0)
            #expect(args.cpages == m)
            #expect(
                (0..<m).allSatisfy {
                    args.src[$0] & (MigratePfn.migrate | MigratePfn.write) == MigratePfn.migrate | MigratePfn.write
                })
            #expect((0..<m).allSatisfy { MigratePfn.pfn(args.src[$0]).map(f.memory.device.contains) == true })
            #expect(range.faults == 0)
            f.mm.migrateVMAFinalize(args)  // nothing allocated: every source is restored
        }
        #expect(f.mm.snapshot(a, pages: m).allSatisfy { $0 == .devicePrivate })
        d.setupThroughUnifiedWalk = true
        #expect(
            try f.mismatches(a, pages: m, seed: 8) == [],
            "migrate_to_ram through the unified walk brings every page back")
        #expect(f.mm.snapshot(a, pages: m).allSatisfy { $0 == .write })
        f.check(devices: [d])
        f.finish(devices: [d])
    }
}
