import CLinux
import Glibc
import Synchronization
import Testing

@testable import HMMLab

/// The per-CPU LRU add batches, isolation and drains of mm/swap.c (the `lru` cost).
@Suite("LRU: per-CPU add batches, isolation under the lruvec lock, lru_add_drain(_all)")
struct LRUTests {
    static let twoCPUs = clinux_allowed_cpu_count() >= 2

    /// A thread pinned to one CPU running a body (``start(_:_:)``, ``join()``).
    final class PinnedThread: @unchecked Sendable {
        let cpu: Int
        let body: () -> Void
        var pinned = false
        var thread = pthread_t()

        private init(_ cpu: Int, _ body: @escaping () -> Void) {
            self.cpu = cpu
            self.body = body
        }

        /// Starts `body` on a new thread pinned to `cpu` (not run if the thread cannot be pinned).
        static func start(_ cpu: Int, _ body: @escaping () -> Void) -> PinnedThread {
            let job = PinnedThread(cpu, body)
            let rc = pthread_create(
                &job.thread, nil,
                { raw in
                    let job = Unmanaged<PinnedThread>.fromOpaque(raw!).takeUnretainedValue()
                    job.pinned = clinux_pin_thread_to_cpu(Int32(job.cpu)) == 0 && Int(clinux_current_cpu()) == job.cpu
                    if job.pinned { job.body() }
                    return nil
                }, Unmanaged.passUnretained(job).toOpaque())
            precondition(rc == 0, "pthread_create: \(rc)")
            return job
        }

        /// Waits for the thread; false if it could not be pinned.
        func join() -> Bool {
            pthread_join(thread, nil)
            return pinned
        }
    }

    /// Runs `body` on a new thread pinned to `cpu` and waits for it; false if the thread could not be pinned.
    @discardableResult
    static func onCPU(_ cpu: Int, _ body: @escaping () -> Void) -> Bool {
        PinnedThread.start(cpu, body).join()
    }

    func fixture(costs: Costs = .all) throws -> MMFixture { try MMFixture(costs: costs) }

    func onLRU(_ f: MMFixture, _ a: UInt64, pages: Int) -> Int {
        (0..<pages).count(where: { k in
            guard let pte = f.mm.pageTable.pteSlot(a + UInt64(k) << 12)?.load(), pte.isPresent else { return false }
            return f.memory.page(pte.pfn).test(.lru)
        })
    }

    func references(_ f: MMFixture, _ a: UInt64, page k: Int) -> Int32 {
        guard let pte = f.mm.pageTable.pteSlot(a + UInt64(k) << 12)?.load(), pte.isPresent else { return -1 }
        return f.memory.page(pte.pfn).refCount
    }

    @Test(
        "a faulted folio waits in a CPU's batch, not PG_lru and with the batch's reference, until 31 are added or a drain"
    )
    func faultLeavesFolioInBatch() throws {
        let f = try fixture()
        let a = try f.mm.mmap(length: 64 * 4096, protection: .readWrite)
        try f.fill(a, pages: 30, seed: 1)
        #expect(onLRU(f, a, pages: 30) == 0)
        #expect(f.memory.lruPending == 30)
        #expect((0..<30).allSatisfy { references(f, a, page: $0) == 2 }, "the mapping's and the batch's")
        // The 31st fills a batch unless the thread moved to another CPU meanwhile: all or nothing goes on.
        try f.fill(a + 30 * 4096, pages: 1, seed: 2)
        let on = onLRU(f, a, pages: 31)
        #expect(on == 31 || (on == 0 && f.memory.lruPending == 31))
        f.memory.lruAddDrainAll()
        #expect(onLRU(f, a, pages: 31) == 31 && f.memory.lruPending == 0)
        #expect((0..<31).allSatisfy { references(f, a, page: $0) == 1 })
        #expect(Invariants.check([f.mm]).isEmpty)
        f.finish()
    }

    @Test("a 2 MiB folio is not cached: it goes on the LRU at once (folio_may_be_lru_cached)")
    func largeFolioGoesStraightToLRU() throws {
        let f = try fixture()
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        try f.mm.store(UInt8(1), at: a)
        let pmd = try #require(f.mm.pageTable.pmdSlot(a, allocate: false)).load()
        try #require(pmd.isHuge)
        let head = FolioRef(head: f.memory.page(pmd.pfn))
        let onList = head.test(.lru)
        let refs = head.refCount
        #expect(onList)
        #expect(refs == 1)
        #expect(f.memory.lruPending == 0)
        f.finish()
    }

    @Test(
        "migrating pages faulted on another CPU: one lru_add_drain_all in migrate_device_unmap, isolation under the lock",
        .enabled(if: twoCPUs))
    func migrateDrainsOtherCPUsOnce() throws {
        let f = try fixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 256  // one window: one migrate_device_unmap; 256 = 8 * 31 + 8 left in CPU 0's batch
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        var failure: (any Error)?
        #expect(Self.onCPU(0) { do { try f.fill(a, pages: n, seed: 3) } catch { failure = error } })
        #expect(failure == nil)
        #expect(onLRU(f, a, pages: n) == n - n % 31 && f.memory.lruPending == n % 31)
        let drainAlls = f.memory.lruDrainAlls
        let locks = f.memory.lruLockAcquisitions.taken
        var r = MigrationResult()
        #expect(Self.onCPU(1) { r = d.migrateToDevice(a, pages: n) })
        #expect(r.errno == 0 && r.migrated == n, "the drain let every page be isolated")
        #expect(f.memory.lruDrainAlls - drainAlls == 1)
        #expect(f.memory.lruLockAcquisitions.taken - locks >= n, "one lruvec lock per isolation")
        #expect(Invariants.check([f.mm], devices: [d]).isEmpty)
        #expect(try f.mismatches(a, pages: n, seed: 3) == [])
        d.release()
        d.close()
        f.finish()
    }

