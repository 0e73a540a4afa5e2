import CLinux
import Glibc
import Synchronization

/// A device that mirrors one address space and owns device-private memory: the lab's dmirror
/// (lib/test_hmm.c), the device the kernel's HMM selftests drive.
///
/// It allocates device memory from the device pool (4 KiB pages and 2 MiB folios, with per-order
/// failure injection as `HMM_DMIRROR_FLAG_FAIL_ALLOC`), keeps a device page table under its lock,
/// subscribes to invalidations of the whole address space (`dmirror_interval_invalidate`), serves CPU
/// faults on its pages (`dmirror_devmem_fault`), and offers the ioctls the tests use: read and write
/// through `hmm_range_fault` (`HMM_DMIRROR_READ/WRITE`), migration to and from the device
/// (`MIGRATE_TO_DEV/SYS`), the unified fault-and-migrate (`MIGRATE_ON_FAULT_TO_DEV` of the RFC),
/// snapshot (`SNAPSHOT`) and release (`RELEASE`).
public final class Device: DevicePagemap, MMUIntervalNotifierOps, @unchecked Sendable {
    /// How the device answers the `MMU_NOTIFY_MIGRATE` invalidation its own migration raises.
    public enum SelfInvalidation: String, Sendable, CaseIterable {
        /// Ignore it, as dmirror does (`range->owner == dmirror->mdevice`).
        case skip
        /// Treat it like any invalidation: bump the sequence, so the caller's `read_retry` fails and it
        /// walks again (Jason Gunthorpe's point in the RFC review).
        case bump
    }

    /// Where a 2 MiB folio is split when the device cannot get a 2 MiB page.
    public enum SplitPolicy: String, Sendable, CaseIterable {
        /// Split before collect: the window is collected without `SELECT_COMPOUND`, so collect splits the
        /// folio (`split_folio`) and migrates it as 512 pages.
        case beforeCollect = "before-collect"
        /// Split after isolation: the folio is collected whole and split once unmapped
        /// (`migrate_vma_split_unmapped_folio`, Balbir Singh's series).
        case afterIsolation = "after-isolation"
    }

    /// `pgmap->owner`.
    let owner: UInt64
    public let memory: PhysicalMemory
    /// The device memory this device's `dev_pagemap` covers: one of ``PhysicalMemory/devicePools``
    /// (the first unless given), on its own node.
    public let pool: MemoryPool
    /// The address space the device mirrors (dmirror binds `current->mm` at open).
    public unowned(unsafe) let mm: AddressSpace
    var selfInvalidation: SelfInvalidation
    var splitPolicy: SplitPolicy
    /// Whether `migrate_to_ram` collects through the unified walk, as `migrate_vma_setup` does once the
    /// RFC (Aug 2025 v1) has removed `migrate_vma_collect_*()` (patch 3/4): `hmm_range_fault` with
    /// `REQ_MIGRATE` and `migrate_hmm_range_setup`. The runner sets it for the unified strategy; off,
    /// the classic collect (`migrate_vma_collect_pmd`) runs, as in a kernel without the RFC.
    var setupThroughUnifiedWalk = false
    /// Copy threads per migration and whether every copied page is verified.
    let copyWorkers: Int
    /// Given to the device's copy engines (``CopyEngine/workerThreadHook``).
    let copyWorkerHook: (@Sendable () -> Void)?
    public let verify: Bool
    private(set) var notifier: MMUIntervalNotifier!
    let pageTable: LabMutex<DevicePageTable>
    /// Whether the device pays test_hmm's own per-page costs (``Costs/driver``): a backing system page per
    /// device page, and an xarray page table.
    let driverCost: Bool
    private let injection: LabMutex<(settings: FailureInjection, rng: SplitMix64)>
    /// Whether any allocation failure is injected: an allocation reads this flag, not the mutex, when none is.
    private let injecting = Atomic<Bool>(false)
    let scratch = LabMutex<[MigrationContext]>([])
    let rangeScratch = LabMutex<[HMMRange]>([])

