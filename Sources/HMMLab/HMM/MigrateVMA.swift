import Synchronization

/// The arguments and state of one `migrate_vma` call (`struct migrate_vma`, include/linux/migrate.h),
/// with the lab's counters. Allocate one per caller and reuse it window after window: the `src` and
/// `dst` arrays (``PfnArray``) are allocated once, when it is made, and freed with it, so a migration
/// allocates nothing per page.
final class MigrateVMA: @unchecked Sendable {
    /// The address space and VMA the range lies in.
    public unowned(unsafe) var mm: AddressSpace
    var vma: VMA?
    public var start: UInt64 = 0
    public var end: UInt64 = 0
    /// `MIGRATE_PFN_*` words, one per page.
    public let src: PfnArray
    public let dst: PfnArray
    /// Pages the arrays can hold.
    public var capacity: Int { src.capacity }
    /// Entries filled by collect.
    var npages = 0
    /// Pages collected, then pages still migrating after unmap.
    var cpages = 0
    /// `pgmap_owner`.
    var pgmapOwner: UInt64 = 0
    public var flags: MigrateSelect = []
    /// The locked device page a CPU fault is migrating (`fault_page`).
    var faultPage: Pfn?

    /// How many pages ahead the per-page loops after the copy (`migrate_vma_pages`, finalize) prefetch
    /// the descriptors they will take atomics on.
    static let prefetchDistance = 8

    // Lab counters, accumulated over calls until reset.
    /// TLB flushes (`flush_tlb_range` calls): one per PMD batch in collect.
    var tlbFlushes = 0
    /// `lru_add_drain_all` calls made by `migrate_device_unmap` (at most one per call).
    var lruDrains = 0
    /// Pages restored by unmap (pinned, not isolated, still mapped).
    var restored = 0
    /// 2 MiB folios split during collect (`migrate_vma_split_folio` or the collect fallback).
    var splitsBeforeCollect = 0
    /// 2 MiB folios split after isolation (`migrate_vma_split_unmapped_folio`).
    var splitsAfterIsolation = 0
    /// Pages whose migration `pages` refused (expected-refcount mismatch, …).
    public var refused = 0
    /// Migration entries installed (PTE or PMD), by collect, the unified walk or `try_to_migrate`.
    var migrationEntries = 0
    /// Folios skipped because `folio_trylock` failed.
    var lockFailures = 0
    /// References taken by an injected pin between collect and `pages`, dropped after finalize.
    var injectedPins: [Folio] = []

    public init(mm: AddressSpace, capacity: Int = PageSize.pmdPages) {
        self.mm = mm
        src = PfnArray(capacity: capacity)
        dst = PfnArray(capacity: capacity)
    }

    /// The folio of the fault page, if any (`page_folio(fault_page)`).
    var faultFolio: Folio? { faultPage.map { mm.memory.folio(containing: $0) } }

    /// Resets the lab counters.
    func resetCounters() {
        tlbFlushes = 0
        lruDrains = 0
        restored = 0
        splitsBeforeCollect = 0
        splitsAfterIsolation = 0
        refused = 0
        migrationEntries = 0
        lockFailures = 0
    }
}

extension AddressSpace {
    /// `migrate_vma_setup()`: validates the arguments, collects the range's pages (installing migration
    /// entries under the PTE lock as it goes) and unmaps them, leaving locked, unmapped sources whose
    /// `src` entries carry `MIGRATE_PFN_MIGRATE`. The caller holds the mmap lock for reading.
    ///
    /// - Returns: 0, or `-EINVAL` for a bad range, VMA or fault page.
    func migrateVMASetup(_ args: MigrateVMA) -> Int32 {
        args.start &= PageSize.mask
        args.end &= PageSize.mask
        let pages = Int((args.end &- args.start) >> PageSize.shift)  // wrapping: the guard below refuses end <= start
        guard let vma = args.vma, vma.isMigratable else { return Errno.EINVAL }  // is_vm_hugetlb_page(), VM_SPECIAL
        guard args.end > args.start, pages > 0, pages <= args.capacity else { return Errno.EINVAL }
        guard args.start >= vma.start, args.start < vma.end, args.end > vma.start, args.end <= vma.end else {
            return Errno.EINVAL
        }
        if let fault = args.faultPage {
            let head = memory.folioRef(containing: fault)
            guard head.test(.zoneDevice), head.isLocked else { return Errno.EINVAL }
        }
        args.src.update(repeating: 0, count: pages)
        args.dst.update(repeating: 0, count: pages)
        args.cpages = 0
        args.npages = 0
        migrateVMACollect(args)
        if args.cpages > 0 { migrateVMAUnmap(args) }
        return 0
    }

