import Synchronization

/// The arguments of one `hmm_range_fault` call (`struct hmm_range`, include/linux/hmm.h), plus the
/// unified-path RFC's `migrate` pointer. Allocate one per caller and reuse it: `hmmPfns` (a ``PfnArray``)
/// is allocated once, when it is made, and freed with it.
final class HMMRange: @unchecked Sendable {
    /// The interval notifier whose sequence guards the call; nil when called from `migrate_vma_setup`
    /// through the unified path (the RFC skips the check then).
    var notifier: MMUIntervalNotifier?
    /// The sequence `mmu_interval_read_begin` returned.
    var notifierSeq: UInt64 = 0
    public var start: UInt64 = 0
    public var end: UInt64 = 0
    /// One word per page: input requests, output pfn and flags (``HMMPfn``).
    let hmmPfns: PfnArray
    public var capacity: Int { hmmPfns.capacity }
    /// `default_flags`: requests applied to every page.
    var defaultFlags: UInt64 = 0
    /// `pfn_flags_mask`: which per-page input bits count.
    var pfnFlagsMask: UInt64 = 0
    /// `dev_private_owner`: this owner's device-private pages are reported, not faulted.
    var devPrivateOwner: UInt64 = 0
    /// The RFC's `range->migrate`: with `HMM_PFN_REQ_MIGRATE`, pages are collected into it as they are walked.
    public var migrate: MigrateVMA?
    /// Lab option, not in the RFC: collect a PMD-mapped 2 MiB folio whole (needs `MIGRATE_VMA_SELECT_COMPOUND`
    /// in `migrate.flags`) instead of splitting it.
    var compoundMigration = false

    // Lab counters for the last call.
    /// Pages faulted through `handle_mm_fault`.
    public var faults = 0
    /// Time spent in those faults (`handle_mm_fault` from `hmm_vma_fault`).
    var faultNanoseconds: UInt64 = 0
    /// Walk restarts (`-EBUSY` from a fault batch, a split or a migration entry wait).
    public var restarts = 0
    /// Per-page PTE relocks and TLB flushes of the unified path (`hmm_vma_handle_migrate_prepare`).
    var migratePrepareLocks = 0
    var migrateFlushes = 0
    /// Whether this call raised its `MMU_NOTIFY_MIGRATE` invalidation.
    var migrateInvalidation: MMUNotifierRange?

    public init(capacity: Int = PageSize.pmdPages) {
        hmmPfns = PfnArray(capacity: capacity)
    }

    /// Pages in the range.
    var npages: Int { pageCount(start, end) }
}

extension AddressSpace {
    /// `hmm_range_fault()` (mm/hmm.c): walks `[start, end)`, reporting each page's pfn and permissions
    /// and faulting in what the requests ask for. Each fault batch ends the walk with `-EBUSY` and the
    /// walk restarts from `last`; before each walk the notifier sequence is checked (`-EBUSY` to the
    /// caller if it moved). The caller holds the mmap lock for reading.
    ///
    /// With `HMM_PFN_REQ_MIGRATE` and `range.migrate` set (the unified-path RFC, as its Aug 2025 v1
    /// patch 2/4 has it), the same walk also collects pages for migration: after a page is resolved, its PTE is locked again and replaced by a
    /// migration entry (`hmm_vma_handle_migrate_prepare`), the range must lie in one VMA (`-ERANGE`), a
    /// PMD-mapped THP is split first (or collected whole with ``HMMRange/compoundMigration``), and one
    /// `MMU_NOTIFY_MIGRATE` invalidation tagged with `dev_private_owner` covers the call. The lab raises
    /// it when the first entry is replaced rather than up front, so that a retry that finds nothing to
    /// migrate raises none (a departure: see ``Device/SelfInvalidation``).
    ///
    /// - Returns: 0, `-EBUSY` (range invalidated: retry), `-EFAULT`, `-EPERM`, `-ERANGE`.
    func hmmRangeFault(_ range: HMMRange) -> Int32 {
        precondition(
            range.npages <= range.capacity, "hmm range of \(range.npages) pages exceeds its capacity \(range.capacity)")
        var ops = HMMWalk(range: range)
        range.faults = 0
        range.faultNanoseconds = 0
        range.restarts = 0
        range.migrateInvalidation = nil
        if let migrate = range.migrate {
            migrate.vma = nil
            migrate.start = range.start
            migrate.end = range.end
        }
        defer {
            ops.publishCounts(self)
            if let r = range.migrateInvalidation { notifiers.invalidateRangeEnd(r) }
        }
        var first = true
        while true {
            if let notifier = range.notifier, notifier.checkRetry(range.notifierSeq) { return Errno.EBUSY }
            if !first {
                range.restarts += 1
                counters.walkRestarts.wrappingAdd(1, ordering: .relaxed)
            }
            first = false
            let r = walkPageRange(ops.last, range.end, &ops)
            if r != Errno.EBUSY { return r }
        }
    }

