import Glibc
import Synchronization
import Testing

@testable import HMMLab

/// `remove_migration_ptes()` through the reverse-map walk, and `split_folio()` in collect as
/// `__folio_split()` does it (unmap to migration entries, freeze, split, remap).
@Suite("Reverse map: remove_migration_ptes walks it; split_folio unmaps, freezes, splits and remaps")
struct ReverseMapTests {

    /// The counters of `mm` that these tests follow.
    struct Counts: Equatable, CustomStringConvertible {
        var rmapWalks = 0
        var tlbFlushes = 0
        var pmdSplits = 0
        var folioSplits = 0

        init(_ mm: AddressSpace) {
            rmapWalks = mm.counters.rmapWalks.load(ordering: .relaxed)
            tlbFlushes = mm.counters.tlbFlushes.load(ordering: .relaxed)
            pmdSplits = mm.counters.pmdSplits.load(ordering: .relaxed)
            folioSplits = mm.counters.folioSplits.load(ordering: .relaxed)
        }

        init(rmapWalks: Int, tlbFlushes: Int, pmdSplits: Int, folioSplits: Int) {
            self.rmapWalks = rmapWalks
            self.tlbFlushes = tlbFlushes
            self.pmdSplits = pmdSplits
            self.folioSplits = folioSplits
        }

        static func - (a: Counts, b: Counts) -> Counts {
            Counts(
                rmapWalks: a.rmapWalks - b.rmapWalks, tlbFlushes: a.tlbFlushes - b.tlbFlushes,
                pmdSplits: a.pmdSplits - b.pmdSplits, folioSplits: a.folioSplits - b.folioSplits)
        }

        var description: String {
            "rmap walks \(rmapWalks), TLB flushes \(tlbFlushes), PMD splits \(pmdSplits), folio splits \(folioSplits)"
        }
    }

