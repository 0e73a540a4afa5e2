/// Splitting a 2 MiB folio into 512 order-0 folios: the `__folio_split()` / `split_folio()` step that
/// swap-out and migration take when a large folio cannot be handled whole.
extension AddressSpace {
    /// Splits a locked 2 MiB folio that only this address space maps, by PTEs (split a PMD mapping first
    /// with ``splitHugePMD(_:address:)``). The caller holds the folio lock, one reference, and
    /// `extraPins` more (the fault page's reference); the mmap lock is held.
    ///
    /// Afterwards each page is its own folio with one reference per PTE that maps it; page `keep` also
    /// gets the caller's references and keeps the lock; the others are unlocked, and pages no PTE maps
    /// any more (a partly unmapped THP) are freed, as the kernel frees them after a split.
    ///
    /// Departures from the kernel: a folio mapped by another address space (after fork) is not split;
    /// the split is done in place, without `__folio_split`'s unmap to migration entries and remap (swap-out
    /// uses it; migration's collect and the unified walk split through ``folioSplit(_:keep:extraPins:)``,
    /// which does both).
    ///
    /// - Returns: false (nothing changed) when the references do not add up or another mapper exists.
    func splitFolio(_ folio: Folio, keep: Pfn, extraPins: Int32 = 0) -> Bool {
        precondition(folio.order == PageSize.pmdOrder, "split of \(folio), not a 2 MiB folio")
        let head = memory.folioRef(folio)
        guard head.refCount == head.mapCount + 1 + extraPins else { return false }
        let (id, index) = MappingObject.decode(head.mapping)
        // The kernel unmaps the folio (migration entries, under each PTE lock) and freezes its refcount
        // before it splits, so no fault can change a mapping of it meanwhile. The lab splits in place,
        // so it holds the locks of every PTE table that maps the folio while it counts the mappings and
        // rewrites the counts: a copy-on-write fault that replaced a PTE of the folio after the count,
        // then dropped its mapping and reference on the (by then split) folio, left a page counted as
        // mapped that nothing mapped and took the head's mapping and reference away while it was still
        // mapped (`bench stress --seed 7`: a frame not returned after teardown; a mapped page with a
        // zero refcount; "unmapped more often than mapped" in munmap).
        var tableSlots: [EntrySlot] = []
        for vma in vmaList where vma.object.id == id {
            for i in 0..<PageSize.pmdPages {
                guard let va = vma.address(ofIndex: index + UInt64(i)), let slot = pageTable.pteSlot(va) else {
                    continue
                }
                let frame = pageTable.tableFrame(of: slot)
                if !tableSlots.contains(where: { pageTable.tableFrame(of: $0) == frame }) { tableSlots.append(slot) }
            }
        }
        tableSlots.sort { pageTable.tableFrame(of: $0).rawValue < pageTable.tableFrame(of: $1).rawValue }
        let locks = tableSlots.map { pageTable.lock(tableOf: $0) }
        defer { for lock in locks.reversed() { lock.unlock() } }
        let maps = head.mapCount
        guard head.refCount == maps + 1 + extraPins else { return false }
        // Count the PTEs of this address space that map each page, through the reverse-map index.
        var counts = [Int32](repeating: 0, count: PageSize.pmdPages)
        var total: Int32 = 0
        for vma in vmaList where vma.object.id == id {
            for i in 0..<PageSize.pmdPages {
                guard let va = vma.address(ofIndex: index + UInt64(i)), let slot = pageTable.pteSlot(va) else {
                    continue
                }
                let e = slot.load()
                let pfn = folio.pfn + i
                if (e.isPresent || e.isDevicePrivate || e.isDeviceExclusive) && e.pfn == pfn {
                    counts[i] += 1
                    total += 1
                }
            }
        }
        guard total == maps else { return false }
        guard let pool = memory.pool(of: folio.pfn) else { return false }
        pool.allocator.splitAllocated(folio.pfn.index - pool.firstPfn.index)
        // Under the lruvec lock, as __folio_split: each new folio goes on the LRU if the folio was (lru_add_split_folio).
        memory.withLRUVecLock(of: folio.pfn) {
            splitDescriptors(folio, keep: keep, object: id, index: index, lockAll: false) { i, kept in
                (counts[i], counts[i] + (kept ? 1 + extraPins : 0))
            }
        }
        // Pages nobody maps any more are freed now.
        for i in 0..<PageSize.pmdPages where counts[i] == 0 && folio.pfn + i != keep {
            let page = head.page(i)
            if page.test(.zoneDevice), let backing = memory.takeBacking(of: Folio(pfn: folio.pfn + i, order: 0)) {
                memory.put(backing)
            }
            page.storeFlags(0)
            page.setMapping(0)
            pool.allocator.free(folio.pfn.index + i - pool.firstPfn.index, order: 0)
        }
        counters.folioSplits.wrappingAdd(1, ordering: .relaxed)
        return true
    }
}

