import Glibc

/// What one device migration call did.
public struct MigrationResult: Sendable, Equatable {
    /// 0, or the errno the dmirror ioctl would return (`-ENOENT`: some page did not reach the device).
    public var errno: Int32 = 0
    /// Pages still migrating after unmap (`cpages`), summed over windows.
    var collected = 0
    /// Pages whose migration completed (`MIGRATE` after `migrate_vma_pages`).
    public var migrated = 0
    /// Page-table walks started: `hmm_range_fault` and `migrate_vma_setup` calls.
    public var walks = 0
    /// Walk restarts inside those calls.
    public var restarts = 0
    /// CPU faults taken on the way (`hmm_range_fault` fault batches).
    public var faults = 0
    /// TLB flushes counted by collect or the unified walk.
    var tlbFlushes = 0
    var splitsBeforeCollect = 0
    var splitsAfterIsolation = 0
    /// Whole windows walked again because the device's own invalidation bumped the sequence.
    var selfInvalidationRetries = 0
    /// `hmm_range_fault` calls repeated because the notifier sequence moved (`-EBUSY` from the sequence
    /// check, or `mmu_interval_read_retry` under the device lock), whoever invalidated.
    var notifierRetries = 0
    /// Those of the notifier retries whose invalidation came from another op thread (`--jobs`).
    var crossJobRetries = 0
    /// Migration entries installed and folios skipped on a failed `folio_trylock`.
    var migrationEntries = 0
    var lockFailures = 0
    /// Where the time went.
    var phases = PhaseTimes()

    public init() {}

    mutating func add(_ args: MigrateVMA) {
        tlbFlushes += args.tlbFlushes
        splitsBeforeCollect += args.splitsBeforeCollect
        splitsAfterIsolation += args.splitsAfterIsolation
        migrationEntries += args.migrationEntries
        lockFailures += args.lockFailures
        args.resetCounters()
    }
}

/// Time spent per phase of a device migration, in nanoseconds.
struct PhaseTimes: Sendable, Equatable {
    /// `hmm_range_fault` walks, less the faults they took (the unified walk's collection included).
    public var walk: UInt64 = 0
    /// `handle_mm_fault` called from `hmm_range_fault`.
    public var fault: UInt64 = 0
    /// `migrate_vma_setup` (collect walk and unmap) or `migrate_hmm_range_setup`.
    var collect: UInt64 = 0
    /// Device page allocation and copy bookkeeping (and, with verify, the check of every copied page).
    public var alloc: UInt64 = 0
    /// The copy engine moving bytes.
    public var copy: UInt64 = 0
    /// `migrate_vma_pages`, device page-table update, `migrate_vma_finalize`.
    var finalize: UInt64 = 0

    public init() {}

    public static func += (a: inout PhaseTimes, b: PhaseTimes) {
        a.walk += b.walk
        a.fault += b.fault
        a.collect += b.collect
        a.alloc += b.alloc
        a.copy += b.copy
        a.finalize += b.finalize
    }
}

extension Device {
    /// The window a migration works in: `PTRS_PER_PTE` pages, clipped to the VMA (dmirror).
    static let migrationWindow = PageSize.pmdPages

    // MARK: - To the device (migrate_vma)

    /// `HMM_DMIRROR_MIGRATE_TO_DEV` (`dmirror_migrate_to_device`): per window, `migrate_vma_setup`
    /// (`SELECT_SYSTEM | SELECT_COMPOUND`), allocate device pages and copy, `migrate_vma_pages`, map in
    /// the device page table, `migrate_vma_finalize`. Then, like dmirror, checks that every page of the
    /// range is now in the device page table (`-ENOENT` otherwise).
    func migrateToDevice(_ start: UInt64, pages: Int) -> MigrationResult {
        migrateToDevice(start, pages: pages, acceptMissing: false)
    }

