import CLinux
import Glibc

extension AddressSpace {
    /// `migrate_vma_pages()` → `__migrate_device_pages()`: for every source still migrating with a
    /// destination, moves the folio's metadata to the destination (`folio_migrate_mapping` with its
    /// expected-refcount check, `folio_migrate_flags`); for holes and the zero page, inserts the
    /// destination page into the page table (`migrate_vma_insert_page`) under a second
    /// `MMU_NOTIFY_MIGRATE` invalidation; splits a 2 MiB source whose destination is not compound
    /// (`migrate_vma_split_unmapped_folio`). Sources that cannot move lose `MIGRATE_PFN_MIGRATE`.
    /// Kept in one piece on purpose: its per-entry cases follow `__migrate_device_pages()`'s loop.
    func migrateVMAPages(_ args: MigrateVMA) {
        if let injector { injectBeforePages(args, injector) }
        var notified = false
        var range = MMUNotifierRange(start: 0, end: 0, event: .migrate, owner: args.pgmapOwner)
        // The object kind of the last source looked up (a window's pages almost always share one).
        var lastObject: (id: UInt64, anon: Bool) = (0, false)
        let npages = args.npages
        let faultPage = args.faultPage
        var i = 0
        while i < npages {
            var nr = 1
            defer { i += nr }
            Self.prefetchDescriptors(args.src, args.dst, i + MigrateVMA.prefetchDistance, npages, memory: memory)
            let src = args.src[i]
            let dst = args.dst[i]
            guard let newPfn = MigratePfn.pfn(dst) else {
                args.src[i] &= ~MigratePfn.migrate
                continue
            }
            guard let oldPfn = MigratePfn.pfn(src) else {
                guard src & MigratePfn.migrate != 0 else { continue }
                let address = pageAddress(args.start, i)
                if !notified {
                    notified = true
                    range = MMUNotifierRange(start: address, end: args.end, event: .migrate, owner: args.pgmapOwner)
                    notifiers.invalidateRangeStart(range)
                }
                if src & MigratePfn.compound != 0, dst & MigratePfn.compound == 0 {
                    nr = PageSize.pmdPages
                    args.src[i] &= ~MigratePfn.compound
                }
                for j in 0..<nr where i + j < args.npages {
                    args.src[i + j] |= MigratePfn.migrate
                    migrateVMAInsertPage(args, at: pageAddress(address, j), index: i + j)
                }
                continue
            }
            var folio = memory.folio(containing: oldPfn)
            if src & MigratePfn.migrate != 0, src & MigratePfn.compound != 0, dst & MigratePfn.compound == 0 {
                nr = folio.pageCount
                guard splitUnmappedFolio(args, index: i, folio: folio) else {
                    args.src[i] &= ~(MigratePfn.migrate | MigratePfn.compound)
                    continue
                }
                folio = Folio(pfn: oldPfn, order: 0)
            } else if src & MigratePfn.migrate != 0, dst & MigratePfn.compound != 0, src & MigratePfn.compound == 0 {
                args.src[i] &= ~MigratePfn.migrate
            } else if src & MigratePfn.compound != 0 {
                nr = PageSize.pmdPages
            }
            let newFolio = memory.folio(containing: newPfn)
            let newHead = memory.folioRef(newFolio)
            let (objectID, _) = MappingObject.decode(memory.folioRef(folio).mapping)
            if newHead.test(.zoneDevice) {
                // Only anonymous memory goes to device-private memory.
                if objectID != lastObject.id { lastObject = (objectID, MappingObject.lookup(objectID)?.kind == .anon) }
                if !lastObject.anon {
                    args.src[i] &= ~MigratePfn.migrate
                    args.refused += 1
                    continue
                }
            }
            if nr == 1 {
                // A single page (the common case): the folios are the ones just looked up.
                if args.src[i] & MigratePfn.migrate != 0 {
                    migratePage(args, index: i, from: folio, to: newFolio, faultPage: faultPage)
                }
                continue
            }
            for j in 0..<nr where i + j < npages {
                guard args.src[i + j] & MigratePfn.migrate != 0, let s = MigratePfn.pfn(args.src[i + j]),
                    let d = MigratePfn.pfn(args.dst[i + j])
                else { continue }
                migratePage(
                    args, index: i + j, from: memory.folio(containing: s), to: memory.folio(containing: d),
                    faultPage: faultPage)
            }
        }
        if notified { notifiers.invalidateRangeEnd(range) }
    }