extension AddressSpace {
    /// `split_folio()` → `split_huge_page_to_list_to_order()` → `__folio_split()` for a locked 2 MiB
    /// anonymous folio, the way the kernel does it:
    ///
    /// 1. `anon_vma_lock_write()` of the folio's object, held to the end;
    /// 2. the racy refcount check (`folio_expected_ref_count() != folio_ref_count() - 1`: `-EAGAIN`);
    /// 3. `unmap_folio()`: `try_to_migrate(TTU_RMAP_LOCKED | TTU_SPLIT_HUGE_PMD | TTU_SYNC | TTU_BATCH_FLUSH)`,
    ///    so a PMD mapping is split straight into PTE migration entries (one flush in `pmdp_invalidate`)
    ///    and each PTE mapping becomes a migration entry (one `try_to_unmap_flush()` for the batch);
    /// 4. `__folio_freeze_and_split_unmapped()`: `folio_ref_freeze()` to the caller's references (fails
    ///    when something else holds one, or a mapping is left), then `__split_unmapped_folio()`: 512
    ///    order-0 folios, each unfrozen with one reference, locked, on the LRU if the folio was, under
    ///    the lruvec lock (with the `lru` cost);
    /// 5. `remap_page()`: `remove_migration_ptes(folio, folio, TTU_RMAP_LOCKED)` for each new folio (for
    ///    the whole folio if the split failed), through `rmap_walk_locked`;
    /// 6. every new folio but the one holding `keep` is unlocked and put (`free_folio_and_swap_cache`),
    ///    which frees the pages no PTE maps any more.
    ///
    /// The caller holds the folio lock, one reference and `extraPins` more (the fault page's reference,
    /// which stays with `keep`), and the mmap lock for reading. Page `keep` stays locked with the
    /// caller's references.
    ///
    /// The unmap and the remap reach every address space of the folio's object, a forked child's too,
    /// as the kernel's rmap walks do: a PTE-mapped device THP must split for `migrate_to_ram` to take
    /// one page, and a fault that cannot split it would retry for ever (a CPU access), or until
    /// `hmm_range_fault`'s budget ends (a device read: `-EBUSY`).
    ///
    /// Departures from the kernel: `extraPins` is accepted by the freeze where the kernel would refuse
    /// (`-EAGAIN`); `remap_page`'s `TTU_USE_SHARED_ZEROPAGE` (zero-filled pages mapped to the shared
    /// zero page) is not modelled.
    ///
    /// - Returns: whether the folio was split, and the migration entries `unmap_folio` installed.
    func folioSplit(_ folio: Folio, keep: Pfn, extraPins: Int32 = 0) -> (split: Bool, migrationEntries: Int) {
        precondition(folio.order == PageSize.pmdOrder, "split of \(folio), not a 2 MiB folio")
        let head = memory.folioRef(folio)
        let (id, index) = MappingObject.decode(head.mapping)
        // folio_get_anon_vma + anon_vma_lock_write.
        guard id != 0, let object = MappingObject.lookup(id), object.kind == .anon else { return (false, 0) }
        object.rmapLock.writeLock()
        defer { object.rmapLock.unlock() }
        // Membership and VMA changes take this lock for writing, so the object's address spaces (a
        // forked child's too) and their VMAs stay as they are while the walks below visit them; their
        // entries change only under the PTE and PMD locks the walks take, as in the kernel.
        guard head.refCount == head.mapCount + 1 + extraPins else { return (false, 0) }
        guard let pool = memory.pool(of: folio.pfn) else { return (false, 0) }
        var cache = RmapCache()
        // unmap_folio
        let installed = tryToMigrate(folio, flags: [.rmapLocked, .splitHugePMD, .sync, .batchFlush], cache: &cache)
        // folio_ref_freeze(folio, 1): the caller's references only, no mapping left.
        let frozen =
            head.mapCount == 0
            && head.refFreeze(1 + extraPins)
        guard frozen else {
            // remap_page of the unsplit folio.
            AddressSpace.removeMigrationPTEs(src: folio, dst: folio, memory: memory, locked: true, cache: &cache)
            return (false, installed)
        }
        // __split_unmapped_folio: every new folio is locked (PG_locked of the head) and unfrozen with
        // one reference (folio_ref_unfreeze); keep's folio gets the caller's references back.
        pool.allocator.splitAllocated(folio.pfn.index - pool.firstPfn.index)
        // Under the lruvec lock (folio_lruvec_lock): each new folio goes on the LRU if the folio was,
        // PG_lru being among the flags copied (lru_add_split_folio).
        memory.withLRUVecLock(of: folio.pfn) {
            splitDescriptors(folio, keep: keep, object: id, index: index, lockAll: true) { _, kept in
                (0, 1 + (kept ? extraPins : 0))
            }
        }
        counters.folioSplits.wrappingAdd(1, ordering: .relaxed)
        // remap_page: remove_migration_ptes(new folio, new folio, TTU_RMAP_LOCKED) per new folio.
        for i in 0..<PageSize.pmdPages {
            let page = Folio(pfn: folio.pfn + i, order: 0)
            AddressSpace.removeMigrationPTEs(src: page, dst: page, memory: memory, locked: true, cache: &cache)
        }
        // Unlock and put every new folio but keep's; those no PTE maps are freed.
        for i in 0..<PageSize.pmdPages where folio.pfn + i != keep {
            let page = Folio(pfn: folio.pfn + i, order: 0)
            memory.folioRef(page).unlock()
            memory.put(page)
        }
        return (true, installed)
    }