    @Test(
        "migrate_vma_finalize: remove_migration_ptes walks the reverse map once per folio, even when only the caller maps the range"
    )
    func finalizeWalksReverseMap() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 256
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 21)
        let before = Counts(f.mm)
        let r = d.migrateToDevice(a, pages: n)
        #expect(r.errno == 0 && r.migrated == n)
        // Collect unmapped every page itself, so try_to_migrate had nothing left to walk for; finalize
        // walked once per source folio.
        #expect((Counts(f.mm) - before).rmapWalks == n)
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: n, seed: 21) == [])
        f.finish(devices: [d])
    }

    @Test(
        "remove_migration_ptes takes the object's reverse-map lock for reading: finalize waits while a writer holds it")
    func finalizeTakesObjectLock() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 64
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 22)
        let object = try #require(f.mm.vmas.first { $0.contains(a) }).object
        object.rmapLock.writeLock()  // anon_vma_lock_write, as a VMA change would hold it
        final class Job: @unchecked Sendable {
            let run: () -> Int
            let done = Atomic<Bool>(false)
            let migrated = Atomic<Int>(0)
            init(_ run: @escaping () -> Int) { self.run = run }
        }
        let job = Job { d.migrateToDevice(a, pages: n).migrated }
        var thread = pthread_t()
        let started = pthread_create(
            &thread, nil,
            { p in
                let job = Unmanaged<Job>.fromOpaque(p!).takeUnretainedValue()
                job.migrated.store(job.run(), ordering: .relaxed)
                job.done.store(true, ordering: .releasing)
                return nil
            }, Unmanaged.passUnretained(job).toOpaque())
        #expect(started == 0)
        usleep(200_000)
        let doneWhileLocked = job.done.load(ordering: .acquiring)
        #expect(!doneWhileLocked, "finalize went on while the object's lock was held for writing")
        object.rmapLock.unlock()
        pthread_join(thread, nil)
        let done = job.done.load(ordering: .acquiring)
        let migrated = job.migrated.load(ordering: .relaxed)
        #expect(done && migrated == n)
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: n, seed: 22) == [])
        f.finish(devices: [d])
    }

    @Test("migrate_vma_unmap's restore of a pinned page goes through the reverse map and leaves no migration entry")
    func restoreWalksReverseMap() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 16
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 23)
        // A pin on page 3: migrate_vma_check_page refuses it, so unmap restores it.
        let pinned = try #require(f.mm.pageTable.pteSlot(a + 3 * 4096)).load().pfn
        let folio = f.memory.folio(containing: pinned)
        f.memory.folioRef(folio).get()
        let before = Counts(f.mm)
        let args = MigrateVMA(mm: f.mm)
        f.mm.mmapLock.readLock()
        args.vma = f.mm.vma(containing: a)
        args.start = a
        args.end = a + UInt64(n) << 12
        args.pgmapOwner = d.owner
        args.flags = [.system]
        #expect(f.mm.migrateVMASetup(args) == 0)
        // No destinations: finalize restores the other sources too.
        f.mm.migrateVMAFinalize(args)
        f.mm.mmapLock.unlock()
        #expect(args.restored == 1)
        // One walk for the restored page in unmap (its check failed after collect unmapped it), one per
        // other source in finalize.
        #expect((Counts(f.mm) - before).rmapWalks == n)
        f.memory.put(folio)
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: n, seed: 23) == [])
        f.finish(devices: [d])
    }

    @Test(
        "before-collect: a PMD-mapped THP goes through split_folio: one frozen PMD split, one folio split, 512 remaps, data intact"
    )
    func beforeCollectSplitsThroughMigrationEntries() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true, splitPolicy: .beforeCollect)
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        try f.fill(a, pages: 512, seed: 24)
        #expect(try #require(f.mm.pageTable.pmdSlot(a, allocate: false)).load().isHuge)
        d.setAllocationFailure(FailureInjection(order9: 1))
        let before = Counts(f.mm)
        let r = d.migrateToDevice(a, pages: 512)
        #expect(r.errno == 0 && r.migrated == 512)
        #expect(r.splitsBeforeCollect == 1 && r.splitsAfterIsolation == 0)
        // unmap_folio froze the PMD into 512 PTE migration entries; collect then installed 512 more.
        #expect(r.migrationEntries == 2 * 512)
        let delta = Counts(f.mm) - before
        // unmap_folio: one walk of the folio; remap_page: one per new folio; finalize: one per source.
        // Flushes: pmdp_invalidate of the split, then collect's ptep_clear_flush per anon-exclusive page
        // and its flush_tlb_range.
        #expect(
            delta == Counts(rmapWalks: 1 + 512 + 512, tlbFlushes: 1 + 512 + 1, pmdSplits: 1, folioSplits: 1), "\(delta)"
        )
        #expect(r.tlbFlushes == 512 + 1)
        #expect(try d.snapshot(a, pages: 512).allSatisfy { $0 == MirrorProt.devicePrivateLocal | MirrorProt.write })
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: 512, seed: 24) == [])
        f.finish(devices: [d])
    }

    @Test("migrate_vma_split_folio: a PTE-mapped THP is split with one batched flush and migrates page by page")
    func pteMappedSplitBatchesFlush() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        try f.fill(a, pages: 512, seed: 25)
        // mprotect of half the THP splits its PMD (not the folio): 512 PTEs map the 2 MiB folio.
        try f.mm.mprotect(a + (1 << 20), length: 1 << 20, protection: .read)
        let pmd = try #require(f.mm.pageTable.pmdSlot(a, allocate: false)).load()
        #expect(!pmd.isHuge)
        let headPfn = try #require(f.mm.pageTable.pteSlot(a)).load().pfn
        #expect(f.memory.folio(containing: headPfn).order == PageSize.pmdOrder)
        let before = Counts(f.mm)
        let r = d.migrateToDevice(a, pages: 512)
        #expect(r.errno == 0 && r.migrated == 512)
        #expect(r.splitsBeforeCollect == 1)
        let delta = Counts(f.mm) - before
        #expect(delta.folioSplits == 1 && delta.pmdSplits == 0)
        // try_to_unmap_flush once for the split's 512 PTEs, then collect's flushes (one per anon-exclusive
        // page and one flush_tlb_range per PMD of the two VMAs' walks).
        #expect(delta.tlbFlushes == 1 + r.tlbFlushes, "\(delta), collect \(r.tlbFlushes)")
        #expect(r.migrationEntries == 512 + 512)
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: 512, seed: 25) == [])
        f.finish(devices: [d])
    }
}