    /// The injected races of `migrate_vma_pages`: a reference appearing on a collected source (a
    /// concurrent pin) before the copy is installed, and a CPU on another thread faulting on one of
    /// the pages under migration and waiting.
    private func injectBeforePages(_ args: MigrateVMA, _ injector: FaultInjector) {
        for i in 0..<args.npages where args.src[i] & MigratePfn.migrate != 0 {
            guard let pfn = MigratePfn.pfn(args.src[i]), injector.fire(.pin) else { continue }
            let folio = memory.folio(containing: pfn)
            memory.folioRef(folio).get()
            args.injectedPins.append(folio)
        }
        injector.injectCPUFault(args, mm: self)
    }

    /// One source of `migrate_vma_pages`: `folio_migrate_mapping` from `old` to `new`, or `MIGRATE`
    /// cleared and the page counted as refused. The fault path's reference is on the fault page's
    /// folio only (after a split, not on the other 511 pages).
    @inline(__always)
    private func migratePage(_ args: MigrateVMA, index: Int, from old: Folio, to new: Folio, faultPage: Pfn?) {
        let extra: Int32 = faultPage.map { memory.folio(containing: $0) == old } == true ? 1 : 0
        if !folioMigrateMapping(new, from: old, extra: extra) {
            args.src[index] &= ~MigratePfn.migrate
            args.refused += 1
        }
    }

    /// `prefetchw()` of the source and destination descriptors of entry `i`, so that the atomics on
    /// them do not wait for memory (the window's copy has just pushed them out of the cache).
    @inline(__always)
    private static func prefetchDescriptors(
        _ src: borrowing PfnArray, _ dst: borrowing PfnArray, _ i: Int, _ npages: Int, memory: PhysicalMemory
    ) {
        guard i < npages else { return }
        if let s = MigratePfn.pfn(src[i]) { memory.page(s).prefetchw() }
        if let d = MigratePfn.pfn(dst[i]) { memory.page(d).prefetchw() }
    }

    /// `folio_migrate_mapping()` for anonymous folios without a swap cache, then `folio_migrate_flags()`:
    /// the old folio must hold exactly the expected references (its mappings, none left after unmap,
    /// plus the migration's own and `extra`); the new folio takes its mapping, index and flags.
    @inline(__always)
    func folioMigrateMapping(_ new: Folio, from old: Folio, extra: Int32) -> Bool {
        let oldHead = memory.folioRef(old)
        let expected = oldHead.mapCount + extra + 1
        guard oldHead.refCount == expected else { return false }
        let newHead = memory.folioRef(new)
        newHead.setMapping(oldHead.mapping, ordering: .releasing)
        let carried = oldHead.flags.intersection([.anon, .swapBacked, .uptodate, .dirty, .referenced, .active])
        newHead.set(carried)
        return true
    }

    /// `migrate_vma_split_unmapped_folio()`: the destination could not get a 2 MiB page, so the unmapped,
    /// locked source folio is split (its PMD migration entry becomes 512 PTE migration entries, the folio
    /// 512 locked order-0 folios each holding the migration's reference) and `src` is rewritten page by page.
    ///
    /// As `__folio_freeze_and_split_unmapped()` does (`folio_ref_freeze(folio, 1 + extra_pins)`), the
    /// split is refused when the folio holds more references than the migration's own and, for a
    /// `migrate_to_ram` whose fault page is in it, the fault path's (a concurrent pin: the source then
    /// stays where it is); the fault path's reference stays with the fault page's own folio after the
    /// split, where `do_swap_page` drops it. Resetting every refcount to 1 regardless lost those
    /// references: the fault page was freed while still mapped after the migration backed off
    /// (`bench stress --seed 7`, a mutator's `migrate_to_ram` of a 2 MiB device folio with no 2 MiB
    /// system page free), and a pin's later put underflowed.
    func splitUnmappedFolio(_ args: MigrateVMA, index: Int, folio: Folio) -> Bool {
        let address = pageAddress(args.start, index)
        let head = memory.folioRef(folio)
        let faultPage = args.faultPage.flatMap { memory.folio(containing: $0) == folio ? $0 : nil }
        let extraPins: Int32 = faultPage == nil ? 0 : 1
        guard head.mapCount == 0, head.refCount == 1 + extraPins else { return false }
        guard let pmd = pageTable.pmdSlot(address, allocate: false), pmd.load().isMigration else { return false }
        guard splitHugePMD(pmd, address: address) else { return false }
        guard let pool = memory.pool(of: folio.pfn) else { return false }
        let (id, idx) = MappingObject.decode(head.mapping)
        let common = head.flags.subtracting([.head, .tail])
        let owner = head.privateWord
        let step = head.splitPrivateStep
        pool.allocator.splitAllocated(folio.pfn.index - pool.firstPfn.index)
        memory.splitBacking(of: folio)
        for i in 0..<PageSize.pmdPages {
            let page = head.page(i)
            page.storeFlags(common.rawValue)
            page.setPrivate(owner &+ UInt64(i) &* step)
            page.setMapping(id << 40 | (idx + UInt64(i)))
            page.setMapcount(0)
            page.setRefCount(1 + (folio.pfn + i == faultPage ? extraPins : 0))
        }
        let flags = args.src[index] & ((1 << MigratePfn.shift) - 1) & ~MigratePfn.compound
        args.src[index] = MigratePfn.make(folio.pfn) | flags
        for i in 1..<PageSize.pmdPages where index + i < args.npages {
            args.src[index + i] = MigratePfn.make(folio.pfn + i) | flags
        }
        args.splitsAfterIsolation += 1
        counters.folioSplits.wrappingAdd(1, ordering: .relaxed)
        return true
    }