    /// The RFC's `migrate_hmm_range_setup()` (mm/migrate_device.c, Aug 2025 v1): turns the
    /// `VALID|MIGRATE` words a unified walk left into `migrate_vma` source entries (a bare
    /// `VALID|MIGRATE` word is a hole or the zero page and becomes `MIGRATE_PFN_MIGRATE` without a pfn,
    /// as `migrate_vma_collect_pmd` records them; a 2 MiB folio is its head with `COMPOUND` and 511
    /// zeros), then unmaps (`migrate_vma_unmap`).
    func migrateHMMRangeSetup(_ range: HMMRange) {
        guard let args = range.migrate else { return }
        let n = range.npages
        let start = range.start
        let pfns = range.hmmPfns.words
        let src = args.src.words
        let dst = args.dst.words
        args.start = start
        args.end = range.end
        args.npages = n
        var cpages = 0
        var i = 0
        while i < n {
            let w = pfns[i]
            dst[i] = 0
            guard w & (HMMPfn.valid | HMMPfn.migrate) == HMMPfn.valid | HMMPfn.migrate else {
                src[i] = 0
                i += 1
                continue
            }
            let pfn = HMMPfn.pfn(w)
            let huge =
                HMMPfn.mapOrder(w) == PageSize.pmdOrder && i + PageSize.pmdPages <= n
                && isPMDAligned(pageAddress(start, i))
            var word: UInt64 = pfn.rawValue == 0 ? MigratePfn.migrate : MigratePfn.make(pfn) | MigratePfn.migrate
            if w & HMMPfn.write != 0, pfn.rawValue != 0 { word |= MigratePfn.write }
            cpages += 1
            if huge {
                src[i] = word | MigratePfn.compound
                for k in 1..<PageSize.pmdPages {
                    src[i + k] = 0
                    dst[i + k] = 0
                }
                i += PageSize.pmdPages
            } else {
                src[i] = word
                i += 1
            }
        }
        args.cpages = cpages
        if cpages > 0 { migrateVMAUnmap(args) }
    }

    /// What a unified walk collected, given back after the walk failed (`-EBUSY` from an
    /// invalidation, or another error): `migrate_hmm_range_setup` (the sources are locked and
    /// unmapped to migration entries as usual), no source kept `MIGRATE`, and `migrate_vma_finalize`
    /// restores every entry and unlocks and releases every folio. The RFC's error paths write this
    /// sequence out; the lab names it once.
    func migrateHMMRangeAbort(_ range: HMMRange) {
        guard let args = range.migrate else { return }
        migrateHMMRangeSetup(range)
        for i in 0..<args.npages { args.src[i] &= ~MigratePfn.migrate }
        migrateVMAFinalize(args)
    }

    /// `migrate_vma_setup()` expressed through the unified walk, as the RFC re-implements it (Aug 2025
    /// v1, patch 2/4; patch 3/4 removes `migrate_vma_collect_*()`):
    /// `hmm_range_fault` with `HMM_PFN_REQ_MIGRATE` (and `REQ_FAULT` when `fault`, the RFC's
    /// `MIGRATE_VMA_FAULT`), no notifier, then `migrate_hmm_range_setup`.
    func migrateVMASetupUnified(_ args: MigrateVMA, range: HMMRange, fault: Bool) -> Int32 {
        guard let vma = args.vma, args.start >= vma.start, args.end <= vma.end, args.end > args.start else {
            return Errno.EINVAL
        }
        range.notifier = nil
        range.start = args.start
        range.end = args.end
        range.defaultFlags = HMMPfn.requestMigrate | (fault ? HMMPfn.requestFault : 0)
        range.pfnFlagsMask = 0
        range.devPrivateOwner = args.pgmapOwner
        range.migrate = args
        range.hmmPfns.update(repeating: 0, count: range.npages)
        let r = hmmRangeFault(range)
        if r != 0 {
            migrateHMMRangeAbort(range)
            return r
        }
        migrateHMMRangeSetup(range)
        return 0
    }
}