    /// `migrate_vma_collect()`: one walk under a `MMU_NOTIFY_MIGRATE` invalidation tagged with the owner.
    func migrateVMACollect(_ args: MigrateVMA) {
        let range = MMUNotifierRange(start: args.start, end: args.end, event: .migrate, owner: args.pgmapOwner)
        notifiers.invalidateRangeStart(range)
        var ops = MigrateCollectWalk(args: args)
        _ = walkPageRange(args.start, args.end, &ops)
        ops.publish(to: args)
        notifiers.invalidateRangeEnd(range)
        args.end = pageAddress(args.start, args.npages)
    }

    /// `migrate_vma_unmap()` → `migrate_device_unmap()`.
    func migrateVMAUnmap(_ args: MigrateVMA) {
        args.cpages = migrateDeviceUnmap(args.src, npages: args.npages, faultPage: args.faultPage, args: args)
    }

    /// `migrate_device_unmap()`: drains this CPU's LRU add batch (`lru_add_drain`), isolates each
    /// collected system folio from the LRU (`folio_isolate_lru`; the first one found off the LRU drains
    /// every CPU's batch first, `lru_add_drain_all`, once per call), unmaps what is still mapped
    /// (`try_to_migrate` through the reverse map), applies the pin check, and restores every source
    /// that cannot migrate (`folio_putback_lru`). Returns how many sources still migrate.
    func migrateDeviceUnmap(_ src: borrowing PfnArray, npages: Int, faultPage: Pfn?, args: MigrateVMA?) -> Int {
        let faultFolio = faultPage.map { memory.folio(containing: $0) }
        var restore = 0
        var allowDrain = true
        var unmapped = 0
        var rmap = RmapCache()
        memory.lruAddDrain()
        var i = 0
        while i < npages {
            guard let pfn = MigratePfn.pfn(src[i]) else {
                if src[i] & MigratePfn.migrate != 0 { unmapped += 1 }
                i += 1
                continue
            }
            let folio = memory.folio(containing: pfn)
            let head = memory.folioRef(folio)
            let nr = folio.pageCount
            if nr > 1 { src[i] |= MigratePfn.compound }
            defer { i += nr }
            let zoneDevice = head.test(.zoneDevice)
            if !zoneDevice {
                if !head.test(.lru), allowDrain {
                    // In a CPU's add batch (whose reference would fail the check below), or isolated.
                    memory.lruAddDrainAll()
                    args?.lruDrains += 1
                    allowDrain = false
                }
                guard memory.folioIsolateLRU(folio) else {  // takes a reference
                    src[i] &= ~MigratePfn.migrate
                    restore += 1
                    continue
                }
                // The reference collect took: never the last (isolation holds one).
                if head.putTestZero() { preconditionFailure("\(folio) freed while isolated") }
            }
            if head.mapCount > 0 {
                let installed = tryToMigrate(folio, cache: &rmap)
                args?.migrationEntries += installed
            }
            if head.mapCount > 0 || !migrateVMACheckPage(pfn, head: head, faultPage: faultPage) {
                if !zoneDevice {
                    head.get()
                    memory.folioPutbackLRU(folio)
                }
                src[i] &= ~MigratePfn.migrate
                restore += 1
                continue
            }
            unmapped += 1
        }
        var k = 0
        while k < npages && restore > 0 {
            defer { k += 1 }
            guard let pfn = MigratePfn.pfn(src[k]), src[k] & MigratePfn.migrate == 0 else { continue }
            let folio = memory.folio(containing: pfn)
            AddressSpace.removeMigrationPTEs(src: folio, dst: folio, memory: memory, cache: &rmap)  // remove_migration_ptes(folio, folio, 0)
            src[k] = 0
            if folio != faultFolio { memory.folioRef(folio).unlock() }
            memory.put(folio)
            restore -= 1
            args?.restored += 1
        }
        return unmapped
    }