    /// `migrate_vma_insert_page()` (and `migrate_vma_insert_huge_pmd_page()` for a compound destination):
    /// maps the destination where there was a hole or the zero page, as `do_anonymous_page` would; backs
    /// off (clearing `MIGRATE`) on anything else. A compound destination replaces a none PMD or the
    /// huge zero PMD (flushed, `pmdp_invalidate`); a single page under the huge zero PMD splits it into
    /// zero-page PTEs first (`split_huge_pmd`) and replaces its zero PTE.
    func migrateVMAInsertPage(_ args: MigrateVMA, at address: UInt64, index: Int) {
        guard let vma = args.vma, vma.isAnonymous, let newPfn = MigratePfn.pfn(args.dst[index]) else {
            args.src[index] &= ~MigratePfn.migrate
            return
        }
        let folio = memory.folio(containing: newPfn)
        let head = memory.folioRef(folio)
        let device = head.test(.zoneDevice)
        guard let pmd = pageTable.pmdSlot(address, allocate: true) else {
            args.src[index] &= ~MigratePfn.migrate
            return
        }
        if args.dst[index] & MigratePfn.compound != 0 {
            let lock = pageTable.lock(tableOf: pmd)
            let old = pmd.load()
            let zero = memory.isHugeZeroPMD(old)
            guard old.isNone || zero, isPMDAligned(address), address + PageSize.pmdSize <= vma.end else {
                lock.unlock()
                for k in 0..<PageSize.pmdPages where index + k < args.npages {
                    args.src[index + k] &= ~MigratePfn.migrate
                }
                return
            }
            addNewAnonRmap(folio, vma: vma, address: address)
            head.get()
            if zero { flushTLB() }  // pmdp_invalidate
            pmd.store(
                device
                    ? .devicePrivate(folio.pfn, writable: vma.isWritable)
                    : .present(folio.pfn, writable: vma.isWritable, dirty: vma.isWritable, huge: true))
            lock.unlock()
            return
        }
        if memory.isHugeZeroPMD(pmd.load()), !splitHugePMD(pmd, address: address) {
            args.src[index] &= ~MigratePfn.migrate
            return
        }
        if pmd.load().isHuge || pmd.load().isSwapFormat {
            args.src[index] &= ~MigratePfn.migrate
            return
        }
        guard let table = pageTable.pteTable(under: pmd, allocate: true) else {
            args.src[index] &= ~MigratePfn.migrate
            return
        }
        let slot = pageTable.slot(in: table, level: .pte, address: address)
        let lock = pageTable.lock(tableOf: slot)
        let orig = slot.load()
        let zero = orig.isPresent && orig.pfn == memory.zeroPage
        guard orig.isNone || zero else {
            lock.unlock()
            args.src[index] &= ~MigratePfn.migrate
            return
        }
        head.set(.uptodate)
        addNewAnonRmap(folio, vma: vma, address: address)
        head.get()
        if zero { flushTLB() }  // ptep_clear_flush
        slot.store(
            device
                ? .devicePrivate(newPfn, writable: vma.isWritable)
                : .present(newPfn, writable: vma.isWritable, dirty: vma.isWritable))
        lock.unlock()
        args.src[index] = MigratePfn.migrate
    }