/// `hmm_walk_ops`: `hmm_vma_walk_test`, `hmm_vma_walk_pmd` (which handles the PTEs itself, locklessly,
/// as the kernel does) and `hmm_vma_walk_hole`, with the RFC's migrate step.
struct HMMWalk: PageWalkOps {
    static var hasPmdEntry: Bool { true }
    static var hasPteEntry: Bool { false }
    static var hasPteHole: Bool { true }
    static var hasTestWalk: Bool { true }

    unowned(unsafe) let range: HMMRange
    /// `range.migrate`, held without reference counting for the walk.
    unowned(unsafe) let migrate: MigrateVMA?
    /// `hmm_vma_walk->last`.
    var last: UInt64
    // The range's fields, read once per call: they do not change under a walk, and reading them here
    // costs no class access (nor its exclusivity check) per page.
    let pfns: UnsafeMutablePointer<UInt64>
    let rangeStart: UInt64
    let defaultFlags: UInt64
    let pfnFlagsMask: UInt64
    let devPrivateOwner: UInt64
    /// `HMM_PFN_REQ_MIGRATE` with a `migrate` to collect into.
    let wantsMigrate: Bool
    /// `MIGRATE_VMA_SELECT_SYSTEM` and `MIGRATE_VMA_SELECT_DEVICE_PRIVATE` in `migrate.flags`.
    let selectSystem: Bool
    let selectDevicePrivate: Bool
    /// `migrate->fault_page`'s folio: locked by the CPU fault that migrates it back, so not trylocked.
    let faultFolio: Folio?
    // Counts of the call, kept in the walk and handed to the range, the `migrate_vma` and the address
    // space's counters once when the call ends (``publishCounts(_:)``).
    var prepareLocks = 0
    var flushes = 0
    var migrationEntries = 0
    var lockFailures = 0
    /// Whether this call raised its `MMU_NOTIFY_MIGRATE` invalidation (mirrors `range.migrateInvalidation`).
    var invalidationRaised = false

    init(range: HMMRange) {
        self.range = range
        migrate = range.migrate
        last = range.start
        pfns = range.hmmPfns.words
        rangeStart = range.start
        defaultFlags = range.defaultFlags
        pfnFlagsMask = range.pfnFlagsMask
        devPrivateOwner = range.devPrivateOwner
        wantsMigrate = range.migrate != nil && range.defaultFlags & HMMPfn.requestMigrate != 0
        selectSystem = range.migrate?.flags.contains(.system) ?? false
        selectDevicePrivate = range.migrate?.flags.contains(.devicePrivate) ?? false
        faultFolio = range.migrate?.faultFolio
    }

    /// Hands the call's counts to the range, the `migrate_vma` and the address space.
    func publishCounts(_ mm: AddressSpace) {
        range.migratePrepareLocks = prepareLocks
        range.migrateFlushes = flushes
        if let migrate {
            migrate.migrationEntries += migrationEntries
            migrate.lockFailures += lockFailures
        }
    }

    static let needFault: UInt32 = 1
    static let needWriteFault: UInt32 = 2

    @inline(__always) func index(_ address: UInt64) -> Int { pageCount(rangeStart, address) }

    /// `hmm_pte_need_fault()`.
    @inline(__always) func pteNeedFault(_ request: UInt64, _ cpuFlags: UInt64) -> UInt32 {
        let req = (request & pfnFlagsMask) | defaultFlags
        if req & HMMPfn.requestFault == 0 { return 0 }
        if req & HMMPfn.requestWrite != 0, cpuFlags & HMMPfn.write == 0 { return Self.needFault | Self.needWriteFault }
        if cpuFlags & HMMPfn.valid == 0 { return Self.needFault }
        return 0
    }

    /// `hmm_range_need_fault()`.
    func rangeNeedFault(_ start: UInt64, _ end: UInt64, _ cpuFlags: UInt64) -> UInt32 {
        if (defaultFlags | pfnFlagsMask) & HMMPfn.requestFault == 0 { return 0 }
        var required: UInt32 = 0
        for i in index(start)..<index(end) {
            required |= pteNeedFault(pfns[i], cpuFlags)
            if required == Self.needFault | Self.needWriteFault { return required }
        }
        return required
    }

