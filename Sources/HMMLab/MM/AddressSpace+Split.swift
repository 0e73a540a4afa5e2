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
    /// Departure from the kernel: a folio mapped by another address space (after fork) is not split.
    ///
    /// - Returns: false (nothing changed) when the references do not add up or another mapper exists.
    func splitFolio(_ folio: Folio, keep: Pfn, extraPins: Int32 = 0) -> Bool {
        precondition(folio.order == PageSize.pmdOrder, "split of \(folio), not a 2 MiB folio")
        let head = memory.page(folio.pfn)
        guard head.pointee.references == head.pointee.mappings + 1 + extraPins else { return false }
        let (id, index) = MappingObject.decode(head.pointee.mapping.load(ordering: .acquiring))
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
                guard let va = vma.address(ofIndex: index + UInt64(i)), let slot = pageTable.pteSlot(va) else { continue }
                let frame = pageTable.tableFrame(of: slot)
                if !tableSlots.contains(where: { pageTable.tableFrame(of: $0) == frame }) { tableSlots.append(slot) }
            }
        }
        tableSlots.sort { pageTable.tableFrame(of: $0).rawValue < pageTable.tableFrame(of: $1).rawValue }
        let locks = tableSlots.map { pageTable.lock(tableOf: $0) }
        defer { for lock in locks.reversed() { lock.unlock() } }
        let maps = head.pointee.mappings
        guard head.pointee.references == maps + 1 + extraPins else { return false }
        // Count the PTEs of this address space that map each page, through the reverse-map index.
        var counts = [Int32](repeating: 0, count: PageSize.pmdPages)
        var total: Int32 = 0
        for vma in vmaList where vma.object.id == id {
            for i in 0..<PageSize.pmdPages {
                guard let va = vma.address(ofIndex: index + UInt64(i)), let slot = pageTable.pteSlot(va) else { continue }
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
        let common = head.pointee.pageFlags.subtracting([.head, .tail, .locked, .anonExclusive])
        pool.allocator.splitAllocated(folio.pfn.index - pool.firstPfn.index)
        for i in 0..<PageSize.pmdPages {
            let pfn = folio.pfn + i
            let page = head + i
            var f = common
            if page.pointee.test(.anonExclusive) { f.insert(.anonExclusive) }
            if pfn == keep { f.insert(.locked) }
            let refs = counts[i] + (pfn == keep ? 1 + extraPins : 0)
            page.pointee.flags.store(f.rawValue, ordering: .relaxed)
            page.pointee.private.store(head.pointee.private.load(ordering: .relaxed), ordering: .relaxed)
            page.pointee.mapping.store(id << 40 | (index + UInt64(i)), ordering: .relaxed)
            page.pointee.mapcount.store(counts[i], ordering: .relaxed)
            page.pointee.refcount.store(refs, ordering: .releasing)
        }
        // Pages nobody maps any more are freed now.
        for i in 0..<PageSize.pmdPages where counts[i] == 0 && folio.pfn + i != keep {
            let page = head + i
            page.pointee.flags.store(0, ordering: .relaxed)
            page.pointee.mapping.store(0, ordering: .relaxed)
            pool.allocator.free(folio.pfn.index + i - pool.firstPfn.index, order: 0)
        }
        counters.folioSplits.wrappingAdd(1, ordering: .relaxed)
        return true
    }
}