    /// `migrate_vma_check_page()`: a folio is migratable when its references, less the ones the
    /// migration itself holds and the page cache's (`folio_mapping`: a shmem or file folio; no
    /// `folio_has_private` in the lab), do not exceed its mappings; an extra reference is a pin.
    /// `head` is the descriptor of `pfn`'s folio head.
    @inline(__always)
    func migrateVMACheckPage(_ pfn: Pfn, head: FolioRef, faultPage: Pfn?) -> Bool {
        var extra: Int32 = 1 + (pfn == faultPage ? 1 : 0)
        if head.test(.zoneDevice) { extra += 1 }
        if !head.test(.anon), head.hasMapping { extra += 1 }
        return head.refCount - extra <= head.mapCount
    }

    /// `try_to_migrate()`: replaces every remaining mapping of a locked folio, in any address space,
    /// with a migration entry, through the reverse map: a PMD mapping of a 2 MiB folio (present or
    /// device-private) with a PMD migration entry (`set_pmd_migration_entry`), or with `splitHugePMD`
    /// by 512 PTE migration entries (`split_huge_pmd_locked(..., freeze = true)`); PTE mappings page by
    /// page (`try_to_migrate_one`; a device-exclusive PTE, a PFN swap PTE that maps the page, becomes a
    /// readable or read-exclusive migration entry). Returns the migration entries installed.
    ///
    /// Flushes: each PTE of a present page cleared is one `ptep_clear_flush`, unless `batchFlush`
    /// defers them (`set_tlb_ubc_flush_pending`), and then one `try_to_unmap_flush()` is counted when the
    /// walk ends, as `unmap_folio` calls it right after. A frozen PMD split flushes in `pmdp_invalidate`.
    ///
    /// Departure from the kernel: the PTE mappings of a large folio are walked page by page, so the
    /// object's reverse-map lock is taken per page there (the kernel walks the folio once).
    /// `cache` as for ``rmapWalk(_:in:locked:cache:_:)``.
    @discardableResult
    func tryToMigrate(_ folio: Folio, flags: TTUFlags = [], cache: inout RmapCache) -> Int {
        let memory = self.memory
        let head = memory.folioRef(folio)
        let locked = flags.contains(.rmapLocked)
        var installed = 0
        var flushPending = false
        if folio.order > 0 {
            AddressSpace.rmapWalk(folio.pfn, in: memory, locked: locked, cache: &cache) { mm, _, address in
                guard isPMDAligned(address), let pmd = mm.pageTable.pmdSlot(address, allocate: false) else { return }
                if flags.contains(.splitHugePMD) {
                    installed += mm.splitHugePMDFreezing(pmd, address: address, folio: folio)
                    return
                }
                let range = MMUNotifierRange(start: address, end: address + PageSize.pmdSize, event: .migrate)
                mm.notifiers.invalidateRangeStart(range)
                let lock = mm.pageTable.lock(tableOf: pmd)
                let e = pmd.load()
                if (e.isHuge || e.isDevicePrivate), e.pfn == folio.pfn {
                    let exclusive = head.test(.anonExclusive)
                    let writable = e.isHuge ? e.isWritable : e.isWritableDevicePrivate
                    let mode: PTE.MigrationMode = writable ? .write : exclusive ? .readExclusive : .read
                    pmd.store(.migration(folio.pfn, mode: mode, young: true, dirty: e.isHuge ? e.isDirty : true))
                    installed += 1
                    if e.isHuge, e.isDirty { head.markDirty() }
                    mm.removeRmap(folio)
                    memory.put(folio)
                    mm.flushTLB()
                }
                lock.unlock()
                mm.notifiers.invalidateRangeEnd(range)
            }
            if head.mapCount == 0 { return installed }
        }
        for i in 0..<folio.pageCount {
            let pfn = folio.pfn + i
            AddressSpace.rmapWalk(pfn, in: memory, locked: locked, cache: &cache) { mm, _, address in
                guard let slot = mm.pageTable.pteSlot(address) else { return }
                let range = MMUNotifierRange(start: address, end: address + PageSize.size, event: .migrate)
                mm.notifiers.invalidateRangeStart(range)
                let lock = mm.pageTable.lock(tableOf: slot)
                let e = slot.load()
                if e.isPresent, e.pfn == pfn {  // a PROT_NONE (NUMA-hinting) PTE is present too
                    let exclusive = memory.page(pfn).test(.anonExclusive)
                    let mode: PTE.MigrationMode = e.isWritable ? .write : exclusive ? .readExclusive : .read
                    slot.store(
                        .migration(pfn, mode: mode, young: e.isYoung, dirty: e.isDirty, softDirty: e.isSoftDirty))
                    installed += 1
                    if e.isDirty { head.markDirty() }
                    mm.removeRmap(folio)
                    memory.put(folio)
                    if flags.contains(.batchFlush) {
                        flushPending = true  // set_tlb_ubc_flush_pending
                    } else {
                        mm.flushTLB()  // ptep_clear_flush
                    }
                } else if e.isDevicePrivate, e.pfn == pfn {
                    let mode: PTE.MigrationMode = e.isWritableDevicePrivate ? .write : .read
                    slot.store(.migration(pfn, mode: mode, young: true, dirty: true, softDirty: e.swapSoftDirty))
                    installed += 1
                    mm.removeRmap(folio)
                    memory.put(folio)
                } else if e.isDeviceExclusive, e.pfn == pfn {
                    // A PFN swap PTE that maps the page: not writable, neither young nor dirty.
                    let mode: PTE.MigrationMode = memory.page(pfn).test(.anonExclusive) ? .readExclusive : .read
                    slot.store(.migration(pfn, mode: mode, young: false, dirty: false, softDirty: e.swapSoftDirty))
                    installed += 1
                    mm.removeRmap(folio)
                    memory.put(folio)
                }
                lock.unlock()
                mm.notifiers.invalidateRangeEnd(range)
            }
        }
        if flushPending { flushTLB() }  // try_to_unmap_flush
        return installed
    }
}