    /// `hmm_pfns_fill()`.
    func fill(_ start: UInt64, _ end: UInt64, _ cpuFlags: UInt64) -> Int32 {
        for i in index(start)..<index(end) {
            pfns[i] = (pfns[i] & HMMPfn.inOutFlags) | cpuFlags
        }
        return 0
    }

    /// `hmm_vma_fault()`: faults every page of `[address, end)` and ends the walk with `-EBUSY`.
    mutating func fault(_ address: UInt64, _ end: UInt64, _ required: UInt32, _ walk: inout PageWalk) -> Int32 {
        last = address
        var write = false
        if required & Self.needWriteFault != 0 {
            guard walk.vma?.isWritable == true else { return Errno.EPERM }
            write = true
        }
        var a = address
        let started = monotonicNanoseconds()
        defer { range.faultNanoseconds += monotonicNanoseconds() - started }
        while a < end {
            do {
                _ = try walk.mm.handleFault(at: a, write: write)
            } catch {
                return Errno.EFAULT
            }
            range.faults += 1
            a += PageSize.size
        }
        return Errno.EBUSY
    }

    mutating func testWalk(_ start: UInt64, _ end: UInt64, _ walk: inout PageWalk) -> Int32 {
        let vma = walk.vma!
        if let migrate, defaultFlags & HMMPfn.requestMigrate != 0 {
            // The RFC: migration needs a single VMA.
            if let first = migrate.vma {
                if first.start != vma.start || first.object !== vma.object { return Errno.ERANGE }
            } else {
                migrate.vma = vma
            }
        }
        if vma.isReadable, !vma.flags.contains(.pfnMap) { return 0 }
        if rangeNeedFault(start, end, 0) != 0 { return Errno.EFAULT }
        _ = fill(start, end, HMMPfn.error)
        return 1
    }

    mutating func pteHole(_ address: UInt64, _ next: UInt64, depth: Int, _ walk: inout PageWalk) -> Int32 {
        let required = rangeNeedFault(address, next, 0)
        guard let vma = walk.vma else {
            if required != 0 { return Errno.EFAULT }
            return fill(address, next, HMMPfn.error)
        }
        if required != 0 { return fault(address, next, required, &walk) }
        if wantsMigrate, vma.isAnonymous, vma.isMigratable {
            // A hole (of anonymous memory only, `vma_is_anonymous`) is collected as a source-less VALID|MIGRATE entry (compound when it is a whole
            // aligned PMD and compound migration is on).
            if range.compoundMigration, migrate!.flags.contains(.compound),
                isPMDAligned(address), next - address == PageSize.pmdSize
            {
                return fill(address, next, HMMPfn.valid | HMMPfn.migrate | HMMPfn.order(PageSize.pmdOrder))
            }
            return fill(address, next, HMMPfn.valid | HMMPfn.migrate)
        }
        return fill(address, next, 0)
    }

    mutating func pmdEntry(_ pmd: EntrySlot, _ start: UInt64, _ end: UInt64, _ walk: inout PageWalk) -> Int32 {
        walk.action = .continue
        unowned(unsafe) let mm = walk.mm
        unowned(unsafe) let memory = mm.memory
        if let injector = mm.injector, injector.fire(.invalidate) {
            // Another thread invalidates this range while the walk is under way (no table lock held).
            let r = MMUNotifierRange(start: start, end: end, event: .clear)
            mm.notifiers.invalidateRangeStart(r)
            mm.notifiers.invalidateRangeEnd(r)
        }
        var address = start
        while true {  // again:
            let entry = pmd.load()
            if walk.vma?.isHugetlb == true { return hugetlbEntry(entry, start, end, &walk) }
            if entry.isNone { return pteHole(start, end, depth: -1, &walk) }
            if entry.isMigration {
                if rangeNeedFault(start, end, 0) != 0 {
                    last = address
                    mm.waitForMigration(entry.pfn)
                    return Errno.EBUSY
                }
                return fill(start, end, 0)
            }
            if !entry.isPresent {
                return handleAbsentPMD(entry, start, end, &walk)
            }
            if entry.isHuge {
                if wantsMigrate { return migrateHugePMD(pmd, entry, start, end, &walk) }
                return handlePMD(entry, start, end, &walk)
            }
            // A table: the PTEs, read without the lock (pte_offset_map), as hmm does. The objects the
            // per-page steps use are held here, once per PMD, and passed down borrowed.
            let table = entry.pfn
            let space: AddressSpace = mm
            let physical: PhysicalMemory = memory
            let injector = space.injector
            let collect = wantsMigrate && walk.vma?.isShared == false && walk.vma?.isMigratable == true
            let slots = space.pageTable.slots(of: table)
            while address < end {
                let slot = slots.advanced(by: PageTableLevel.pte.index(address))
                let r = handlePTE(
                    slot, address, end, &walk, mm: space, memory: physical, injector: injector, collect: collect)
                if r != 0 { return r }
                address += PageSize.size
            }
            walk.ptesVisited += pageCount(start, end)
            return 0
        }
    }

