import Dispatch
import Glibc
import Synchronization
import Testing

@testable import HMMLab

/// Behaviours where the lab once departed from 7.2 (or the unified RFC) and now follows it.
@Suite("Deviations: the lab follows 7.2 where a fidelity review found it did not")
struct DeviationTests {

    /// `migrate_vma_setup` on `pages` pages at `a` with `flags`, under the mmap lock (read). The caller
    /// finalizes with ``finalize(_:_:)``.
    func setup(_ f: MMFixture, _ d: Device, _ a: UInt64, pages: Int, flags: MigrateSelect = [.system]) -> MigrateVMA {
        let args = MigrateVMA(mm: f.mm)
        f.mm.mmapLock.readLock()
        args.vma = f.mm.vma(containing: a)
        args.start = a
        args.end = a + UInt64(pages) << 12
        args.pgmapOwner = d.owner
        args.flags = flags
        #expect(f.mm.migrateVMASetup(args) == 0)
        return args
    }

    /// `migrate_vma_finalize` with no destinations: every collected source is restored.
    func finalize(_ f: MMFixture, _ args: MigrateVMA) {
        f.mm.migrateVMAFinalize(args)
        f.mm.mmapLock.unlock()
    }

    @Test("collect takes a PROT_NONE PTE as a present one (read-only source), and the restore maps it PROT_NONE again")
    func collectTakesProtNone() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 8
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 41)
        try f.mm.mprotect(a, length: n * 4096, protection: .none)
        let args = setup(f, d, a, pages: n)
        #expect(args.cpages == n)
        for i in 0..<n {
            #expect(
                args.src[i] & MigratePfn.migrate != 0 && args.src[i] & MigratePfn.write == 0
                    && MigratePfn.pfn(args.src[i]) != nil)
        }
        finalize(f, args)
        for i in 0..<n { #expect(try #require(f.mm.pageTable.pteSlot(a + UInt64(i) << 12)).load().isProtNone) }
        f.check(devices: [d])
        try f.mm.mprotect(a, length: n * 4096, protection: .readWrite)
        #expect(try f.mismatches(a, pages: n, seed: 41) == [])
        f.finish(devices: [d])
    }

    @Test("try_to_migrate unmaps a PROT_NONE mapping in another address space, so the shared page still migrates")
    func tryToMigrateTakesProtNone() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 4
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 42)
        let child = try f.mm.fork()
        try child.mprotect(a, length: n * 4096, protection: .none)
        let args = setup(f, d, a, pages: n)
        // Still collected after unmap: the child's PROT_NONE mappings became migration entries.
        #expect(args.cpages == n)
        #expect(args.restored == 0)
        finalize(f, args)
        for i in 0..<n { #expect(try #require(child.pageTable.pteSlot(a + UInt64(i) << 12)).load().isProtNone) }
        f.check(devices: [d], others: [child])
        try child.mprotect(a, length: n * 4096, protection: .readWrite)
        #expect(try f.mismatches(a, pages: n, seed: 42) == [])
        #expect(try f.mismatches(a, pages: n, seed: 42, in: child) == [])
        f.finish(devices: [d], others: [child])
    }
}

extension DeviationTests {
    @Test("collect skips a PMD migration entry (src 0) instead of waiting on it")
    func collectSkipsPMDMigrationEntry() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        try f.fill(a, pages: 512, seed: 43)
        let pmd = try #require(f.mm.pageTable.pmdSlot(a, allocate: false))
        let mapped = pmd.load()
        #expect(mapped.isHuge)
        // Another migration of the folio holds it between its unmap and its remap.
        pmd.store(.migration(mapped.pfn, mode: .write, young: true, dirty: true))
        let args = setup(f, d, a, pages: 512, flags: [.system, .compound])
        #expect(args.cpages == 0 && args.npages == 512)
        #expect((0..<512).allSatisfy { args.src[$0] == 0 })
        finalize(f, args)
        #expect(pmd.load().isMigration)
        pmd.store(mapped)
        #expect(try f.mismatches(a, pages: 512, seed: 43) == [])
        f.finish(devices: [d])
    }
}