/// The `TTU_*` flags of `try_to_migrate()` (include/linux/rmap.h) the lab models.
struct TTUFlags: OptionSet {
    let rawValue: UInt8
    /// `TTU_SPLIT_HUGE_PMD`: a PMD mapping of the folio is split, freezing its pages into PTE migration entries.
    static let splitHugePMD = TTUFlags(rawValue: 1 << 0)
    /// `TTU_RMAP_LOCKED`: the caller holds the object's reverse-map lock (`rmap_walk_locked`).
    static let rmapLocked = TTUFlags(rawValue: 1 << 1)
    /// `TTU_BATCH_FLUSH`: the PTE flushes are deferred to one `try_to_unmap_flush()`.
    static let batchFlush = TTUFlags(rawValue: 1 << 2)
    /// `TTU_SYNC`: page table locks are always taken (the lab always takes them).
    static let sync = TTUFlags(rawValue: 1 << 3)
}

/// The collect walk: `migrate_vma_collect_pmd()` and `migrate_vma_collect_hole()` (mm/migrate_device.c).
struct MigrateCollectWalk: PageWalkOps {
    static var hasPmdEntry: Bool { true }
    static var hasPteEntry: Bool { false }
    static var hasPteHole: Bool { true }

    // The arguments, read once (`migrate->src`, `dst`, `start`, `flags`, `pgmap_owner`, `fault_page`),
    // and the counts the walk keeps, handed back by ``publish(to:)``: no class access per page.
    let src: UnsafeMutablePointer<UInt64>
    let dst: UnsafeMutablePointer<UInt64>
    let rangeStart: UInt64
    let flags: MigrateSelect
    let pgmapOwner: UInt64
    let faultPage: Pfn?
    let faultFolio: Folio?
    var npages = 0
    var cpages = 0
    var tlbFlushes = 0
    var lockFailures = 0
    var migrationEntries = 0
    var splitsBeforeCollect = 0

    init(args: MigrateVMA) {
        src = args.src.words
        dst = args.dst.words
        rangeStart = args.start
        flags = args.flags
        pgmapOwner = args.pgmapOwner
        faultPage = args.faultPage
        faultFolio = args.faultFolio
        npages = args.npages
        cpages = args.cpages
    }

    /// Writes the walk's results back to the arguments.
    func publish(to args: MigrateVMA) {
        args.npages = npages
        args.cpages = cpages
        args.tlbFlushes += tlbFlushes
        args.lockFailures += lockFailures
        args.migrationEntries += migrationEntries
        args.splitsBeforeCollect += splitsBeforeCollect
    }