    /// `hmm_vma_walk_hugetlb_entry()`: the huge entry's flags with the hstate's order (9), from the
    /// first page's request; a fault covers the whole `[start, end)`. A none entry without a fault
    /// reports the order without `VALID`, as the kernel does.
    ///
    /// Departure from the kernel: the entry is read without the hugetlb PTE lock (the lab's hugetlb
    /// entries only change under the mmap lock for writing, or by a fault, which restarts the walk).
    mutating func hugetlbEntry(_ entry: PTE, _ start: UInt64, _ end: UInt64, _ walk: inout PageWalk) -> Int32 {
        let present = entry.isPresent && entry.isHuge && !entry.isProtNone
        let cpuFlags =
            (present ? HMMPfn.valid | (entry.isWritable ? HMMPfn.write : 0) : 0) | HMMPfn.order(PageSize.pmdOrder)
        let required = pteNeedFault(pfns[index(start)], cpuFlags)
        if required != 0 { return fault(start, end, required, &walk) }
        var pfn = present ? entry.pfn + pteIndex(start) : Pfn(rawValue: 0)
        for i in index(start)..<index(end) {
            pfns[i] = (pfns[i] & HMMPfn.inOutFlags) | (present ? pfn.rawValue : 0) | cpuFlags
            if present { pfn = pfn + 1 }
        }
        return 0
    }

    /// `hmm_vma_handle_pmd()`: a PMD-mapped THP reports 512 pfns with map order 9, or faults.
    mutating func handlePMD(_ entry: PTE, _ start: UInt64, _ end: UInt64, _ walk: inout PageWalk) -> Int32 {
        let cpuFlags: UInt64 =
            entry.isProtNone
            ? 0 : (entry.isWritable ? HMMPfn.valid | HMMPfn.write : HMMPfn.valid) | HMMPfn.order(PageSize.pmdOrder)
        let required = rangeNeedFault(start, end, cpuFlags)
        if required != 0 { return fault(start, end, required, &walk) }
        var pfn = entry.pfn + pteIndex(start)
        for i in index(start)..<index(end) {
            pfns[i] = (pfns[i] & HMMPfn.inOutFlags) | pfn.rawValue | cpuFlags
            pfn = pfn + 1
        }
        return 0
    }

    /// The huge zero PMD met by a migrating walk, as `migrate_vma_collect_huge_pmd()` treats it
    /// (`is_huge_zero_folio` → `migrate_vma_collect_hole`): with `SELECT_SYSTEM`, source-less
    /// `VALID|MIGRATE` words, one compound hole (map order 9) when the PMD is whole and compound
    /// migration is on, else 512 single ones; the PMD stays as it is (no lock, no migration entry)
    /// until `migrate_vma_pages` replaces or splits it. Without `SELECT_SYSTEM` the pages are reported
    /// and not collected, as for any system page. The RFC's text has no case of its own for it.
    mutating func migrateHugeZeroPMD(_ entry: PTE, _ start: UInt64, _ end: UInt64, _ walk: inout PageWalk) -> Int32 {
        guard selectSystem else { return handlePMD(entry, start, end, &walk) }
        let whole = isPMDAligned(start) && end - start == PageSize.pmdSize
        if range.compoundMigration, migrate!.flags.contains(.compound), whole {
            return fill(start, end, HMMPfn.valid | HMMPfn.migrate | HMMPfn.order(PageSize.pmdOrder))
        }
        return fill(start, end, HMMPfn.valid | HMMPfn.migrate)
    }