    /// `migrate_vma_finalize()` → `__migrate_device_finalize()`: maps the destination where migration
    /// succeeded and the source again where it did not (`remove_migration_ptes`), puts system folios
    /// back on the LRU, and unlocks and releases sources and destinations (not the fault page).
    func migrateVMAFinalize(_ args: MigrateVMA) {
        AddressSpace.migrateDeviceFinalize(
            src: args.src, dst: args.dst, npages: args.npages, faultPage: args.faultPage, memory: memory)
        for folio in args.injectedPins { memory.put(folio) }
        args.injectedPins.removeAll(keepingCapacity: true)
        // The injected CPU faults can proceed now; a migrate_to_ram's fault page stays locked until the
        // fault path unlocks it, which joins them then.
        if args.faultPage == nil { injector?.joinCPUFaults() }
    }

    /// `migrate_device_finalize()`, usable without a VMA (device eviction).
    ///
    /// Sources and destinations whose last reference goes here are freed together when the call ends
    /// (``FreeBatch``), as `free_unref_folio` puts them on the per-CPU lists without the zone lock.
    static func migrateDeviceFinalize(
        src: borrowing PfnArray, dst: borrowing PfnArray, npages: Int, faultPage: Pfn?, memory: PhysicalMemory
    ) {
        let faultFolio = faultPage.map { memory.folio(containing: $0) }
        FreeBatch.with(memory) { frees in
            finalizeEntries(src: src, dst: dst, npages: npages, faultFolio: faultFolio, memory: memory, frees: &frees)
        }
    }

    /// The loop of `__migrate_device_finalize()`: per source, `remove_migration_ptes(src, dst, 0)`
    /// through the reverse map (`rmap_walk`, which takes the object's lock for reading per folio, as
    /// `rmap_walk_anon` takes the anon_vma's), then the unlocks and puts.
    private static func finalizeEntries(
        src: borrowing PfnArray, dst: borrowing PfnArray, npages: Int, faultFolio: Folio?, memory: PhysicalMemory,
        frees: inout FreeBatch
    ) {
        var rmap = RmapCache()
        for i in 0..<npages {
            prefetchDescriptors(src, dst, i + MigrateVMA.prefetchDistance, npages, memory: memory)
            let newFolio = MigratePfn.pfn(dst[i]).map { memory.folio(containing: $0) }
            guard let page = MigratePfn.pfn(src[i]) else {
                if let newFolio {
                    memory.folioRef(newFolio).unlock()
                    memory.put(newFolio, freeingInto: &frees)
                }
                continue
            }
            let srcFolio = memory.folio(containing: page)
            var target = srcFolio
            if src[i] & MigratePfn.migrate == 0 || newFolio == nil {
                if let newFolio {
                    memory.folioRef(newFolio).unlock()
                    memory.put(newFolio, freeingInto: &frees)
                }
            } else {
                target = newFolio!
            }
            let targetHead = memory.folioRef(target)
            if !targetHead.test(.zoneDevice) { memory.folioAddLRU(target) }
            removeMigrationPTEs(src: srcFolio, dst: target, memory: memory, cache: &rmap)
            if srcFolio != faultFolio { memory.folioRef(srcFolio).unlock() }
            memory.put(srcFolio, freeingInto: &frees)
            if target != srcFolio {
                targetHead.unlock()
                memory.put(target, freeingInto: &frees)
            }
        }
    }

    /// `remove_migration_ptes(src, dst, flags)`: through the reverse map (``rmapWalk(_:in:locked:cache:_:)``),
    /// replaces every migration entry that refers to `src` with a mapping of `dst` (`remove_migration_pte`,
    /// `remove_migration_pmd`): a device-private entry if `dst` is device memory, else a present entry;
    /// writable if the migration entry was, exclusive if it was writable or read-exclusive. In a
    /// PROT_NONE VMA the present entry is PROT_NONE (`mk_pte(new, vma->vm_page_prot)`).
    ///
    /// `locked`: `TTU_RMAP_LOCKED`, the caller holds the object's reverse-map lock (`rmap_walk_locked`,
    /// as `remap_page` in `__folio_split`); otherwise the walk takes it for reading (`rmap_walk`).
    /// The kernel walks `dst`'s reverse map; `dst` has `src`'s mapping and index by then
    /// (`folio_migrate_mapping`), so walking `src`'s finds the same VMAs.
    static func removeMigrationPTEs(
        src: Folio, dst: Folio, memory: PhysicalMemory, locked: Bool = false, cache: inout RmapCache
    ) {
        rmapWalk(src.pfn, in: memory, locked: locked, cache: &cache) { mm, vma, address in
            var cursor = PTECursor()
            removeMigrationEntry(
                src: src, dst: dst, memory: memory, mm: mm, vma: vma, address: address, cursor: &cursor)
        }
    }