    /// `migrate_vma_collect_skip()`.
    mutating func skip(_ start: UInt64, _ end: UInt64) -> Int32 {
        var a = start
        while a < end {
            dst[npages] = 0
            src[npages] = 0
            npages += 1
            a += PageSize.size
        }
        return 0
    }

    /// `migrate_vma_collect_hole()`.
    mutating func hole(_ start: UInt64, _ end: UInt64, vma: VMA?) -> Int32 {
        guard let vma, vma.isAnonymous else { return skip(start, end) }  // only anonymous memory is populated
        if flags.contains(.compound), isPMDAligned(start), isPMDAligned(end) {
            src[npages] = MigratePfn.migrate | MigratePfn.compound
            dst[npages] = 0
            npages += 1
            cpages += 1
            return skip(start + PageSize.size, end)
        }
        var a = start
        while a < end {
            src[npages] = MigratePfn.migrate
            dst[npages] = 0
            npages += 1
            cpages += 1
            a += PageSize.size
        }
        return 0
    }

    mutating func pteHole(_ address: UInt64, _ next: UInt64, depth: Int, _ walk: inout PageWalk) -> Int32 {
        hole(address, next, vma: walk.vma)
    }

    mutating func pmdEntry(_ pmd: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout PageWalk) -> Int32 {
        walk.action = .continue
        // Held once per PMD and passed down borrowed: no reference count per page.
        let mm: AddressSpace = walk.mm
        let injector = mm.injector
        let vma = walk.vma!
        let faultFolio = faultFolio
        var unmapped = 0
        while true {  // again:
            let pmdEntry = pmd.load()
            if pmdEntry.isHuge || pmdEntry.isSwapFormat {
                let r = collectHugePMD(pmd, start, end, mm: mm, vma: vma, faultFolio: faultFolio)
                if r == Errno.EAGAIN { continue }
                if r == 0 { return 0 }
            }
            if pmd.load().isNone { return hole(start, end, vma: vma) }
            guard let table = mm.pageTable.pteTable(under: pmd, allocate: false) else { continue }
            let first = mm.pageTable.slot(in: table, level: .pte, address: start)
            let lock = mm.pageTable.lock(tableOf: first)
            var address = pageAddress(start, npages - pageCount(rangeStart, start))
            // `address` resumes after entries already recorded for this PMD (a retry after a split).
            var resplit = false
            let scanFrom = address
            defer { walk.ptesVisited += pageCount(scanFrom, address) }
            scan: while address < end {
                let slot = mm.pageTable.slot(in: table, level: .pte, address: address)
                let result = collectPTE(
                    slot, address: address, mm: mm, injector: injector, vma: vma, faultFolio: faultFolio)
                switch result {
                case .record(let mpfn, let wasPresent):
                    if wasPresent { unmapped += 1 }
                    dst[npages] = 0
                    src[npages] = mpfn
                    npages += 1
                    address += PageSize.size
                case .split(let folio):
                    lock.unlock()
                    if !splitForMigration(folio, mm: mm) {
                        flushCollected(mm, unmapped: unmapped)
                        return skip(address, end)
                    }
                    resplit = true
                    break scan
                }
            }
            if resplit { continue }  // goto again
            lock.unlock()
            flushCollected(mm, unmapped: unmapped)
            return 0
        }
    }

    /// The PMD's batch flush: when anything was unmapped, the `flush_tlb_range()` at the end of
    /// `migrate_vma_collect_pmd()`, after the PTE lock is dropped. (Each anon-exclusive present page's
    /// `ptep_clear_flush()` is made in ``collectPTE``, under the lock.)
    mutating func flushCollected(_ mm: AddressSpace, unmapped: Int) {
        guard unmapped > 0 else { return }
        flush(mm)
    }

    /// One TLB flush made by this collect: counted in the call's `tlbFlushes` and paid by the mm.
    @inline(__always) mutating func flush(_ mm: AddressSpace) {
        tlbFlushes += 1
        mm.flushTLB()
    }

    enum PTEResult {
        /// Record this `src` word; `wasPresent` counts toward the TLB flush.
        case record(UInt64, wasPresent: Bool)
        /// A large folio must be split first.
        case split(Folio)
    }