    /// Counters.
    let stats: DeviceStatistics
    /// The op thread (`clinux_job()`, 0 for none) whose invalidation last moved this device's notifier
    /// sequence, for ``crossJobRetry()``.
    private let invalidatingJob = Atomic<Int32>(0)
    /// Whether several op threads drive this device at once (`--jobs` above 1): then its own
    /// `MMU_NOTIFY_MIGRATE` is skipped only when no other op thread walks an overlapping range
    /// (``otherJobWalks(_:_:)``). Set before the jobs start.
    var concurrentJobs = false
    /// How long `dmirror_range_fault` retries a window before giving up with `-EBUSY`: the kernel's
    /// `HMM_RANGE_DEFAULT_TIMEOUT` unless ``RunConfig/rangeTimeoutNanoseconds`` says otherwise.
    var rangeTimeoutNanoseconds = Device.defaultRangeTimeoutNanoseconds
    /// With ``concurrentJobs``: the op threads between `mmu_interval_read_begin` and their last
    /// `mmu_interval_read_retry`, and the range each walks.
    let walksInFlight = LabMutex<[(job: Int32, start: UInt64, end: UInt64)]>([])

    private static let nextOwner = Atomic<UInt64>(0xD000)

    /// A device mirroring `mm`.
    /// `copyWorkerHook` runs on each copy worker thread before it copies (``CopyEngine/workerThreadHook``);
    /// `pool`: the device memory it owns (nil: the first device pool).
    public init(
        memory: PhysicalMemory, mm: AddressSpace, copyWorkers: Int = 1, verify: Bool = false,
        selfInvalidation: SelfInvalidation = .skip, splitPolicy: SplitPolicy = .afterIsolation,
        copyWorkerHook: (@Sendable () -> Void)? = nil, pool: MemoryPool? = nil
    ) {
        self.pool = pool ?? memory.device
        owner = Self.nextOwner.wrappingAdd(1, ordering: .relaxed).oldValue
        precondition(
            owner <= PageDescriptor.deviceOwnerMask, "owner token \(owner) does not fit a device page's private word")
        self.memory = memory
        driverCost = memory.costs.contains(.driver)
        let stats = DeviceStatistics()
        self.stats = stats
        pageTable = LabMutex(DevicePageTable(xarray: driverCost ? XArray(stats: stats) : nil))
        self.mm = mm
        self.selfInvalidation = selfInvalidation
        self.splitPolicy = splitPolicy
        self.copyWorkers = copyWorkers
        self.copyWorkerHook = copyWorkerHook
        self.verify = verify
        injection = LabMutex((.none, SplitMix64(seed: 0)))
        memory.register(self)
        notifier = mm.notifiers.insert(start: 0, length: AddressSpace.userRange.upperBound, ops: self)
    }

    deinit { close() }

    /// `dmirror_fops_release()` + `memunmap_pages()`: removes the device's notifier and its pagemap. The
    /// notifier and the pagemap registry hold the device, so it lives until closed; close it once its
    /// pages are gone (unmapped or released), before the address space goes. Idempotent.
    public func close() {
        guard let n = notifier else { return }
        mm.notifiers.remove(n)
        memory.unregister(owner: owner)
        notifier = nil
        rangeScratch.withLock { $0.removeAll() }  // their notifier references lead back here
        scratch.withLock { $0.removeAll() }
    }

    /// Makes device allocations fail with these probabilities (`HMM_DMIRROR_FLAG_FAIL_ALLOC` is order 9 = 1).
    func setAllocationFailure(_ settings: FailureInjection) {
        injection.withLock { $0 = (settings, SplitMix64(seed: settings.seed)) }
        injecting.store(settings.order0 > 0 || settings.order9 > 0, ordering: .releasing)
    }

    /// A locked device folio of `order` with one reference, marked as this device's, or nil
    /// (exhausted or injected failure). Models `dmirror_devmem_alloc_page` / `zone_device_folio_init`.
    ///
    /// With the driver cost, first the backing folio of the same order in system memory
    /// (`folio_alloc(GFP_HIGHUSER, order)`: not zeroed), recorded in the device page's
    /// `zone_device_data`; no backing folio, no device page. The device frame comes from the device
    /// pool's allocator, whose lock stands for `mdevice->lock` (the kernel pops the driver's free list,
    /// `free_pages` or `free_folios`, under that spinlock).
    func allocateDevicePage(order: Int) -> Folio? {
        guard let folio = takeDevicePage(order: order) else { return nil }
        countAllocated(folio.pageCount)
        return folio
    }

    /// ``allocateDevicePage(order:)`` but for the counters of the pages it got.
    @inline(__always)
    private func takeDevicePage(order: Int) -> Folio? {
        let injected =
            injecting.load(ordering: .acquiring)
            && injection.withLock { s -> Bool in
                let p = s.settings.probability(order: order)
                return p > 0 && s.rng.nextUnit() < p
            }
        var backing: Folio?
        if !injected, driverCost {
            guard case .success(let b) = memory.allocate(.system, order: order) else { return allocationFailed() }
            backing = b
        }
        guard !injected, case .success(let folio) = memory.allocate(from: pool, order: order) else {
            if let backing { memory.put(backing) }
            return allocationFailed()
        }
        let head = memory.folioRef(folio)
        head.setPrivate(PageDescriptor.devicePrivate(owner: owner, backing: backing?.pfn), ordering: .releasing)
        for i in 1..<folio.pageCount { head.page(i).setPrivate(owner, ordering: .releasing) }
        _ = head.tryLock()
        return folio
    }