extension DeviationTests {
    @Test(
        "do_swap_page: a read fault maps the exclusive swapped-in folio writable (not dirty) in a writable VMA; the write after it takes no fault"
    )
    func swapInReadFaultMapsWritable() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 4
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 44)
        #expect(try f.mm.swapOut(a, pages: n).swapped == n)
        #expect(try f.mismatches(a, pages: n, seed: 44) == [])
        for i in 0..<n {
            let e = try #require(f.mm.pageTable.pteSlot(a + UInt64(i) << 12)).load()
            #expect(e.isPresent && e.isWritable && !e.isDirty)
            let exclusive = f.memory.page(e.pfn).test(.anonExclusive)
            #expect(exclusive)
        }
        let faults = f.mm.counters.faults(.swapIn)
        let total = FaultKind.allCases.reduce(0) { $0 + f.mm.counters.faults($1) }
        try f.fill(a, pages: n, seed: 45)
        #expect(FaultKind.allCases.reduce(0) { $0 + f.mm.counters.faults($1) } == total)
        #expect(f.mm.counters.faults(.swapIn) == faults)
        // A read-only VMA keeps the swapped-in page read-only.
        #expect(try f.mm.swapOut(a, pages: 1).swapped == 1)
        try f.mm.mprotect(a, length: 4096, protection: .read)
        #expect(try f.mismatches(a, pages: n, seed: 45) == [])
        #expect(try !#require(f.mm.pageTable.pteSlot(a)).load().isWritable)
        f.finish(devices: [d])
    }
}

extension DeviationTests {
    @Test(
        "A CPU fault on a device-private PTE whose page is locked retries until the unlock (a documented departure: do_swap_page sleeps on the lock)"
    )
    func devicePrivateLockedPageRetries() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 2
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 46)
        #expect(d.migrateToDevice(a, pages: n).migrated == n)
        let entry = try #require(f.mm.pageTable.pteSlot(a)).load()
        #expect(entry.isDevicePrivate)
        let page = FolioRef(head: f.memory.page(entry.pfn))
        #expect(holds(page.tryLock()))  // another migration holds the device page
        let spurious = f.mm.counters.faults(.spurious)
        let unlocker = SendableBox(page)
        let done = Flag()
        // Its own thread, not a Dispatch worker: the fault below spins, and a test run can hold every
        // worker of a 2-CPU machine's pool with spinning tests.
        let unlocking = try PosixThread.start {
            usleep(200_000)
            done.value.store(true, ordering: .releasing)
            unlocker.value.unlock()
        }
        #expect(try f.mismatches(a, pages: n, seed: 46) == [])
        unlocking.join()
        #expect(holds(done.value.load(ordering: .acquiring)), "the fault did not complete while the page was locked")
        #expect(f.mm.counters.faults(.spurious) > spurious)
        #expect(f.mm.counters.faults(.migrationWait) == 0)
        #expect(f.mm.counters.faults(.devicePrivate) == n)
        f.finish(devices: [d])
    }
}

extension DeviationTests {
    @Test(
        "dmirror_devmem_fault: a fault through a PTE of a PTE-mapped 2 MiB device folio migrates order 0, the fault page alone"
    )
    func migrateToRAMThroughPTEIsOrderZero() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.filledPMDRange(seed: 47)
        #expect(d.migrateToDevice(a, pages: 512).migrated == 512)
        #expect(try #require(f.mm.pageTable.pmdSlot(a, allocate: false)).load().isDevicePrivate)
        try f.mm.munmap(a, length: 4096)  // splits the device-private PMD into PTEs
        let before = d.stats.pagesToSystem.load(ordering: .relaxed)
        #expect(try f.mm.loadBytes(4096, from: a + 5 * 4096) == MMFixture.pattern(seed: 47, page: 5))
        #expect(d.stats.pagesToSystem.load(ordering: .relaxed) - before == 1)
        for k in 1..<512 {
            let e = try #require(f.mm.pageTable.pteSlot(a + UInt64(k) << 12)).load()
            #expect(e.isDevicePrivate == (k != 5), "page \(k): \(e)")
        }
        f.check(devices: [d])
        for k in 1..<512 {
            #expect(try f.mm.loadBytes(4096, from: a + UInt64(k) << 12) == MMFixture.pattern(seed: 47, page: k))
        }
        f.finish(devices: [d])
    }
}