    /// One PTE of `migrate_vma_collect_pmd()`, under the PTE lock. A special PTE other than the zero
    /// page (`vm_normal_page` NULL) is skipped (mpfn 0).
    mutating func collectPTE(
        _ slot: EntrySlot, address: UInt64, mm: AddressSpace, injector: FaultInjector?, vma: VMA, faultFolio: Folio?
    ) -> PTEResult {
        let memory = mm.memory
        var pte = slot.load()
        let mpfn: UInt64
        let page: Pfn
        if pte.isNone {
            if !vma.isAnonymous { return .record(0, wasPresent: false) }
            cpages += 1
            return .record(MigratePfn.migrate, wasPresent: false)
        }
        if !pte.isPresent {
            // Only this owner's device-private pages are migratable; swap, device-exclusive and other
            // entries are skipped (mpfn 0).
            guard pte.isDevicePrivate, flags.contains(.devicePrivate), memory.pagemap(of: pte.pfn)?.owner == pgmapOwner
            else {
                return .record(0, wasPresent: false)
            }
            let folio = memory.folio(containing: pte.pfn)
            if folio.order > 0 { return .split(folio) }
            page = pte.pfn
            mpfn = MigratePfn.make(page) | MigratePfn.migrate | (pte.isWritableDevicePrivate ? MigratePfn.write : 0)
        } else {
            let pfn = pte.pfn
            if pfn == memory.zeroPage {  // is_zero_pfn: the 4 KiB zero page
                guard flags.contains(.system) else { return .record(0, wasPresent: false) }
                cpages += 1
                return .record(MigratePfn.migrate, wasPresent: false)
            }
            // vm_normal_page() NULL (a special PTE that is not the zero page): no page, mpfn 0.
            if pte.isSpecial { return .record(0, wasPresent: false) }
            if !memory.page(pfn).test(.zoneDevice), !flags.contains(.system) { return .record(0, wasPresent: false) }
            let folio = memory.folio(containing: pfn)
            if folio.order > 0 { return .split(folio) }
            page = pfn
            mpfn = MigratePfn.make(pfn) | MigratePfn.migrate | (pte.isWritable ? MigratePfn.write : 0)
        }
        let folio = memory.folio(containing: page)
        let head = memory.folioRef(folio)
        // `!page->mapping`: not an anonymous or shmem page.
        guard head.hasMapping else { return .record(0, wasPresent: false) }
        // The reference pins the folio; the lock (trylock: migration is best effort) freezes it.
        head.get()
        guard folio == faultFolio || (!(injector?.fire(.trylock) ?? false) && head.tryLock()) else {
            memory.put(folio)
            lockFailures += 1
            return .record(0, wasPresent: false)
        }
        let anonExclusive = head.test(.anon) && memory.page(page).test(.anonExclusive)
        // ptep_clear_flush + folio_try_share_anon_rmap_pte for an exclusive page (no DMA pin bias is
        // modelled, so sharing always succeeds), else ptep_get_and_clear.
        pte = slot.exchange(.none)
        if anonExclusive {
            memory.page(page).clear(.anonExclusive)
            if pte.isPresent, !pte.isProtNone { flush(mm) }  // ptep_clear_flush: pte_accessible (not PROT_NONE) → flush_tlb_page
        }
        cpages += 1
        if pte.isPresent, pte.isDirty { head.markDirty() }
        let mode: PTE.MigrationMode = mpfn & MigratePfn.write != 0 ? .write : anonExclusive ? .readExclusive : .read
        slot.store(.migration(replacing: pte, page, mode: mode))
        migrationEntries += 1
        mm.removeRmap(folio)
        memory.put(folio)
        return .record(mpfn, wasPresent: pte.isPresent)
    }

    /// `migrate_vma_split_folio()`: splits a PTE-mapped large folio (taking its lock unless it is the
    /// fault folio) with `split_folio()` (``AddressSpace/folioSplit(_:keep:extraPins:)``) so collect can
    /// go on page by page. The migration entries the split's unmap installs count in `migrationEntries`.
    mutating func splitForMigration(_ folio: Folio, mm: AddressSpace) -> Bool {
        let head = mm.memory.folioRef(folio)
        let isFault = folio == faultFolio
        if !isFault {
            guard head.tryGet() else { return false }
            guard head.tryLock() else {
                mm.memory.put(folio)
                return false
            }
        }
        let keep = isFault ? faultPage! : folio.pfn
        let (ok, frozen) = mm.folioSplit(folio, keep: keep, extraPins: 0)
        migrationEntries += frozen
        if !ok {
            if !isFault {
                head.unlock()
                mm.memory.put(folio)
            }
            return false
        }
        splitsBeforeCollect += 1
        if !isFault {
            head.unlock()
            mm.memory.put(Folio(pfn: folio.pfn, order: 0))
        }
        return true
    }