    /// `remove_migration_pte()` / `remove_migration_pmd()` at one address. A single page, the common
    /// case, goes straight to ``removeMigrationPTE(src:dst:dstHead:device:memory:mm:vma:address:cursor:)``
    /// (inlined into the caller's loop); a 2 MiB folio to ``removeLargeMigrationEntry(src:dst:memory:mm:vma:address:cursor:)``.
    @inline(__always)
    static func removeMigrationEntry(
        src: Folio, dst: Folio, memory: PhysicalMemory, mm: AddressSpace, vma: VMA, address: UInt64,
        cursor: inout PTECursor
    ) {
        if src.order == 0 {
            let dstHead = memory.folioRef(dst)
            removeMigrationPTE(
                src: src.pfn, dst: dst.pfn, dstHead: dstHead, device: dstHead.test(.zoneDevice), memory: memory, mm: mm,
                vma: vma, address: address,
                cursor: &cursor)
            return
        }
        removeLargeMigrationEntry(
            src: src, dst: dst, memory: memory, mm: mm, vma: vma, address: address, cursor: &cursor)
    }

    /// ``removeMigrationEntry(src:dst:memory:mm:vma:address:cursor:)`` for a 2 MiB source folio: its PMD
    /// migration entry (`remove_migration_pmd`), or the PTE-level ones a split PMD left.
    @inline(never)
    static func removeLargeMigrationEntry(
        src: Folio, dst: Folio, memory: PhysicalMemory, mm: AddressSpace, vma: VMA, address: UInt64,
        cursor: inout PTECursor
    ) {
        let dstHead = memory.folioRef(dst)
        let device = dstHead.test(.zoneDevice)
        // A PMD migration entry of the whole folio.
        guard let pmd = mm.pageTable.pmdSlot(address, allocate: false) else { return }
        let lock = mm.pageTable.lock(tableOf: pmd)
        let e = pmd.load()
        if e.isMigration, e.pfn == src.pfn, dst.order == src.order {
            let writable = e.isWritableMigration
            let exclusive = writable || e.isReadExclusiveMigration
            let present: PTE =
                vma.isNoAccess
                ? .protNone(dst.pfn, huge: true)
                : .present(dst.pfn, writable: writable, dirty: e.migrationDirty, huge: true)
            pmd.store(device ? .devicePrivate(dst.pfn, writable: writable) : present)
            if exclusive { for k in 0..<dst.pageCount { dstHead.page(k).set(.anonExclusive) } }
            dstHead.get()
            mm.addRmap(dst)
            lock.unlock()
            return
        }
        lock.unlock()
        // Mapped by PTEs here (a PMD split in another address space, after fork): try_to_migrate put
        // one migration entry per page; page_vma_mapped_walk finds them one by one.
        guard dst.order == src.order, !e.isHuge, !e.isSwapFormat, !e.isNone else { return }
        for k in 0..<src.pageCount where pageAddress(address, k) < vma.end {
            removeMigrationPTE(
                src: src.pfn + k, dst: dst.pfn + k, dstHead: dstHead, device: device, memory: memory, mm: mm, vma: vma,
                address: pageAddress(address, k),
                cursor: &cursor)
        }
    }

    /// `remove_migration_pte()` for one PTE: the migration entry of `src` becomes a mapping of `dst`
    /// (one mapping and one reference on `dst`'s folio, whose head is `dstHead`).
    @inline(__always)
    static func removeMigrationPTE(
        src: Pfn, dst: Pfn, dstHead: FolioRef, device: Bool, memory: PhysicalMemory, mm: AddressSpace, vma: VMA,
        address: UInt64,
        cursor: inout PTECursor
    ) {
        guard let slot = cursor.slot(address, in: mm.pageTable) else { return }
        let lock = mm.pageTable.lock(tableOf: slot)
        let e = slot.load()
        if e.isMigration, e.pfn == src {
            let writable = e.isWritableMigration
            let exclusive = writable || e.isReadExclusiveMigration
            let newEntry: PTE =
                device
                ? .devicePrivate(dst, writable: writable, softDirty: e.swapSoftDirty)
                : vma.isNoAccess
                    ? .protNone(dst)
                    : .present(
                        dst, writable: writable && vma.isWritable, dirty: e.migrationDirty, softDirty: e.swapSoftDirty)
            slot.store(newEntry)
            if exclusive { memory.page(dst).set(.anonExclusive) }
            dstHead.get()
            mm.addRmap(memory.folio(containing: dst))
        }
        lock.unlock()
    }
}