    /// `migrateToDevice`; with `acceptMissing` a range not fully mirrored afterwards is not an error
    /// (migrate-then-fault checks that itself).
    func migrateToDevice(_ start: UInt64, pages: Int, acceptMissing: Bool) -> MigrationResult {
        var result = MigrationResult()
        let end = pageAddress(start, pages)
        mm.mmapLock.readLock()
        defer { mm.mmapLock.unlock() }
        migrateWindows(
            start, end, &result, requireRead: true,
            flags: { address, next in
                useCompound(start: address, end: next) ? [.system, .compound] : [.system]
            }
        ) { args, copy, phases in
            allocateAndCopyToDevice(args, copy: copy, phases: &phases)
            let t = monotonicNanoseconds()
            mm.migrateVMAPages(args)
            let migrated = finalizeAndMap(args)
            phases.finalize += monotonicNanoseconds() - t
            return migrated
        }
        stats.pagesToDevice.wrappingAdd(result.migrated, ordering: .relaxed)
        if result.errno == 0, !acceptMissing, !isMirrored(start, end) { result.errno = Errno.ENOENT }
        return result
    }

    /// The window loop of `dmirror_migrate_to_device` and `dmirror_migrate_to_system`: per window of
    /// `PTRS_PER_PTE` pages from `start` (not aligned, as dmirror's are not: a THP that a window only
    /// partly covers is split by collect) clipped to the VMA, `migrate_vma_setup` with `flags`, then `move` (alloc,
    /// copy, `migrate_vma_pages`, device page table; returns the pages migrated), then
    /// `migrate_vma_finalize`. The caller holds the mmap lock for reading.
    func migrateWindows(
        _ start: UInt64, _ end: UInt64, _ result: inout MigrationResult, requireRead: Bool,
        flags: (UInt64, UInt64) -> MigrateSelect, move: (MigrateVMA, CopyEngine, inout PhaseTimes) -> Int
    ) {
        withMigrationContext { context in
            let args = context.args
            var address = start
            while address < end {
                // dmirror: the VMA must exist (and be readable to go to the device).
                guard let vma = mm.vma(containing: address), !requireRead || vma.isReadable else {
                    result.errno = Errno.EINVAL
                    return
                }
                let next = min(end, vma.end, pageAddress(address, Self.migrationWindow))
                args.vma = vma
                args.start = address
                args.end = next
                args.pgmapOwner = owner
                args.flags = flags(address, next)
                let t0 = monotonicNanoseconds()
                let r = mm.migrateVMASetup(args)
                result.phases.collect += monotonicNanoseconds() - t0
                result.walks += 1
                if r != 0 {
                    result.errno = r
                    return
                }
                result.collected += args.cpages
                result.migrated += move(args, context.copy, &result.phases)
                let t1 = monotonicNanoseconds()
                mm.migrateVMAFinalize(args)
                result.phases.finalize += monotonicNanoseconds() - t1
                result.add(args)
                address = next
            }
        }
    }

    /// Whether the window should be collected with `SELECT_COMPOUND`. With the split-before-collect
    /// policy, only when the device can get a 2 MiB page now (the allocation is probed and given back).
    func useCompound(start: UInt64, end: UInt64) -> Bool {
        guard splitPolicy == .beforeCollect else { return true }
        guard let probe = allocateDevicePage(order: PageSize.pmdOrder) else { return false }
        memory.folioRef(probe).unlock()
        memory.put(probe)
        return true
    }

    /// `dmirror_migrate_alloc_and_copy()`: a device page (or 2 MiB folio) for every source still
    /// migrating, with the bytes copied (or cleared for a hole or the zero page). When a 2 MiB device
    /// folio cannot be had, 512 single pages are allocated (the split fallback).
    ///
    /// The window's single pages are taken from the device pool in one go (``allocateDevicePages(_:into:)``),
    /// as drivers that allocate device memory by the chunk do; dmirror takes its lock once per page.
    func allocateAndCopyToDevice(_ args: MigrateVMA, copy: CopyEngine, phases: inout PhaseTimes) {
        let started = monotonicNanoseconds()
        let copiedBefore = copy.copyNanoseconds
        defer {
            let copying = copy.copyNanoseconds - copiedBefore
            phases.copy += copying
            phases.alloc += monotonicNanoseconds() - started - copying
        }
        let npages = args.npages
        var small = 0
        for i in 0..<npages where args.src[i] & (MigratePfn.migrate | MigratePfn.compound) == MigratePfn.migrate {
            small += 1
        }
        withUnsafeTemporaryAllocation(of: Pfn.self, capacity: max(1, small)) { pages in
            let got = allocateDevicePages(small, into: pages.baseAddress!)
            var next = 0
            queueCopies(args, copy: copy) {
                guard next < got else { return nil }
                next += 1
                return Folio(pfn: pages[next - 1], order: 0)
            }
        }
        copy.run()
    }