    /// `migrate_vma_collect_huge_pmd()`: a huge or non-present PMD. Collects the 2 MiB folio whole with
    /// a PMD migration entry when `SELECT_COMPOUND` is set and the range covers the PMD; otherwise
    /// splits it (`split_folio`, ``AddressSpace/folioSplit(_:keep:extraPins:)``) and returns `-ENOENT`
    /// so the PTEs are collected. The huge zero PMD is collected as a hole (`is_huge_zero_folio` →
    /// `migrate_vma_collect_hole`: one compound source-less entry with `SELECT_COMPOUND` on an aligned
    /// range, else 512 single ones) and left mapped until `migrate_vma_pages` replaces or splits it.
    /// Any other non-present PMD (a PMD migration entry among them) is skipped, not waited on.
    mutating func collectHugePMD(
        _ pmd: EntrySlot, _ start: UInt64, _ end: UInt64, mm: AddressSpace, vma: VMA, faultFolio: Folio?
    ) -> Int32 {
        unowned(unsafe) let memory = mm.memory
        let lock = mm.pageTable.lock(tableOf: pmd)
        let entry = pmd.load()
        if entry.isNone {
            lock.unlock()
            return hole(start, end, vma: vma)
        }
        var write: UInt64 = 0
        if entry.isHuge {
            guard flags.contains(.system) else {
                lock.unlock()
                return skip(start, end)
            }
            if memory.isHugeZero(entry.pfn) {
                lock.unlock()
                return hole(start, end, vma: vma)
            }
            if entry.isWritable { write = MigratePfn.write }
        } else if !entry.isPresent {
            guard entry.isDevicePrivate, flags.contains(.devicePrivate),
                memory.pagemap(of: entry.pfn)?.owner == pgmapOwner
            else {
                lock.unlock()
                return skip(start, end)
            }
            if entry.isWritableDevicePrivate { write = MigratePfn.write }
        } else {
            lock.unlock()
            return Errno.EAGAIN
        }
        let folio = memory.folio(containing: entry.pfn)
        let head = memory.folioRef(folio)
        head.get()
        if folio != faultFolio, !head.tryLock() {
            lock.unlock()
            memory.put(folio)
            lockFailures += 1
            return skip(start, end)
        }
        let aligned = isPMDAligned(start) && isPMDAligned(end)
        if flags.contains(.compound), aligned {
            // set_pmd_migration_entry
            let exclusive = head.test(.anonExclusive)
            if exclusive { for i in 0..<PageSize.pmdPages { head.page(i).clear(.anonExclusive) } }
            let mode: PTE.MigrationMode = write != 0 ? .write : exclusive ? .readExclusive : .read
            let old = pmd.exchange(
                .migration(folio.pfn, mode: mode, young: true, dirty: entry.isPresent ? entry.isDirty : true))
            if old.isPresent, old.isDirty { head.markDirty() }
            migrationEntries += 1
            src[npages] = MigratePfn.make(folio.pfn) | write | MigratePfn.migrate | MigratePfn.compound
            dst[npages] = 0
            npages += 1
            cpages += 1
            mm.removeRmap(folio)
            memory.put(folio)
            flush(mm)
            _ = skip(start + PageSize.size, end)
            lock.unlock()
            return 0
        }
        // fallback: split_folio (its unmap splits the PMD into PTE migration entries, its remap maps
        // the 512 new folios again), then collect PTEs.
        lock.unlock()
        let (split, frozen) = mm.folioSplit(folio, keep: folio.pfn, extraPins: folio == faultFolio ? 1 : 0)
        migrationEntries += frozen
        if split { splitsBeforeCollect += 1 }
        if folio != faultFolio { head.unlock() }
        memory.put(split ? Folio(pfn: folio.pfn, order: 0) : folio)
        if !split { return skip(start, end) }
        if pmd.load().isNone { return hole(start, end, vma: vma) }
        return Errno.ENOENT
    }
}