extension DeviationTests {
    @Test("dmirror_fault: 32 pages per hmm_range_fault call, windows not aligned: 70 pages from page 3 take 3 walks")
    func faultWindowIs32() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        #expect(Device.faultWindow == 32)
        let a = try f.mm.mmap(length: 80 * 4096, protection: .readWrite)
        try f.fill(a, pages: 80, seed: 48)
        var r = MigrationResult()
        #expect(d.fault(a + 3 * 4096, a + 73 * 4096, write: false, result: &r) == 0)
        #expect(r.walks == 3)
        let (bytes, _) = try d.read(a, pages: 80)
        for k in 0..<80 { #expect(Array(bytes[k * 4096..<(k + 1) * 4096]) == MMFixture.pattern(seed: 48, page: k)) }
        f.finish(devices: [d])
    }
}

extension DeviationTests {
    @Test(
        "dmirror_migrate_to_device: windows of 512 pages from the start, not PMD-aligned: 1024 pages from page 8 take 2 windows, not 3"
    )
    func migrationWindowsNotAligned() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let size = UInt64(PageSize.pmdBytes)
        let buffer = try f.mm.mmap(length: 4 * PageSize.pmdBytes, protection: .readWrite)
        let a = (buffer + size - 1) & ~(size - 1)
        try f.fill(a, pages: 1040, seed: 49)
        let r = d.migrateToDevice(a + 8 * 4096, pages: 1024)
        #expect(r.errno == 0 && r.migrated == 1024)
        #expect(r.walks == 2)
        #expect(try f.mismatches(a, pages: 1040, seed: 49) == [])
        f.finish(devices: [d])
    }
}

extension DeviationTests {
    @Test(
        "A special PTE (vm_normal_page NULL): hmm_range_fault reports ERROR without a fault request and -EFAULT with one; collect skips it"
    )
    func specialPTE() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 4
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 50)
        let slot = try #require(f.mm.pageTable.pteSlot(a + 4096))
        let normal = slot.load()
        slot.store(PTE(rawValue: normal.rawValue | PTE.specialBit))  // as a VM_MIXEDMAP insert would map it
        let snap = try d.snapshot(a, pages: n)
        #expect(snap[1] == MirrorProt.error && snap[0] == MirrorProt.write)
        #expect(throws: MirrorError.errno(Errno.EFAULT)) { try d.read(a, pages: n) }
        let args = setup(f, d, a, pages: n)
        #expect(args.src[1] == 0 && args.cpages == n - 1)
        finalize(f, args)
        #expect(slot.load() == PTE(rawValue: normal.rawValue | PTE.specialBit))
        slot.store(normal)
        #expect(try f.mismatches(a, pages: n, seed: 50) == [])
        f.finish(devices: [d])
    }
}

extension DeviationTests {
    @Test(
        "Unified walk: a THP whose lock another thread holds is not split; its pages are ERROR and the walk goes on, as the RFC's hmm_vma_walk_split failure does"
    )
    func unifiedLockedTHPFillsError() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let size = UInt64(PageSize.pmdBytes)
        let buffer = try f.mm.mmap(length: 3 * PageSize.pmdBytes, protection: .readWrite)
        let a = (buffer + size - 1) & ~(size - 1)
        try f.mm.madvise(a, length: PageSize.pmdBytes, hugepage: true)
        try f.fill(a, pages: 520, seed: 51)
        let pmd = try #require(f.mm.pageTable.pmdSlot(a, allocate: false))
        let huge = pmd.load()
        #expect(huge.isHuge)
        let head = FolioRef(head: f.memory.page(huge.pfn))
        #expect(holds(head.tryLock()))
        let r = d.migrateOnFault(a, pages: 520)
        #expect(r.errno == Errno.ENOENT && r.migrated == 8 && r.lockFailures == 1)
        #expect(pmd.load() == huge)
        head.unlock()
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: 520, seed: 51) == [])
        f.finish(devices: [d])
    }
}