    /// The loop of `dmirror_migrate_alloc_and_copy()`: `nextPage` hands out the single pages.
    private func queueCopies(_ args: MigrateVMA, copy: CopyEngine, nextPage: () -> Folio?) {
        let npages = args.npages
        var i = 0
        while i < npages {
            let s = args.src[i]
            guard s & MigratePfn.migrate != 0 else {
                i += 1
                continue
            }
            let source = MigratePfn.pfn(s)
            let write = s & MigratePfn.write
            if s & MigratePfn.compound != 0 {
                if let folio = allocateDevicePage(order: PageSize.pmdOrder) {
                    args.dst[i] = MigratePfn.make(folio.pfn) | MigratePfn.compound | write
                    if let source {
                        copy.copy(
                            from: memory.address(of: source), to: memory.address(of: folio.pfn), bytes: folio.byteCount)
                    } else {
                        copy.clear(memory.address(of: folio.pfn), bytes: folio.byteCount)
                    }
                    stats.hugeToDevice.wrappingAdd(1, ordering: .relaxed)
                    i += PageSize.pmdPages
                    continue
                }
                for j in 0..<PageSize.pmdPages where i + j < args.npages {
                    guard let page = allocateDevicePage(order: 0) else { continue }
                    args.dst[i + j] = MigratePfn.make(page.pfn) | write
                    if let source {
                        copy.copy(
                            from: memory.address(of: source + j), to: memory.address(of: page.pfn),
                            bytes: PageSize.bytes)
                    } else {
                        copy.clear(memory.address(of: page.pfn), bytes: PageSize.bytes)
                    }
                }
                i += PageSize.pmdPages
                continue
            }
            if let page = nextPage() {
                args.dst[i] = MigratePfn.make(page.pfn) | write
                if let source {
                    copy.copy(from: memory.address(of: source), to: memory.address(of: page.pfn), bytes: PageSize.bytes)
                } else {
                    copy.clear(memory.address(of: page.pfn), bytes: PageSize.bytes)
                }
            }
            i += 1
        }
    }

    /// `dmirror_migrate_finalize_and_map()`: maps every migrated page in the device page table (write
    /// tag when the source was writable, or was a hole in a writable VMA: a copy-on-write page the walk
    /// left shared is mapped read-only). Returns the pages migrated.
    ///
    /// With the driver cost, one `xa_store` per page, a 2 MiB destination's 512 included (7.2 loops
    /// over the folio's pages; it does not use `xa_store_range`). Without it, entries are written into
    /// the lab's leaves directly.
    func finalizeAndMap(_ args: MigrateVMA) -> Int {
        if driverCost { return pageTable.withLock { storeEach(args, into: &$0) } }
        var migrated = 0
        let npages = args.npages
        let start = args.start
        let src = args.src.words
        let dst = args.dst.words
        let vmaWritable = args.vma?.isWritable == true
        pageTable.withLock { pt in
            // The leaf is looked up when the address enters a new 2 MiB (a window holds one or two).
            // A single page takes its own short path: relying on the table's last-leaf check, or one
            // loop for both cases, costs 21-27 more instructions per page (callgrind).
            var leafKey = UInt64.max
            var leaf = UnsafeMutablePointer<UInt64>(bitPattern: 8)!
            var i = 0
            while i < npages {
                let s = src[i]
                let d = dst[i]
                guard s & MigratePfn.migrate != 0, let pfn = MigratePfn.pfn(d) else {
                    i &+= 1
                    continue
                }
                // dmirror_migrate_alloc_and_copy: MIGRATE_PFN_WRITE from the source, or, for a hole, from the VMA.
                let writable = s & MigratePfn.write != 0 || (vmaWritable && MigratePfn.pfn(s) == nil)
                var address = start &+ addressOfPage(UInt64(truncatingIfNeeded: i))
                if d & MigratePfn.compound == 0 {
                    if pmdNumber(address) != leafKey {
                        leaf = pt.leaf(for: address)
                        leafKey = pmdNumber(address)
                    }
                    leaf[pteIndex(address)] = DevicePageTable.entry(pfn, writable: writable)
                    migrated &+= 1
                    i &+= 1
                    continue
                }
                // A 2 MiB destination: its 512 pages (clipped to the window).
                let n = min(PageSize.pmdPages, npages &- i)
                for k in 0..<n {
                    if pmdNumber(address) != leafKey {
                        leaf = pt.leaf(for: address)
                        leafKey = pmdNumber(address)
                    }
                    leaf[pteIndex(address)] = DevicePageTable.entry(pfn + k, writable: writable)
                    address &+= PageSize.size
                }
                migrated &+= PageSize.pmdPages
                i &+= n
            }
        }
        return migrated
    }

