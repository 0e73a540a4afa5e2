import Testing

@testable import HMMLab

@Suite("The unified path: self-invalidation, THP-aware collection, migrate_vma_setup through it, -ERANGE")
struct UnifiedTests {

    @Test("self-invalidation: skipping costs nothing; bumping makes the driver walk the window again")
    func selfInvalidation() throws {
        for policy in Device.SelfInvalidation.allCases {
            let f = try MMFixture()
            let d = Device(memory: f.memory, mm: f.mm, verify: true, selfInvalidation: policy)
            let a = try f.mm.mmap(length: 512 * 4096, protection: .readWrite)
            try f.fill(a, pages: 512, seed: 2)
            let r = d.migrateOnFault(a, pages: 512)
            #expect(r.errno == 0 && r.migrated == 512)
            if policy == .skip {
                #expect(r.walks == 1 && r.selfInvalidationRetries == 0)
                #expect(d.stats.selfInvalidationsSkipped.load(ordering: .relaxed) >= 1)
            } else {
                #expect(r.walks == 2 && r.selfInvalidationRetries == 1, "the bump costs one more walk: \(r)")
                #expect(d.stats.selfInvalidationsBumped.load(ordering: .relaxed) >= 1)
            }
            f.check(devices: [d])
            #expect(try f.mismatches(a, pages: 512, seed: 2) == [])
            f.finish(devices: [d])
        }
    }

    @Test("a THP met by the unified walk is split, as the RFC does, or collected whole with the lab's option")
    func thp() throws {
        for compound in [false, true] {
            let f = try MMFixture()
            let d = Device(memory: f.memory, mm: f.mm, verify: true)
            let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
            try f.fill(a, pages: 512, seed: 3)
            let r = d.migrateOnFault(a, pages: 512, compound: compound)
            #expect(r.errno == 0 && r.migrated == 512)
            if compound {
                #expect(r.collected == 1 && r.splitsBeforeCollect == 0 && r.restarts == 0)
                #expect(try #require(f.mm.pageTable.pmdSlot(a, allocate: false)).load().isDevicePrivate)
            } else {
                #expect(
                    r.collected == 512 && r.splitsBeforeCollect == 1 && r.restarts == 1, "split, then walk again: \(r)")
            }
            f.check(devices: [d])
            #expect(try f.mismatches(a, pages: 512, seed: 3) == [])
            f.finish(devices: [d])
        }
    }

    @Test("migrate_vma_setup expressed through the unified walk collects what the classic collect does")
    func setupThroughUnified() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: 64 * 4096, protection: .readWrite)
        try f.fill(a, pages: 48, seed: 4)  // 16 untouched pages at the end
        _ = try f.mm.swapOut(a, pages: 4)  // 4 swapped pages at the start
        let args = MigrateVMA(mm: f.mm)
        let range = HMMRange(capacity: 64)
        try f.mm.mmapLock.withReadLock { () throws in
            args.vma = f.mm.vma(containing: a)
            args.start = a
            args.end = a + 64 * 4096
            args.pgmapOwner = d.owner
            args.flags = [.system]
            #expect(f.mm.migrateVMASetupUnified(args, range: range, fault: false) == 0)
            #expect(args.cpages == 60, "swap entries are not collected without MIGRATE_VMA_FAULT")
            #expect((0..<4).allSatisfy { args.src[$0] == 0 })
            #expect(
                (48..<64).allSatisfy { args.src[$0] == MigratePfn.migrate }, "holes are source-less MIGRATE entries")
            // Give everything back.
            f.mm.migrateVMAFinalize(args)
        }
        #expect(try f.mismatches(a, pages: 48, seed: 4) == [])
        f.finish(devices: [d])
        _ = range
    }

    @Test("a unified walk over two VMAs is -ERANGE")
    func twoVMAs() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let a = try f.mm.mmap(length: 8 * 4096, protection: .readWrite, at: 0x30_0000_0000)
        _ = try f.mm.mmap(length: 8 * 4096, protection: .read, at: 0x30_0000_8000)
        try f.fill(a, pages: 8, seed: 5)
        let r = d.migrateOnFault(a, pages: 16)
        #expect(r.errno == Errno.ERANGE)
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: 8, seed: 5) == [])
        f.finish(devices: [d])
    }
}