    /// `hmm_vma_handle_absent_pmd()`: a device-private PMD of this owner reports 512 pfns; other
    /// device-private PMDs are faulted back; anything else is an error.
    mutating func handleAbsentPMD(_ entry: PTE, _ start: UInt64, _ end: UInt64, _ walk: inout PageWalk) -> Int32 {
        unowned(unsafe) let memory = walk.mm.memory
        if entry.isDevicePrivate, memory.pagemap(of: entry.pfn)?.owner == devPrivateOwner {
            let cpuFlags =
                HMMPfn.valid | (entry.isWritableDevicePrivate ? HMMPfn.write : 0) | HMMPfn.order(PageSize.pmdOrder)
            var pfn = entry.pfn + pteIndex(start)
            for i in index(start)..<index(end) {
                pfns[i] = (pfns[i] & HMMPfn.inOutFlags) | pfn.rawValue | cpuFlags
                pfn = pfn + 1
            }
            return 0
        }
        let required = rangeNeedFault(start, end, 0)
        if required != 0 {
            if entry.isDevicePrivate { return fault(start, end, required, &walk) }
            return Errno.EFAULT
        }
        return fill(start, end, HMMPfn.error)
    }

    /// `hmm_vma_handle_pte()`, then the RFC's `hmm_vma_handle_migrate_prepare()` for the page. A
    /// special PTE other than the zero page (`vm_normal_page` NULL) is `-EFAULT` when a fault is
    /// requested, else `HMM_PFN_ERROR`, and is not collected. The model maps no such page itself
    /// (only the zero pages are special); a test installs one.
    @inline(__always)
    mutating func handlePTE(
        _ slot: EntrySlot, _ address: UInt64, _ end: UInt64, _ walk: inout PageWalk, mm: AddressSpace,
        memory: PhysicalMemory, injector: FaultInjector?,
        collect: Bool
    ) -> Int32 {
        let i = index(address)
        let request = pfns[i]
        let pte = slot.load()
        var out: UInt64
        if pte.isNone {
            let required = pteNeedFault(request, 0)
            if required != 0 { return fault(address, end, required, &walk) }
            out = 0
        } else if !pte.isPresent {
            if pte.isDevicePrivate, memory.pagemap(of: pte.pfn)?.owner == devPrivateOwner {
                // Reported, never faulted; collected when the migration selects device-private pages.
                out = pte.pfn.rawValue | HMMPfn.valid | (pte.isWritableDevicePrivate ? HMMPfn.write : 0)
                pfns[i] = (request & HMMPfn.inOutFlags) | out
                if collect, selectDevicePrivate {
                    migratePrepare(slot, i, seen: pte, mm: mm, memory: memory, injector: injector)
                }
                return 0
            }
            let required = pteNeedFault(request, 0)
            if required == 0 {
                out = 0
            } else if pte.isSwap || pte.isDevicePrivate || pte.isDeviceExclusive {
                return fault(address, end, required, &walk)
            } else if pte.isMigration {
                last = address
                mm.waitForMigration(pte.pfn)
                return Errno.EBUSY
            } else {
                return Errno.EFAULT
            }
        } else {
            let cpuFlags: UInt64 = pte.isProtNone ? 0 : (pte.isWritable ? HMMPfn.valid | HMMPfn.write : HMMPfn.valid)
            let required = pteNeedFault(request, cpuFlags)
            if required != 0 { return fault(address, end, required, &walk) }
            if pte.isSpecial, pte.pfn != memory.zeroPage {
                // vm_normal_page() NULL and not the zero page: -EFAULT if a fault is wanted, else ERROR.
                if pteNeedFault(request, 0) != 0 { return Errno.EFAULT }
                pfns[i] = (request & HMMPfn.inOutFlags) | HMMPfn.error
                return 0
            }
            out = pte.pfn.rawValue | cpuFlags
        }
        pfns[i] = (request & HMMPfn.inOutFlags) | out
        if collect { migratePrepare(slot, i, seen: pte, mm: mm, memory: memory, injector: injector) }
        return 0
    }