    /// ``finalizeAndMap(_:)`` through the xarray: `xa_store` per migrated page.
    private func storeEach(_ args: MigrateVMA, into pt: inout DevicePageTable) -> Int {
        var migrated = 0
        let writableVMA = args.vma?.isWritable == true
        var i = 0
        while i < args.npages {
            let s = args.src[i]
            let d = args.dst[i]
            guard s & MigratePfn.migrate != 0, let pfn = MigratePfn.pfn(d) else {
                i += 1
                continue
            }
            let writable = s & MigratePfn.write != 0 || writableVMA
            let n = d & MigratePfn.compound == 0 ? 1 : min(PageSize.pmdPages, args.npages - i)
            for k in 0..<n { pt.set(pageAddress(args.start, i + k), pfn: pfn + k, writable: writable) }
            migrated += d & MigratePfn.compound == 0 ? 1 : PageSize.pmdPages
            i += n
        }
        return migrated
    }

    /// Whether every page of the range is in the device page table (`dmirror_do_read` without `-ENOENT`).
    func isMirrored(_ start: UInt64, _ end: UInt64) -> Bool { firstUnmirrored(start, end) == nil }

    /// The first page of `[start, end)` the device's page table lacks (`dmirror_do_read`'s `-ENOENT`).
    func firstUnmirrored(_ start: UInt64, _ end: UInt64) -> UInt64? {
        pageTable.withLock { pt in
            var a = start
            while a < end {
                if pt.lookup(a) == 0 { return a }
                a += PageSize.size
            }
            return nil
        }
    }

    // MARK: - To the device (unified)

    /// The RFC's `HMM_DMIRROR_MIGRATE_ON_FAULT_TO_DEV` (`dmirror_fault_and_migrate_to_device`, Aug 2025
    /// v1): per window, one `hmm_range_fault` with `REQ_FAULT | REQ_MIGRATE` that faults pages in and
    /// collects them in the same walk, then `migrate_hmm_range_setup`, allocate and copy,
    /// `migrate_vma_pages`, map, finalize; the device lock and `mmu_interval_read_retry` close the
    /// window, and a failed check walks the window again.
    ///
    /// With `.read` access (the RFC's driver) an untouched page read-faults to the zero page and is
    /// collected as a source-less hole (the device page is cleared, `migrate_vma_insert_page` maps it),
    /// and a copy-on-write page is not broken: it is collected still shared (see
    /// ``HMMWalk/migratePrepare(_:_:seen:mm:memory:injector:)``). `.write` adds `REQ_WRITE`, a lab option.
    ///
    /// - Parameters:
    ///   - window: pages per `hmm_range_fault` call (the RFC's test uses 64; dmirror's migrations 512).
    ///   - compound: collect PMD-mapped 2 MiB folios whole (lab option, not in the RFC).
    func migrateOnFault(
        _ start: UInt64, pages: Int, window: Int = migrationWindow, compound: Bool = false, access: DeviceAccess = .read
    ) -> MigrationResult {
        // The migrate arguments hold one window of `migrationWindow` pages; a larger window would
        // overrun them (makeResident passes its whole range as the window).
        let window = min(window, Self.migrationWindow)
        var result = MigrationResult()
        let end = pageAddress(start, pages)
        defer { endWalk() }
        withMigrationContext { context in
            withRange(capacity: window) { range in
                var address = start
                while address < end {
                    let next = min(end, pageAddress(address, window))
                    beginWalk(address, next)
                    let attempt = WindowAttempt(range: range, context: context, compound: compound, access: access)
                    if let errno = migrateWindowOnFault(address, next, attempt, &result) {
                        result.errno = errno
                        return
                    }
                    address = next
                }
            }
        }
        stats.pagesToDevice.wrappingAdd(result.migrated, ordering: .relaxed)
        if result.errno == 0, !isMirrored(start, end) { result.errno = Errno.ENOENT }
        return result
    }

