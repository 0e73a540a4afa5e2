import Dispatch
import Synchronization
import Testing

@testable import HMMLab

/// The huge zero folio (mm/huge_memory.c): the read fault that maps it, the write fault that replaces
/// it (`do_huge_zero_wp_pmd`) or splits it (`__split_huge_zero_page_pmd`), and the mm operations
/// around it, each ending with the invariants and the leak check.
@Suite("The huge zero page: read fault, write fault, split, fork, mprotect, munmap, hmm_range_fault")
struct HugeZeroPageTests {

    /// The huge zero folio is untouched: reserved, zero-page, order 9, one reference, no mapping, all zero.
    func expectHugeZeroIntact(_ f: MMFixture, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let folio = try #require(f.memory.hugeZeroFolio, sourceLocation: sourceLocation)
        let head = f.memory.folioRef(folio)
        #expect(
            holds(head.test([.reserved, .zeroPage, .head]) && head.order == PageSize.pmdOrder),
            sourceLocation: sourceLocation)
        #expect(holds(head.refCount == 1 && head.mapCount == 0), sourceLocation: sourceLocation)
        #expect(
            f.memory.bytes(of: folio).allSatisfy { $0 == 0 }, "the huge zero folio stays zero",
            sourceLocation: sourceLocation)
        #expect(
            !f.memory.system.allocator.isFree(folio.pfn.index - f.memory.system.firstPfn.index),
            sourceLocation: sourceLocation)
    }

    /// The PMD entry at `address` (none when there is no PMD table).
    func pmd(_ f: MMFixture, _ address: UInt64) -> PTE {
        f.mm.pageTable.pmdSlot(address, allocate: false)?.load() ?? .none
    }

    @Test(
        "the memory holds a huge zero folio, 2 MiB-aligned in the system pool; a pool with no free 2 MiB block has none, and a THP read fault then maps the 4 KiB zero page"
    )
    func folio() throws {
        let f = try MMFixture()
        let folio = try #require(f.memory.hugeZeroFolio)
        #expect(
            folio.order == PageSize.pmdOrder && folio.pfn.rawValue % 512 == 0 && f.memory.system.contains(folio.pfn))
        #expect(
            f.memory.isHugeZero(folio.pfn + 511) && !f.memory.isHugeZero(folio.pfn + 512)
                && !f.memory.isHugeZero(f.memory.zeroPage))
        try expectHugeZeroIntact(f)
        let small = try MMFixture(systemMiB: 2)
        #expect(small.memory.hugeZeroFolio == nil && small.memory.hugeZeroPfn.rawValue == 0)
        let a = try small.mm.mmap(length: 2 << 20, protection: .read, flags: .hugepage)
        #expect(try small.mm.load(UInt8.self, from: a) == 0)
        #expect(
            small.mm.counters.faults(.zeroPage) == 1 && small.mm.counters.faults(.hugeZeroPage) == 0,
            "VM_FAULT_FALLBACK")
        small.finish()
    }

    @Test(
        "a read fault in an aligned THP range maps the huge zero PMD, read-only and special; a read in an unaligned or non-THP range maps the 4 KiB zero page"
    )
    func readFault() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 4 << 20, protection: .readWrite, flags: .hugepage)
        #expect(try f.mm.load(UInt64.self, from: a + 123 * 4096 + 8) == 0)
        let e = pmd(f, a)
        #expect(f.memory.isHugeZeroPMD(e) && !e.isWritable && e.isSpecial)
        #expect(f.mm.counters.faults(.hugeZeroPage) == 1)
        #expect(f.mm.snapshot(a, pages: 512).allSatisfy { $0 == .zero })
        #expect(try f.mm.loadBytes(PageSize.pmdBytes, from: a).allSatisfy { $0 == 0 })
        #expect(f.mm.counters.faults(.hugeZeroPage) == 1, "no more faults: every page reads through the PMD")
        let plain = try f.mm.mmap(length: 2 << 20, protection: .readWrite)
        #expect(try f.mm.load(UInt8.self, from: plain) == 0)
        #expect(f.mm.snapshot(plain, pages: 2) == [.zero, .none] && f.mm.counters.faults(.zeroPage) == 1)
        #expect(Invariants.check([f.mm]).isEmpty)
        try expectHugeZeroIntact(f)
        f.finish()
    }

    @Test(
        "a write fault on the huge zero PMD maps a new zeroed THP (do_huge_zero_wp_pmd); with no 2 MiB folio it splits to 512 zero-page PTEs and the 4 KiB write fault allocates",
        arguments: [false, true])
    func writeFault(thpFails: Bool) throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        #expect(try f.mm.load(UInt32.self, from: a + 4096 * 300) == 0)
        #expect(f.memory.isHugeZeroPMD(pmd(f, a)))
        if thpFails { f.memory.system.allocator.setFailureInjection(FailureInjection(order9: 1)) }
        let pattern = MMFixture.pattern(seed: 11, page: 5)
        try f.mm.store(pattern, at: a + 5 * 4096)
        f.memory.system.allocator.setFailureInjection(.none)
        let e = pmd(f, a)
        #expect(!f.memory.isHugeZeroPMD(e))
        if thpFails {
            #expect(!e.isHuge && f.mm.counters.pmdSplits.load(ordering: .relaxed) == 1)
            #expect(f.mm.counters.faults(.anonymous) == 1 && f.mm.counters.faults(.anonymousHuge) == 0)
            var expected = [PageState](repeating: .zero, count: 512)
            expected[5] = .write
            #expect(
                f.mm.snapshot(a, pages: 512) == expected, "__split_huge_zero_page_pmd: zero PTEs, then one new page")
            let zero = try #require(f.mm.pageTable.pteSlot(a)).load()
            #expect(zero.pfn == f.memory.zeroPage && zero.isSpecial && !zero.isWritable)
        } else {
            #expect(e.isHuge && e.isWritable && e.isDirty && f.mm.counters.faults(.anonymousHuge) == 1)
            #expect(f.mm.counters.pmdSplits.load(ordering: .relaxed) == 0)
            #expect(f.mm.snapshot(a, pages: 512).allSatisfy { $0 == .write })
            let head = FolioRef(head: f.memory.page(e.pfn))
            #expect(holds(head.test([.anon, .anonExclusive, .head]) && head.mapCount == 1))
        }
        let zeros = [UInt8](repeating: 0, count: 4096)
        for k in 0..<512 {
            #expect(try f.mm.loadBytes(4096, from: a + UInt64(k) << 12) == (k == 5 ? pattern : zeros), "page \(k)")
        }
        try f.mm.store(UInt8(1), at: a + 400 * 4096)  // a second write: reuse of the THP, or one more 4 KiB page
        #expect(f.mm.counters.faults(.anonymous) == (thpFails ? 2 : 0))
        #expect(Invariants.check([f.mm]).isEmpty, "\(Invariants.check([f.mm]))")
        try expectHugeZeroIntact(f)
        f.finish()
    }

    @Test(
        "fork shares the huge zero PMD without a reference; mprotect(PROT_NONE) and back keeps it; a partial mprotect or munmap splits it to zero PTEs; swap-out skips it; mremap moves it whole; nothing leaks"
    )
    func mmOperations() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 4 << 20, protection: .readWrite, flags: .hugepage)
        _ = try f.mm.load(UInt8.self, from: a)
        _ = try f.mm.load(UInt8.self, from: a + (2 << 20))
        let child = try f.mm.fork()
        #expect(f.memory.isHugeZeroPMD(try #require(child.pageTable.pmdSlot(a, allocate: false)).load()))
        #expect(f.memory.isHugeZeroPMD(pmd(f, a)))
        try child.store(UInt8(9), at: a + 4096)  // the child's write: its own THP, the parent keeps zero
        #expect(try f.mm.load(UInt8.self, from: a + 4096) == 0 && f.memory.isHugeZeroPMD(pmd(f, a)))
        try f.mm.mprotect(a, length: 2 << 20, protection: .none)
        #expect(pmd(f, a).isProtNone)
        try f.mm.mprotect(a, length: 2 << 20, protection: .readWrite)
        #expect(try f.mm.load(UInt8.self, from: a + 77) == 0)
        let restored = pmd(f, a)
        #expect(f.memory.isHugeZeroPMD(restored) && !restored.isWritable, "back to the read-only huge zero PMD")
        let swapped = try f.mm.swapOut(a, pages: 4)
        #expect(swapped.swapped == 0 && f.memory.isHugeZeroPMD(pmd(f, a)), "\(swapped.skipped)")
        try f.mm.mprotect(a + (2 << 20), length: 4096, protection: .read)  // partial: split
        #expect(f.mm.snapshot(a + (2 << 20), pages: 512).allSatisfy { $0 == .zero })
        try f.mm.munmap(a + 4096, length: 4096)  // partial: split, one PTE gone
        #expect(f.mm.snapshot(a, pages: 3) == [.zero, .error, .zero], "the unmapped page has no VMA")
        let b = try f.mm.mmap(length: 2 << 20, protection: .read, flags: .hugepage)
        _ = try f.mm.load(UInt8.self, from: b + 99)
        let moved = try f.mm.mremap(b, oldLength: 2 << 20, newLength: 2 << 20, to: 0x70_0000_0000)  // move_huge_pmd
        #expect(f.memory.isHugeZeroPMD(pmd(f, moved)) && f.mm.counters.faults(.hugeZeroPage) == 3)
        #expect(try f.mm.loadBytes(4096, from: moved + 4096 * 511).allSatisfy { $0 == 0 })
        #expect(Invariants.check([f.mm, child]).isEmpty, "\(Invariants.check([f.mm, child]))")
        try expectHugeZeroIntact(f)
        f.finish([child])
    }

    @Test(
        "hmm_range_fault on the huge zero PMD: REQ_FAULT reports the zero folio's pfns, read-only, order 9; REQ_WRITE faults it to a writable THP"
    )
    func rangeFault() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        let (bytes, _) = try d.read(a, pages: 512)  // REQ_FAULT: the read fault maps the huge zero PMD
        #expect(bytes.allSatisfy { $0 == 0 } && f.memory.isHugeZeroPMD(pmd(f, a)))
        let zero = f.memory.hugeZeroPfn
        #expect(
            d.deviceMappings().map(\.pfn) == (0..<512).map { zero + $0 }
                && d.deviceMappings().allSatisfy { !$0.writable })
        #expect(try d.snapshot(a, pages: 512).allSatisfy { $0 == MirrorProt.read | MirrorProt.pmd })
        f.check(devices: [d])
        let data = [UInt8](repeating: 0xA5, count: 4096)
        _ = try d.write(a + 4096 * 17, bytes: data)  // REQ_WRITE: do_huge_zero_wp_pmd
        let e = pmd(f, a)
        #expect(e.isHuge && e.isWritable && !f.memory.isHugeZeroPMD(e) && f.mm.counters.faults(.anonymousHuge) == 1)
        #expect(try f.mm.loadBytes(4096, from: a + 4096 * 17) == data)
        #expect(try f.mm.loadBytes(4096, from: a + 4096 * 18).allSatisfy { $0 == 0 })
        f.check(devices: [d])
        try expectHugeZeroIntact(f)
        f.finish(devices: [d])
    }

    @Test(
        "migrate_vma_setup on the huge zero PMD without SELECT_COMPOUND collects 512 source-less holes; migrate_vma_pages splits the PMD to zero PTEs and replaces them"
    )
    func migrateWithoutCompound() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        _ = try f.mm.load(UInt8.self, from: a)
        let r = d.migrateToDevice(a + 4096, pages: 100)  // not the whole PMD: no compound hole
        #expect(r.errno == 0 && r.migrated == 100, "\(r)")
        var expected = [PageState](repeating: .zero, count: 512)
        for k in 1...100 { expected[k] = .devicePrivate }
        #expect(f.mm.snapshot(a, pages: 512) == expected)
        f.check(devices: [d])
        #expect(try f.mm.loadBytes(8192, from: a + 4096 * 50).allSatisfy { $0 == 0 })
        try expectHugeZeroIntact(f)
        f.finish(devices: [d])
    }

    @Test(
        "the unified walk (REQ_FAULT|REQ_MIGRATE) on the huge zero PMD collects it as a hole: one compound entry with compound collection, 512 single ones without; read access faults nothing, write access faults it to a THP that migrates",
        arguments: [false, true], [DeviceAccess.read, .write])
    func unified(compound: Bool, access: DeviceAccess) throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        _ = try f.mm.load(UInt8.self, from: a)
        let r = d.migrateOnFault(a, pages: 512, compound: compound, access: access)
        #expect(r.errno == 0 && r.migrated == 512, "\(r)")
        #expect(f.mm.snapshot(a, pages: 512).allSatisfy { $0 == .devicePrivate })
        let e = pmd(f, a)
        #expect(e.isDevicePrivate == compound, "a device-private PMD only when collected whole: \(e)")
        #expect(try d.read(a, pages: 512).bytes.allSatisfy { $0 == 0 })
        f.check(devices: [d])
        #expect(try f.mm.loadBytes(4096, from: a + 4096 * 3).allSatisfy { $0 == 0 })
        try expectHugeZeroIntact(f)
        f.finish(devices: [d])
    }

    @Test(
        "races on the huge zero PMD: CPU stores (do_huge_zero_wp_pmd, or migrate_to_ram) against migrations to the device and back; every byte as stored, invariants hold, nothing leaks",
        arguments: [false, true])
    func races(thpFails: Bool) throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        if thpFails {  // half the 2 MiB allocations fail, the device's and the CPU's
            d.setAllocationFailure(FailureInjection(order9: 0.5, seed: 3))
            f.memory.system.allocator.setFailureInjection(FailureInjection(order9: 0.5, seed: 5))
        }
        var rng = SplitMix64(seed: 17)
        for round in 0..<12 {
            let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
            _ = try f.mm.load(UInt8.self, from: a)
            #expect(f.memory.isHugeZeroPMD(pmd(f, a)))
            let pages = (0..<6).map { _ in Int(rng.next() % 512) }
            let errors = Mutex<[String]>([])
            let mm = f.mm
            DispatchQueue.concurrentPerform(iterations: 2) { worker in
                do {
                    if worker == 0 {
                        _ = d.migrateToDevice(a, pages: 512)
                        if round % 2 == 0 { _ = d.migrateToSystem(a, pages: 512) }
                    } else {
                        for k in pages { try mm.store(UInt64(k + 1), at: a + UInt64(k) << 12) }
                    }
                } catch {
                    errors.withLock { $0.append("\(error)") }
                }
            }
            #expect(errors.withLock { $0 }.isEmpty, "\(errors.withLock { $0 })")
            for k in 0..<512 {
                let value = try f.mm.load(UInt64.self, from: a + UInt64(k) << 12)
                #expect(value == (pages.contains(k) ? UInt64(k + 1) : 0), "round \(round), page \(k)")
            }
            f.check(devices: [d])
            try f.mm.munmap(a, length: 2 << 20)
        }
        d.setAllocationFailure(FailureInjection())
        f.memory.system.allocator.setFailureInjection(.none)
        try expectHugeZeroIntact(f)
        f.finish(devices: [d])
    }
}