    private func countAllocated(_ pages: Int) {
        stats.devicePagesAllocated.wrappingAdd(pages, ordering: .relaxed)
        if driverCost { stats.backingPagesAllocated.wrappingAdd(pages, ordering: .relaxed) }
    }

    private func allocationFailed() -> Folio? {
        stats.allocationFailures.wrappingAdd(1, ordering: .relaxed)
        return nil
    }

    /// Up to `count` locked single device pages with one reference each, written to `out`; returns how
    /// many. Without the driver cost, taken from the pool under one allocator lock (`alloc_pages_bulk`,
    /// as drivers that allocate device memory by the chunk do). With it, or with allocation failures
    /// injected, page by page through ``allocateDevicePage(order:)``, as dmirror's
    /// `dmirror_migrate_alloc_and_copy` calls `dmirror_devmem_alloc_page` per page.
    func allocateDevicePages(_ count: Int, into out: UnsafeMutablePointer<Pfn>) -> Int {
        guard count > 0 else { return 0 }
        if driverCost || injecting.load(ordering: .acquiring) {
            var got = 0
            for _ in 0..<count {
                if let folio = takeDevicePage(order: 0) {
                    out[got] = folio.pfn
                    got += 1
                }
            }
            countAllocated(got)
            return got
        }
        let got = memory.allocateBulk(from: pool, count: count, into: out)
        for k in 0..<got {
            let head = FolioRef(head: memory.page(out[k]))
            head.setPrivate(owner, ordering: .releasing)
            _ = head.tryLock()
        }
        if got < count { stats.allocationFailures.wrappingAdd(count - got, ordering: .relaxed) }
        stats.devicePagesAllocated.wrappingAdd(got, ordering: .relaxed)
        return got
    }

    /// `dmirror_devmem_free()` (the pagemap's `page_free`): counts the backing pages the memory frees for
    /// the folio.
    func pageFree(_ folio: Folio, backing: Pfn) {
        stats.backingPagesFreed.wrappingAdd(folio.pageCount, ordering: .relaxed)
    }

    /// A locked system folio with one reference (`vma_alloc_folio` + `folio_lock` in the fault path).
    func allocateSystemPage(order: Int) -> Folio? {
        guard case .success(let folio) = memory.allocate(.system, order: order) else { return nil }
        _ = memory.folioRef(folio).tryLock()
        return folio
    }

    // MARK: Notifier

    /// `dmirror_interval_invalidate()` → `dmirror_do_update()` (with the driver cost, `xa_erase` of each
    /// entry `xa_for_each_range` finds), with the RFC's patch 1 (August 2025 posting): a
    /// `MMU_NOTIFY_CLEAR` raised by the calling thread itself (a THP split inside its own walk) is
    /// skipped too. Mainline 7.2's dmirror does not skip it; the counts do not change (the
    /// invalidation is counted when raised), only whether the driver's walk must start again.
    /// `MMU_NOTIFY_EXCLUSIVE` is not skipped, as in dmirror: its `make_device_exclusive` passes no
    /// owner, so the event drops the page's old mapping before `dmirror_atomic_map` maps it again.
    public func invalidate(_ notifier: MMUIntervalNotifier, range: MMUNotifierRange, currentSeq: UInt64) -> Bool {
        if range.event == .clear, range.task != 0, range.task == UInt64(clinux_gettid()), selfInvalidation == .skip {
            stats.selfInvalidationsSkipped.wrappingAdd(1, ordering: .relaxed)
            return true
        }
        if range.event == .migrate, range.owner == owner {
            if selfInvalidation == .skip, !otherJobWalks(range.start, range.end) {
                stats.selfInvalidationsSkipped.wrappingAdd(1, ordering: .relaxed)
                return true
            }
            if selfInvalidation == .bump { stats.selfInvalidationsBumped.wrappingAdd(1, ordering: .relaxed) }
        }
        pageTable.withLock { pt in
            notifier.setSequence(currentSeq)
            pt.erase(range.start, range.end)
        }
        invalidatingJob.store(clinux_job(), ordering: .relaxed)
        return true
    }