    /// What one window's attempts share: the range and migrate arguments, the copy engine, the
    /// request.
    struct WindowAttempt {
        let range: HMMRange
        let context: MigrationContext
        let compound: Bool
        let access: DeviceAccess
    }

    /// What one attempt at a window came to.
    enum WindowOutcome {
        case done
        /// The notifier sequence moved (an `-EBUSY` walk, or `mmu_interval_read_retry` under the
        /// device lock): walk the window again.
        case retry
        case failed(Int32)
    }

    /// Attempts at `[address, next)` until one is not invalidated (at most 64, then `-EBUSY`): nil,
    /// or the errno that ended the window.
    private func migrateWindowOnFault(
        _ address: UInt64, _ next: UInt64, _ attempt: WindowAttempt, _ result: inout MigrationResult
    ) -> Int32? {
        for _ in 0..<64 {
            switch migrateWindowOnFaultOnce(address, next, attempt, &result) {
            case .done:
                return nil
            case .retry:
                result.selfInvalidationRetries += 1
                result.notifierRetries += 1
                result.crossJobRetries += crossJobRetry()
                stats.retriesFromSelfInvalidation.wrappingAdd(1, ordering: .relaxed)
            case .failed(let errno):
                return errno
            }
        }
        return Errno.EBUSY
    }

    /// One attempt under the mmap read lock: `hmm_range_fault` with `REQ_MIGRATE`, then
    /// `migrate_hmm_range_setup`, allocate and copy, `migrate_vma_pages`, map, finalize, and the
    /// mirror of pages already on this device under the device lock with `mmu_interval_read_retry`.
    ///
    /// Lab departure on `-EBUSY`: what was collected is given back (``AddressSpace/migrateHMMRangeAbort(_:)``)
    /// and the window walked again. The RFC's driver calls hmm_range_fault again (in
    /// dmirror_range_fault) with the previous walk's migration entries still installed and their folios
    /// locked; with REQ_FAULT the rewalk meets them and waits on its own folio locks
    /// (migration_entry_wait), which never ends.
    private func migrateWindowOnFaultOnce(
        _ address: UInt64, _ next: UInt64, _ attempt: WindowAttempt, _ result: inout MigrationResult
    ) -> WindowOutcome {
        let range = attempt.range
        let args = attempt.context.args
        prepareUnifiedRange(range, args, address, next, compound: attempt.compound, access: attempt.access)
        mm.mmapLock.readLock()
        defer { mm.mmapLock.unlock() }
        let t0 = monotonicNanoseconds()
        let r = mm.hmmRangeFault(range)
        let t1 = monotonicNanoseconds()
        result.phases.walk += t1 - t0 - range.faultNanoseconds
        result.phases.fault += range.faultNanoseconds
        result.walks += 1
        result.restarts += range.restarts
        result.faults += range.faults
        result.tlbFlushes += range.migrateFlushes
        if r != 0 {
            mm.migrateHMMRangeAbort(range)
            if r != Errno.EBUSY { return .failed(r) }
            result.add(args)
            return .retry
        }
        mm.migrateHMMRangeSetup(range)
        let t2 = monotonicNanoseconds()
        result.phases.collect += t2 - t1
        result.collected += args.cpages
        allocateAndCopyToDevice(args, copy: attempt.context.copy, phases: &result.phases)
        let t3 = monotonicNanoseconds()
        mm.migrateVMAPages(args)
        let migrated = finalizeAndMap(args)
        mm.migrateVMAFinalize(args)
        result.add(args)
        let retry = mirrorReported(range, address)
        result.phases.finalize += monotonicNanoseconds() - t3
        result.migrated += migrated
        return retry ? .retry : .done
    }