    /// The descriptor rewrite of `__split_folio_to_order()`: each page of the 2 MiB `folio` becomes an
    /// order-0 folio with the head's flags (less head, tail and, unless `lockAll`, the lock; page `keep`
    /// is always locked), its own anon-exclusive bit, the head's owner, its object index, and the
    /// mapcount and references `counts(i, isKeep)` gives. Once per split, off the per-page paths.
    private func splitDescriptors(
        _ folio: Folio, keep: Pfn, object id: UInt64, index: UInt64, lockAll: Bool,
        counts: (Int, Bool) -> (mapcount: Int32, references: Int32)
    ) {
        let head = memory.folioRef(folio)
        let common = head.flags.subtracting(
            lockAll ? [.head, .tail, .anonExclusive] : [.head, .tail, .locked, .anonExclusive])
        let owner = head.privateWord
        let step = head.splitPrivateStep
        memory.splitBacking(of: folio)
        for i in 0..<PageSize.pmdPages {
            let pfn = folio.pfn + i
            let page = head.page(i)
            var f = common
            if page.test(.anonExclusive) { f.insert(.anonExclusive) }
            if pfn == keep { f.insert(.locked) }
            let (mapcount, references) = counts(i, pfn == keep)
            page.storeFlags(f.rawValue)
            page.setPrivate(owner &+ UInt64(i) &* step)
            page.setMapping(id << 40 | (index + UInt64(i)))
            page.setMapcount(mapcount)
            page.setRefCount(references)
        }
    }
}