    /// For a walk about to start again because the notifier sequence moved: 1 when the invalidation
    /// that moved it last came from another op thread of the run (`--jobs`), else 0
    /// (`cross_job_retries`). Lab bookkeeping: the kernel does not tell who invalidated.
    func crossJobRetry() -> Int {
        let j = invalidatingJob.load(ordering: .relaxed)
        return j != 0 && j != clinux_job() ? 1 : 0
    }

    /// The device page-table entries, sorted by address; `atomic` for a page mapped for atomic access
    /// (`DPT_XA_TAG_ATOMIC`).
    func deviceMappings() -> [(address: UInt64, pfn: Pfn, writable: Bool, atomic: Bool)] {
        pageTable.withLock { pt in
            pt.entries().map {
                (
                    address: $0.address, pfn: DevicePageTable.pfn(of: $0.entry),
                    writable: $0.entry & DevicePageTable.write != 0,
                    atomic: $0.entry & DevicePageTable.atomic != 0
                )
            }
        }
    }

    // MARK: Scratch arguments

    /// Migration arguments and a copy engine, reused across calls; several threads may migrate at once.
    final class MigrationContext: @unchecked Sendable {
        let args: MigrateVMA
        let copy: CopyEngine
        init(mm: AddressSpace, workers: Int, verify: Bool, hook: (@Sendable () -> Void)?) {
            args = MigrateVMA(mm: mm)
            copy = CopyEngine(workers: workers, verify: verify, workerThreadHook: hook)
        }
    }

    func withMigrationContext<T>(_ body: (MigrationContext) throws -> T) rethrows -> T {
        let context =
            scratch.withLock { $0.popLast() }
            ?? MigrationContext(mm: mm, workers: copyWorkers, verify: verify, hook: copyWorkerHook)
        defer {
            let t = context.copy.takeTotals()
            stats.bytesCopied.wrappingAdd(t.copied, ordering: .relaxed)
            stats.bytesCleared.wrappingAdd(t.cleared, ordering: .relaxed)
            stats.copyNanoseconds.wrappingAdd(Int(t.nanoseconds), ordering: .relaxed)
            stats.pagesVerified.wrappingAdd(t.verified, ordering: .relaxed)
            stats.verifyFailures.wrappingAdd(t.failures, ordering: .relaxed)
            context.args.vma = nil  // do not keep the VMA's mapping object alive
            scratch.withLock { $0.append(context) }
        }
        context.args.mm = mm
        context.args.faultPage = nil
        return try body(context)
    }

    func withRange<T>(capacity: Int, _ body: (HMMRange) throws -> T) rethrows -> T {
        let range =
            rangeScratch.withLock { list -> HMMRange? in
                guard let i = list.lastIndex(where: { $0.capacity >= capacity }) else { return nil }
                return list.remove(at: i)
            } ?? HMMRange(capacity: max(capacity, PageSize.pmdPages))
        defer { rangeScratch.withLock { $0.append(range) } }
        range.migrate = nil
        range.compoundMigration = false
        return try body(range)
    }
}

/// A device's counters.
final class DeviceStatistics: Sendable {
    let devicePagesAllocated = Atomic<Int>(0)
    /// Backing system pages (4 KiB each) allocated and freed with device pages (``Costs/driver``).
    let backingPagesAllocated = Atomic<Int>(0)
    let backingPagesFreed = Atomic<Int>(0)
    /// `xa_store` and `xa_erase` calls on the device page table (``Costs/driver``).
    let xarrayStores = Atomic<Int>(0)
    let xarrayErases = Atomic<Int>(0)
    let allocationFailures = Atomic<Int>(0)
    let pagesToDevice = Atomic<Int>(0)
    let pagesToSystem = Atomic<Int>(0)
    let hugeToDevice = Atomic<Int>(0)
    let hugeToSystem = Atomic<Int>(0)
    let cpuFaults = Atomic<Int>(0)
    let selfInvalidationsSkipped = Atomic<Int>(0)
    let selfInvalidationsBumped = Atomic<Int>(0)
    /// Walks repeated because the device's own invalidation bumped the sequence.
    let retriesFromSelfInvalidation = Atomic<Int>(0)
    let bytesCopied = Atomic<Int>(0)
    let bytesCleared = Atomic<Int>(0)
    let copyNanoseconds = Atomic<Int>(0)
    let pagesVerified = Atomic<Int>(0)
    /// Pages whose copy did not match its source (must stay 0).
    let verifyFailures = Atomic<Int>(0)
    public init() {}
}