    /// The range and migrate arguments of one unified walk over `[address, next)`.
    private func prepareUnifiedRange(
        _ range: HMMRange, _ args: MigrateVMA, _ address: UInt64, _ next: UInt64, compound: Bool, access: DeviceAccess
    ) {
        range.notifier = notifier
        range.notifierSeq = notifier.readBegin()
        range.start = address
        range.end = next
        range.defaultFlags = access.requestFlags | HMMPfn.requestMigrate
        range.pfnFlagsMask = 0
        range.devPrivateOwner = owner
        range.migrate = args
        range.compoundMigration = compound
        args.pgmapOwner = owner
        args.flags = compound && useCompound(start: address, end: next) ? [.system, .compound] : [.system]
        range.hmmPfns.update(repeating: 0, count: range.npages)
    }

    /// Under the device lock: whether the notifier sequence moved (`mmu_interval_read_retry`), and if
    /// not, the pages the walk reported already on this device mirrored as reported
    /// (`dmirror_do_fault`), but those a CPU fault moved back meanwhile (see `cpuStillMapsDevicePage`).
    private func mirrorReported(_ range: HMMRange, _ address: UInt64) -> Bool {
        let windowPages = range.npages
        let pfns = range.hmmPfns.words
        return pageTable.withLock { pt -> Bool in
            if notifier.readRetry(range.notifierSeq) { return true }
            for i in 0..<windowPages {
                let w = pfns[i]
                guard w & HMMPfn.valid != 0, w & HMMPfn.migrate == 0 else { continue }
                if !cpuStillMapsDevicePage(pageAddress(address, i), HMMPfn.pfn(w)) { continue }
                pt.set(pageAddress(address, i), pfn: HMMPfn.pfn(w), writable: w & HMMPfn.write != 0)
            }
            return false
        }
    }

    // MARK: - Back to system memory

    /// `dev_pagemap_ops.migrate_to_ram` (`dmirror_devmem_fault`): migrates the folio around the fault
    /// back to system memory (`SELECT_DEVICE_PRIVATE`, plus `SELECT_COMPOUND` for a 2 MiB folio), with
    /// `faultPage` locked by the fault path. A fault that came through a PTE migrates order 0, the
    /// fault page alone, since a PTE-mapped folio may be partly mapped (collect splits it).
    ///
    /// With ``setupThroughUnifiedWalk`` a 4 KiB device page is collected by the unified walk, as the
    /// RFC's `migrate_vma_setup` does (Aug 2025 v1: `hmm_range_fault` with `REQ_MIGRATE`, no
    /// `REQ_FAULT`, then `migrate_hmm_range_setup`); a 2 MiB device folio still goes through the
    /// classic collect, since the RFC's walk does not collect large folios ("FIXME support THP").
    func migrateToRAM(_ mm: AddressSpace, address: UInt64, faultPage: Pfn, throughPTE: Bool) throws(FaultError) {
        stats.cpuFaults.wrappingAdd(1, ordering: .relaxed)
        let folioOrder = memory.folio(containing: faultPage).order
        let order = throughPTE ? 0 : folioOrder
        guard let vma = mm.vma(containing: address) else { throw .sigbus(address, "no VMA") }
        let size = UInt64(PageSize.bytes) << order
        let start = max(vma.start, address & ~(size - 1))
        let end = min(vma.end, start + size)
        var failed = false
        withMigrationContext { context in
            let args = context.args
            args.mm = mm
            args.vma = vma
            args.start = start
            args.end = end
            args.pgmapOwner = owner
            args.flags = order > 0 ? [.devicePrivate, .compound] : [.devicePrivate]
            args.faultPage = faultPage
            defer { args.faultPage = nil }
            let unified = setupThroughUnifiedWalk && folioOrder == 0
            let setup =
                unified
                ? withRange(capacity: args.npages) { mm.migrateVMASetupUnified(args, range: $0, fault: false) }
                : mm.migrateVMASetup(args)
            guard setup == 0 else {
                failed = true
                return
            }
            allocateAndCopyToSystem(args, copy: context.copy)
            mm.migrateVMAPages(args)
            // The fault page could not get a system page: the fault fails (VM_FAULT_OOM) rather than retry forever.
            let index = pageCount(args.start, address)
            let headIndex = args.src[index] == 0 ? index & ~(PageSize.pmdPages - 1) : index
            if headIndex < args.npages, args.src[headIndex] != 0, MigratePfn.pfn(args.dst[headIndex]) == nil {
                failed = true
            }
            var migrated = 0
            for i in 0..<args.npages where args.src[i] & MigratePfn.migrate != 0 {
                migrated += args.src[i] & MigratePfn.compound != 0 ? PageSize.pmdPages : 1
            }
            mm.migrateVMAFinalize(args)
            stats.pagesToSystem.wrappingAdd(migrated, ordering: .relaxed)
        }
        if failed { throw .outOfMemory(address) }
    }