    @Test(
        "on the same CPU the local lru_add_drain at the start of migrate_device_unmap is enough: no lru_add_drain_all",
        .enabled(if: twoCPUs))
    func migrateOnSameCPUNeedsNoDrainAll() throws {
        let f = try fixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 100
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        var r = MigrationResult()
        var drainAlls = 0
        #expect(
            Self.onCPU(0) {
                try? f.fill(a, pages: n, seed: 4)
                drainAlls = f.memory.lruDrainAlls
                r = d.migrateToDevice(a, pages: n)
                drainAlls = f.memory.lruDrainAlls - drainAlls
            })
        #expect(r.errno == 0 && r.migrated == n)
        #expect(drainAlls == 0)
        #expect(try f.mismatches(a, pages: n, seed: 4) == [])
        d.release()
        d.close()
        f.finish()
    }

    @Test("without the lru cost: PG_lru at once, no batch, no drain, no lock")
    func withoutCostIsTheDirectModel() throws {
        let f = try fixture(costs: [.flush, .driver])
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 100
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 5)
        #expect(onLRU(f, a, pages: n) == n && f.memory.lruPending == 0)
        #expect((0..<n).allSatisfy { references(f, a, page: $0) == 1 })
        let r = d.migrateToDevice(a, pages: n)
        #expect(r.errno == 0 && r.migrated == n)
        #expect(f.memory.lruDrainAlls == 0 && f.memory.lruBatchMoves == 0 && f.memory.lruLockAcquisitions.taken == 0)
        #expect(Invariants.check([f.mm], devices: [d]).isEmpty)
        #expect(try f.mismatches(a, pages: n, seed: 5) == [])
        d.release()
        d.close()
        f.finish()
    }

    @Test(
        "a folio unmapped while in another CPU's batch lives on the batch's reference; the drain frees it",
        .enabled(if: twoCPUs))
    func drainFreesFolioWhoseLastReferenceIsTheBatch() throws {
        let f = try fixture()
        let a = try f.mm.mmap(length: 8 * 4096, protection: .readWrite)
        let free = f.memory.system.allocator.freeFrames
        #expect(Self.onCPU(0) { try? f.fill(a, pages: 8, seed: 6) })
        let afterFault = f.memory.system.allocator.freeFrames
        #expect(afterFault < free)
        #expect(Self.onCPU(1) { try? f.mm.munmap(a, length: 8 * 4096) })
        #expect(f.memory.lruPending == 8, "CPU 0's batch still holds all 8")
        let held = f.memory.system.allocator.freeFrames
        f.memory.lruAddDrainAll()
        #expect(f.memory.lruPending == 0)
        #expect(f.memory.system.allocator.freeFrames == held + 8, "the 8 folios freed by the drain")
        f.finish()
    }

    @Test(
        "wp_can_reuse_anon_folio drains this CPU's batch, so the only mapper reuses its page instead of copying",
        .enabled(if: twoCPUs))
    func writeFaultReuseDrainsLocalBatch() throws {
        let f = try fixture()
        let a = try f.mm.mmap(length: 4096, protection: .readWrite)
        var child: AddressSpace?
        // Fault and fork on CPU 0: the page waits in CPU 0's batch, read-only and no longer exclusive.
        #expect(
            Self.onCPU(0) {
                try? f.mm.store(UInt64(7), at: a)
                child = try? f.mm.fork()
            })
        let forked = try #require(child)
        // The child unmaps on CPU 1: the parent is the only mapper.
        #expect(Self.onCPU(1) { try? forked.munmap(a, length: 4096) })
        #expect(references(f, a, page: 0) == 2, "the mapping's and CPU 0's batch's")
        var seen: (reuse: Int, cow: Int, drains: Int) = (0, 0, 0)
        #expect(
            Self.onCPU(0) {
                let drains = f.memory.lruDrains
                try? f.mm.store(UInt64(8), at: a)
                seen = (f.mm.counters.faults(.reuse), f.mm.counters.faults(.copyOnWrite), f.memory.lruDrains - drains)
            })
        #expect(seen.reuse == 1 && seen.cow == 0, "reused, not copied")
        #expect(seen.drains == 1)
        #expect(try f.mm.load(UInt64.self, from: a) == 8)
        f.finish([forked])
    }

    @Test(
        "faults on two CPUs while a third thread drains every batch: no reference lost or leaked", .enabled(if: twoCPUs)
    )
    func concurrentAddAndDrainAll() throws {
        let f = try fixture()
        let n = 500
        let a = try f.mm.mmap(length: 2 * n * 4096, protection: .readWrite)
        let done = Atomic<Int>(0)
        let workers = (0..<2).map { cpu in
            PinnedThread.start(cpu) {
                for k in 0..<n { try? f.mm.store(UInt64(k), at: a + UInt64(cpu * n + k) << 12) }
                done.wrappingAdd(1, ordering: .releasing)
            }
        }
        while done.load(ordering: .acquiring) < 2 { f.memory.lruAddDrainAll() }
        #expect(workers.allSatisfy { $0.join() })
        #expect(Invariants.check([f.mm]).isEmpty)
        #expect(onLRU(f, a, pages: 2 * n) == 2 * n)
        for cpu in 0..<2 { #expect(try f.mm.load(UInt64.self, from: a + UInt64(cpu * n + 7) << 12) == 7) }
        f.finish()
    }
}