    /// The RFC's `hmm_vma_handle_migrate_prepare()` (mm/hmm.c, Aug 2025 v1, patch 2/4): re-takes the
    /// PTE lock and, for a page that can migrate, installs the migration entry as
    /// `migrate_vma_collect_pmd()` (mm/migrate_device.c) does: folio reference, trylock (not for the
    /// fault folio), anon-exclusive handling, entry bits, rmap removal, with one TLB flush per present
    /// page. Called only for a private VMA when the call migrates (`collect` in ``handlePTE``).
    ///
    /// - A none PTE becomes a source-less `VALID|MIGRATE` word, as collect's `pte_none` case
    ///   (`mpfn = MIGRATE_PFN_MIGRATE`); so does the zero page with `SELECT_SYSTEM` (`is_zero_pfn`).
    ///   `migrate_hmm_range_setup` turns both into `MIGRATE_PFN_MIGRATE` without a pfn: the device
    ///   allocates a cleared page and `migrate_vma_insert_page` maps it (replacing the zero page). With
    ///   read access this is what an untouched page becomes: `hmm_vma_fault` without `FAULT_FLAG_WRITE`
    ///   maps the zero page (`do_anonymous_page`) and the walk restarts over it.
    /// - A device-private entry of this owner (the walk reported it, not faulted) with
    ///   `SELECT_DEVICE_PRIVATE`: collected with a migration entry, writable if the entry was, no flush.
    ///   A large device folio is not (the RFC's "FIXME support THP").
    /// - A present page that is not exclusive (copy-on-write shared after fork, which a read request does
    ///   not break) is collected as collect does: `ptep_get_and_clear` and a readable migration entry;
    ///   the other mm's mapping is unmapped later by `migrate_device_unmap` (`try_to_migrate`), so the
    ///   page moves and both mms end up mapping the device page, read-only.
    ///
    /// Departures: the RFC's `hmm_want_migrate` adds `SELECT_SYSTEM` to every `REQ_MIGRATE` call, so its
    /// `migrate_vma_setup` for device-private pages collects system pages too; the lab selects with
    /// `migrate.flags` alone, as `migrate_vma_collect_pmd` does. And the RFC collects whatever the PTE
    /// holds once locked again, while the word keeps the pfn `hmm_vma_handle_pte` read without the
    /// lock: a CPU fault in between (a copy-on-write break the read walk did not make) would leave a
    /// source pfn that was never locked. The lab collects only a PTE that still maps what `seen` (the
    /// unlocked read) mapped, with the same permission (``PTE/mapsSame(as:)``); otherwise the page is
    /// reported and not collected.
    mutating func migratePrepare(
        _ slot: EntrySlot, _ i: Int, seen: PTE, mm: AddressSpace, memory: PhysicalMemory, injector: FaultInjector?
    ) {
        prepareLocks += 1
        let lock = mm.pageTable.lock(tableOf: slot)
        defer { lock.unlock() }
        let pte = slot.load()
        guard pte.mapsSame(as: seen) else { return }
        if pte.isNone {
            pfns[i] = HMMPfn.valid | HMMPfn.migrate
            return
        }
        guard pfns[i] & HMMPfn.valid != 0 else { return }
        let page: Pfn
        let writable: Bool
        if pte.isPresent {
            if pte.pfn == memory.zeroPage {
                if selectSystem { pfns[i] = HMMPfn.valid | HMMPfn.migrate }
                return
            }
            guard !pte.isProtNone, selectSystem, !memory.page(pte.pfn).test(.zoneDevice) else { return }
            page = pte.pfn
            writable = pte.isWritable
        } else {
            guard pte.isDevicePrivate, selectDevicePrivate else { return }
            page = pte.pfn
            writable = pte.isWritableDevicePrivate
        }
        let folio = memory.folio(containing: page)
        guard folio.order == 0 else { return }  // large folios were split before (hmm_vma_walk_split), or are device THP
        let head = memory.folioRef(folio)
        guard head.hasMapping else { return }
        let isFault = folio == faultFolio
        head.get()
        guard isFault || (!(injector?.fire(.trylock) ?? false) && head.tryLock()) else {
            memory.put(folio)
            lockFailures += 1
            return
        }
        if !invalidationRaised {
            let r = MMUNotifierRange(start: range.start, end: range.end, event: .migrate, owner: devPrivateOwner)
            range.migrateInvalidation = r
            invalidationRaised = true
            // The lock is dropped around the notifier, as the kernel never calls it under a PTE lock.
            lock.unlock()
            mm.notifiers.invalidateRangeStart(r)
            lock.lock()
            guard slot.load() == pte else {
                if !isFault { head.unlock() }
                memory.put(folio)
                return
            }
        }
        let anonExclusive = head.test(.anon) && memory.page(page).test(.anonExclusive)
        _ = slot.exchange(.none)
        if anonExclusive { memory.page(page).clear(.anonExclusive) }
        let mode: PTE.MigrationMode = writable ? .write : anonExclusive ? .readExclusive : .read
        if pte.isPresent, pte.isDirty { head.markDirty() }
        slot.store(.migration(replacing: pte, page, mode: mode))
        if pte.isPresent {
            // The RFC's hmm_vma_handle_migrate_prepare (the August 2025 posting, the latest whose text
            // the lab has): ptep_clear_flush for an anon-exclusive page, then flush_tlb_range for every
            // present one, so two flushes for an exclusive page.
            flushes += anonExclusive ? 2 : 1
            mm.flushTLB(anonExclusive ? 2 : 1)
        }
        migrationEntries += 1
        mm.removeRmap(folio)
        memory.put(folio)
        pfns[i] |= HMMPfn.migrate
    }