    /// `HMM_DMIRROR_MIGRATE_TO_SYS` (`dmirror_migrate_to_system`): explicit migration of the range's
    /// device pages back to system memory, window by window.
    func migrateToSystem(_ start: UInt64, pages: Int) -> MigrationResult {
        var result = MigrationResult()
        let end = pageAddress(start, pages)
        mm.mmapLock.readLock()
        defer { mm.mmapLock.unlock() }
        migrateWindows(start, end, &result, requireRead: false, flags: { _, _ in [.devicePrivate, .compound] }) {
            args, copy, _ in
            allocateAndCopyToSystem(args, copy: copy)
            mm.migrateVMAPages(args)
            var migrated = 0
            for i in 0..<args.npages where args.src[i] & MigratePfn.migrate != 0 && MigratePfn.pfn(args.src[i]) != nil {
                migrated += args.src[i] & MigratePfn.compound != 0 ? PageSize.pmdPages : 1
            }
            return migrated
        }
        stats.pagesToSystem.wrappingAdd(result.migrated, ordering: .relaxed)
        return result
    }

    /// `dmirror_devmem_fault_alloc_and_copy()`: a system folio for every device page still migrating
    /// (2 MiB when the source is compound and one can be had, else single pages), the bytes copied back,
    /// and the device page-table entries removed (`xa_erase` per page with the driver cost; for a 2 MiB
    /// source 7.2's loop erases the first page's index 513 times, the lab each of its 512 pages once).
    func allocateAndCopyToSystem(_ args: MigrateVMA, copy: CopyEngine) {
        var i = 0
        while i < args.npages {
            let s = args.src[i]
            guard s & MigratePfn.migrate != 0, let source = MigratePfn.pfn(s) else {
                i += 1
                continue
            }
            if s & MigratePfn.compound != 0 {
                if let folio = allocateSystemPage(order: PageSize.pmdOrder) {
                    args.dst[i] = MigratePfn.make(folio.pfn) | MigratePfn.compound
                    copy.copy(
                        from: memory.address(of: source), to: memory.address(of: folio.pfn), bytes: folio.byteCount)
                    stats.hugeToSystem.wrappingAdd(1, ordering: .relaxed)
                } else {
                    for j in 0..<PageSize.pmdPages where i + j < args.npages {
                        guard let page = allocateSystemPage(order: 0) else { continue }
                        args.dst[i + j] = MigratePfn.make(page.pfn)
                        copy.copy(
                            from: memory.address(of: source + j), to: memory.address(of: page.pfn),
                            bytes: PageSize.bytes)
                    }
                }
                pageTable.withLock { $0.erasePages(pageAddress(args.start, i), count: PageSize.pmdPages) }
                i += PageSize.pmdPages
                continue
            }
            if let page = allocateSystemPage(order: 0) {
                args.dst[i] = MigratePfn.make(page.pfn)
                copy.copy(from: memory.address(of: source), to: memory.address(of: page.pfn), bytes: PageSize.bytes)
            }
            pageTable.withLock { $0.erasePages(pageAddress(args.start, i), count: 1) }
            i += 1
        }
        copy.run()
    }

    // MARK: - Release