    /// A PMD-mapped THP met by a migrating walk: collected whole (lab option) or split
    /// (`hmm_vma_walk_split`: `split_folio`, which splits the PMD too) and the walk restarted with `-EBUSY`.
    /// When the split cannot lock the folio, or fails, the PMD's pages are filled with `HMM_PFN_ERROR`
    /// and the walk goes on, as the RFC does.
    /// The huge zero PMD is collected as a hole (``migrateHugeZeroPMD(_:_:_:)``).
    mutating func migrateHugePMD(
        _ pmd: EntrySlot, _ entry: PTE, _ start: UInt64, _ end: UInt64, _ walk: inout PageWalk
    ) -> Int32 {
        unowned(unsafe) let mm = walk.mm
        unowned(unsafe) let memory = mm.memory
        let cpuFlags: UInt64 =
            (entry.isWritable ? HMMPfn.valid | HMMPfn.write : HMMPfn.valid) | HMMPfn.order(PageSize.pmdOrder)
        let required = rangeNeedFault(start, end, cpuFlags)
        if required != 0 { return fault(start, end, required, &walk) }
        if memory.isHugeZeroPMD(entry) { return migrateHugeZeroPMD(entry, start, end, &walk) }
        let folio = memory.folio(containing: entry.pfn)
        let head = memory.folioRef(folio)
        let whole = isPMDAligned(start) && end - start == PageSize.pmdSize
        if range.compoundMigration, migrate!.flags.contains(.compound), whole {
            head.get()
            guard head.tryLock() else {
                memory.put(folio)
                lockFailures += 1
                return handlePMD(entry, start, end, &walk)
            }
            if !invalidationRaised {
                let r = MMUNotifierRange(start: range.start, end: range.end, event: .migrate, owner: devPrivateOwner)
                range.migrateInvalidation = r
                invalidationRaised = true
                mm.notifiers.invalidateRangeStart(r)
            }
            let lock = mm.pageTable.lock(tableOf: pmd)
            let current = pmd.load()
            guard current == entry else {
                lock.unlock()
                head.unlock()
                memory.put(folio)
                last = start
                return Errno.EBUSY
            }
            let exclusive = head.test(.anonExclusive)
            if exclusive { for k in 0..<PageSize.pmdPages { head.page(k).clear(.anonExclusive) } }
            let mode: PTE.MigrationMode = entry.isWritable ? .write : exclusive ? .readExclusive : .read
            pmd.store(.migration(folio.pfn, mode: mode, young: true, dirty: entry.isDirty))
            migrationEntries += 1
            if entry.isDirty { head.markDirty() }
            mm.removeRmap(folio)
            memory.put(folio)
            lock.unlock()
            flushes += 1
            mm.flushTLB()
            var pfn = folio.pfn
            for i in index(start)..<index(end) {
                pfns[i] = pfn.rawValue | cpuFlags | HMMPfn.migrate
                pfn = pfn + 1
            }
            return 0
        }
        // Split the PMD and the folio, then walk this PMD again.
        guard head.tryGet() else { return Errno.EBUSY }
        guard head.tryLock() else {
            // hmm_vma_walk_split fails: "Split not successful, skip" (the PMD's pages are ERROR).
            memory.put(folio)
            lockFailures += 1
            return fill(start, end, HMMPfn.error)
        }
        // split_folio: its unmap splits the PMD into PTE migration entries, its remap maps the 512 new
        // folios again (``AddressSpace/folioSplit(_:keep:extraPins:)``).
        let (split, frozen) = mm.folioSplit(folio, keep: folio.pfn)
        migrationEntries += frozen
        head.unlock()
        memory.put(split ? Folio(pfn: folio.pfn, order: 0) : folio)
        if !split { return fill(start, end, HMMPfn.error) }
        migrate!.splitsBeforeCollect += 1
        last = start
        return Errno.EBUSY
    }
}