    /// `HMM_DMIRROR_RELEASE` (`dmirror_device_evict_chunk`): every live page of this device is moved back
    /// to system memory wherever it is mapped (`migrate_device_range` → unmap through the reverse map →
    /// copy → `migrate_device_pages` → `migrate_device_finalize`), and the device page table is emptied.
    /// Returns the pages evicted.
    @discardableResult
    func release() -> Int {
        var evicted = 0
        let pool = self.pool
        let src = PfnArray(capacity: PageSize.pmdPages)
        let dst = PfnArray(capacity: PageSize.pmdPages)
        var base = 0
        while base < pool.frameCount {
            let n = min(PageSize.pmdPages, pool.frameCount - base)
            if lockLiveFolios(first: pool.firstPfn + base, n, src, dst) {
                _ = mm.migrateDeviceUnmap(src, npages: n, faultPage: nil, args: nil)
                copyToSystem(src, dst, n)
                evicted += migrateDevicePages(src, dst, n)
                AddressSpace.migrateDeviceFinalize(src: src, dst: dst, npages: n, faultPage: nil, memory: memory)
            }
            base += n
        }
        pageTable.withLock { $0.eraseAll() }
        stats.pagesToSystem.wrappingAdd(evicted, ordering: .relaxed)
        return evicted
    }

    /// `migrate_device_range()` over `n` pool frames from `first`: each live head page of ours is
    /// referenced and locked, and its `src` entry set (`MIGRATE_PFN_COMPOUND` for a THP); every other
    /// entry is 0. Returns whether any page was taken.
    private func lockLiveFolios(first: Pfn, _ n: Int, _ src: borrowing PfnArray, _ dst: borrowing PfnArray) -> Bool {
        var i = 0
        var any = false
        while i < n {
            let pfn = first + i
            let page = memory.page(pfn)
            src[i] = 0
            dst[i] = 0
            let folio = FolioRef(head: page)
            guard page.test(.zoneDevice), !page.isTail, page.deviceOwner == owner, folio.tryGet() else {
                i += 1
                continue
            }
            guard folio.tryLock() else {
                memory.put(memory.folio(containing: pfn))
                i += 1
                continue
            }
            let order = folio.order
            src[i] = MigratePfn.make(pfn) | MigratePfn.migrate | (order > 0 ? MigratePfn.compound : 0)
            any = true
            for k in 1..<(1 << order) where i + k < n {
                src[i + k] = 0
                dst[i + k] = 0
            }
            i += 1 << order
        }
        return any
    }

    /// The copy loop of `dmirror_device_evict_chunk()`: a system folio of the source's order for each
    /// page still migrating, and its bytes copied (`copy_highpage`). Departure: the kernel allocates
    /// with `__GFP_NOFAIL`; here a page that gets no system folio keeps no destination and stays on
    /// the device.
    private func copyToSystem(_ src: borrowing PfnArray, _ dst: borrowing PfnArray, _ n: Int) {
        withMigrationContext { context in
            var k = 0
            while k < n {
                guard src[k] & MigratePfn.migrate != 0, let source = MigratePfn.pfn(src[k]) else {
                    k += 1
                    continue
                }
                let order = src[k] & MigratePfn.compound != 0 ? PageSize.pmdOrder : 0
                if let folio = allocateSystemPage(order: order) {
                    dst[k] = MigratePfn.make(folio.pfn) | (order > 0 ? MigratePfn.compound : 0)
                    context.copy.copy(
                        from: memory.address(of: source), to: memory.address(of: folio.pfn), bytes: folio.byteCount)
                }
                k += 1 << order
            }
            context.copy.run()
        }
    }

    /// `migrate_device_pages()` (no VMA: a compound source needs a compound destination): each
    /// migrating folio's mapping moved to its destination, or its `MIGRATE_PFN_MIGRATE` cleared.
    /// Returns the pages moved.
    private func migrateDevicePages(_ src: borrowing PfnArray, _ dst: borrowing PfnArray, _ n: Int) -> Int {
        var moved = 0
        for k in 0..<n where src[k] & MigratePfn.migrate != 0 {
            guard let s = MigratePfn.pfn(src[k]), let d = MigratePfn.pfn(dst[k]) else {
                src[k] &= ~MigratePfn.migrate
                continue
            }
            if src[k] & MigratePfn.compound != dst[k] & MigratePfn.compound
                || !mm.folioMigrateMapping(memory.folio(containing: d), from: memory.folio(containing: s), extra: 0)
            {
                src[k] &= ~MigratePfn.migrate
            } else {
                moved += src[k] & MigratePfn.compound != 0 ? PageSize.pmdPages : 1
            }
        }
        return moved
    }
}
