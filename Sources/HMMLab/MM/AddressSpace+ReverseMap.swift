import CLinux
import Glibc

/// The anonymous reverse map: how a folio records who maps it, and the walk that finds every PTE
/// mapping it (`mm/rmap.c`).
///
/// Departure from the kernel: the mapcount is one counter on the head page (the kernel keeps per-page
/// and large-folio counts); it counts PTE and PMD mappings of any page of the folio, as `folio_mapcount`
/// does.
extension AddressSpace {
    /// `folio_add_new_anon_rmap()`, then `folio_add_lru_vma()` for a system folio: a folio just faulted
    /// in for `vma` at `address` (its first page's address). With the `lru` cost the folio goes into
    /// the current CPU's LRU add batch (``PhysicalMemory/folioAddLRU(_:)``).
    func addNewAnonRmap(_ folio: Folio, vma: VMA, address: UInt64) {
        let head = memory.folioRef(folio)
        head.set([.anon, .anonExclusive, .swapBacked, .uptodate])
        if folio.order > 0 {
            for i in 1..<folio.pageCount { head.page(i).set(.anonExclusive) }
        }
        head.setMapping(vma.object.encode(index: vma.pageIndex(address)), ordering: .releasing)
        head.setMapcount(1, ordering: .releasing)
        if !head.test(.zoneDevice) { memory.folioAddLRU(folio) }
    }

    /// `folio_add_anon_rmap_pte()` / `folio_dup_anon_rmap_pte()`: one more mapping.
    func addRmap(_ folio: Folio) {
        memory.folioRef(folio).addMapcount(1)
    }

    /// `folio_remove_rmap_pte()` / `folio_remove_rmap_pmd()`: one mapping fewer.
    func removeRmap(_ folio: Folio) {
        let old = memory.folioRef(folio).subMapcount(1)
        precondition(old > 0, "\(folio) unmapped more often than mapped")
    }

    /// The page index a frame of an anonymous folio has in its object (`folio->index` + page offset).
    func pageIndex(of pfn: Pfn) -> (object: MappingObject, index: UInt64)? {
        let folio = memory.folio(containing: pfn)
        let (id, index) = MappingObject.decode(memory.folioRef(folio).mapping)
        guard id != 0, let object = MappingObject.lookup(id) else { return nil }
        return (object, index + UInt64(pfn.index - folio.pfn.index))
    }

    /// `rmap_walk()` → `rmap_walk_anon()`: calls `visit` with every address space, VMA and address that
    /// may map page `pfn`, holding the object's ``MappingObject/rmapLock`` for reading
    /// (`anon_vma_lock_read`) while it visits. With `locked` the caller holds that lock already
    /// (`rmap_walk_locked()`, as `__folio_split` does for `unmap_folio` and `remap_page`) and it is not
    /// taken again. Each walk counts one ``MMCounters/rmapWalks`` in every address space it visits.
    ///
    /// In each address space the VMA that maps the page's index is found by binary search in an index of
    /// the object's VMAs sorted by page offset (the kernel's anon_vma interval tree plays this part),
    /// which `cache` keeps while consecutive pages belong to one object and the VMAs do not change.
    ///
    /// Departures from the kernel: the lab's VMA index lives in each address space's VMA list, so the
    /// walk also takes each address space's mmap lock for reading (before the object's lock, the
    /// kernel's lock order; the caller may hold its own address space's mmap lock for reading, never for
    /// writing); the object's lock is therefore taken once per address space visited, which is once per
    /// folio when one address space maps the object.
    static func rmapWalk(
        _ pfn: Pfn, in memory: PhysicalMemory, locked: Bool = false, cache: inout RmapCache,
        _ visit: (AddressSpace, VMA, UInt64) -> Void
    ) {
        let folio = memory.folio(containing: pfn)
        let (id, headIndex) = MappingObject.decode(memory.folioRef(folio).mapping)
        guard id != 0 else { return }
        let index = headIndex + UInt64(pfn.index - folio.pfn.index)
        cache.walk(object: id, index: index, locked: locked, visit)
    }

    /// `rmapWalk` for one page, with no cache kept.
    static func rmapWalk(_ pfn: Pfn, in memory: PhysicalMemory, _ visit: (AddressSpace, VMA, UInt64) -> Void) {
        var cache = RmapCache()
        rmapWalk(pfn, in: memory, cache: &cache, visit)
    }

    // MARK: - Splitting a huge PMD

    /// Splits a huge (or device-private, or migration) PMD into a PTE table mapping the same 512 pages
    /// (`__split_huge_pmd_locked`). The folio stays order 9; each PTE holds a reference and a mapping
    /// (`folio_ref_add(folio, HPAGE_PMD_NR - 1)`), and the head's anon-exclusive state is copied to every page.
    ///
    /// - Returns: false when no frame was free for the table.
    @discardableResult
    func splitHugePMD(_ pmd: EntrySlot, address: UInt64) -> Bool {
        guard let table = pageTable.allocateTable() else { return false }
        // __split_huge_pmd: an MMU_NOTIFY_CLEAR invalidation of the 2 MiB range around the split,
        // raised before the PMD lock is taken (the kernel never calls notifiers under it), with the
        // splitting thread as its owner (the RFC's patch 1).
        let pmdStart = address & PageSize.pmdMask
        var range = MMUNotifierRange(start: pmdStart, end: pmdStart + PageSize.pmdSize, event: .clear)
        range.task = UInt64(clinux_gettid())
        notifiers.invalidateRangeStart(range)
        defer { notifiers.invalidateRangeEnd(range) }
        let lock = pageTable.lock(tableOf: pmd)
        let entry = pmd.load()
        guard entry.isHuge || entry.isMigration || entry.isDevicePrivate else {
            lock.unlock()
            pageTable.freeTable(table)
            return true  // someone else split or cleared it
        }
        if memory.isHugeZeroPMD(entry) {
            splitHugeZeroPMD(pmd, entry: entry, into: table)
            lock.unlock()
            flushTLB()
            return true
        }
        let slots = pageTable.slots(of: table)
        let base = entry.pfn
        for i in 0..<PageSize.pmdPages {
            let pfn = base + i
            let pte: PTE
            if entry.isProtNone {
                pte = .protNone(pfn)
            } else if entry.isPresent {
                pte = .present(pfn, writable: entry.isWritable, dirty: entry.isDirty, softDirty: entry.isSoftDirty)
            } else if entry.isMigration {
                let mode: PTE.MigrationMode =
                    entry.isWritableMigration ? .write : entry.isReadExclusiveMigration ? .readExclusive : .read
                pte = .migration(
                    pfn, mode: mode, young: entry.migrationYoung, dirty: entry.migrationDirty,
                    softDirty: entry.swapSoftDirty)
            } else {
                pte = .devicePrivate(pfn, writable: entry.isWritableDevicePrivate, softDirty: entry.swapSoftDirty)
            }
            slots.advanced(by: i).store(pte)
        }
        if !entry.isMigration {
            let head = FolioRef(head: memory.page(base))
            head.get(Int32(PageSize.pmdPages - 1))
            head.addMapcount(Int32(PageSize.pmdPages - 1))
            if head.test(.anonExclusive) {
                for i in 1..<PageSize.pmdPages { head.page(i).set(.anonExclusive) }
            }
        }
        pmd.store(.table(table))
        lock.unlock()
        counters.pmdSplits.wrappingAdd(1, ordering: .relaxed)
        // pmdp_invalidate flushes a present PMD; a migration or device-private entry is not in any TLB.
        if entry.isPresent || entry.isProtNone { flushTLB() }
        return true
    }

    /// `__split_huge_zero_page_pmd()`, under the PMD lock: the huge zero PMD becomes a table of 512
    /// special, read-only PTEs of the 4 KiB zero page (`zero_pfn(addr)`), protnone ones for a protnone
    /// PMD (the kernel builds them from `vm_page_prot`, PROT_NONE's protection then). The huge zero
    /// folio holds no reference or mapcount to move; the caller flushes (`pmdp_huge_clear_flush`).
    private func splitHugeZeroPMD(_ pmd: EntrySlot, entry: PTE, into table: Pfn) {
        let pte: PTE =
            entry.isProtNone ? .protNone(memory.zeroPage) : .present(memory.zeroPage, writable: false, special: true)
        let slots = pageTable.slots(of: table)
        for i in 0..<PageSize.pmdPages { slots.advanced(by: i).store(pte) }
        pmd.store(.table(table))
        counters.pmdSplits.wrappingAdd(1, ordering: .relaxed)
    }

    /// `split_huge_pmd_locked(vma, address, pmd, freeze = true)` (`__split_huge_pmd_locked` with
    /// `freeze`), as `try_to_migrate_one` calls it for `TTU_SPLIT_HUGE_PMD`: a PMD that maps `folio`
    /// (present or device-private) becomes a PTE table of 512 migration entries. The PMD mapping and
    /// its reference go (`folio_remove_rmap_pmd`, `put_page`); the pages' anon-exclusive state moves
    /// into the entries (`folio_try_share_anon_rmap_pmd`: writable or read-exclusive entries).
    /// A present PMD is flushed (`pmdp_invalidate`). Raises one `MMU_NOTIFY_CLEAR` invalidation of the
    /// 2 MiB range, the one `try_to_migrate_one` raises around its walk, with the splitting thread as
    /// its owner (the RFC's patch 1 tags that one too).
    ///
    /// - Returns: the migration entries installed (0 when the PMD no longer maps `folio`, or no frame
    ///   was free for the table).
    func splitHugePMDFreezing(_ pmd: EntrySlot, address: UInt64, folio: Folio) -> Int {
        let pmdStart = address & PageSize.pmdMask
        var range = MMUNotifierRange(start: pmdStart, end: pmdStart + PageSize.pmdSize, event: .clear)
        range.task = UInt64(clinux_gettid())
        notifiers.invalidateRangeStart(range)
        defer { notifiers.invalidateRangeEnd(range) }
        guard let table = pageTable.allocateTable() else { return 0 }
        let lock = pageTable.lock(tableOf: pmd)
        let entry = pmd.load()
        guard entry.isHuge || entry.isDevicePrivate, entry.pfn == folio.pfn else {
            lock.unlock()
            pageTable.freeTable(table)
            return 0
        }
        let head = memory.folioRef(folio)
        let writable = entry.isHuge ? entry.isWritable : entry.isWritableDevicePrivate
        let exclusive = head.test(.anonExclusive)
        let mode: PTE.MigrationMode = writable ? .write : exclusive ? .readExclusive : .read
        let young = entry.isHuge ? entry.isYoung : true
        let dirty = entry.isHuge ? entry.isDirty : true
        let softDirty = entry.isHuge ? entry.isSoftDirty : entry.swapSoftDirty
        let slots = pageTable.slots(of: table)
        for i in 0..<PageSize.pmdPages {
            if exclusive { head.page(i).clear(.anonExclusive) }
            slots.advanced(by: i).store(
                .migration(folio.pfn + i, mode: mode, young: young, dirty: dirty, softDirty: softDirty))
        }
        if entry.isHuge, entry.isDirty { head.markDirty() }
        pmd.store(.table(table))
        removeRmap(folio)
        memory.put(folio)
        lock.unlock()
        counters.pmdSplits.wrappingAdd(1, ordering: .relaxed)
        if entry.isPresent { flushTLB() }  // pmdp_invalidate
        return PageSize.pmdPages
    }
}

/// What a reverse-map walk keeps between pages of one object: the object, the address spaces that
/// mapped it, and per address space the object's VMAs sorted by page offset (`anon_vma` and its
/// interval tree of VMAs, built on demand). The member list is read again whenever the object's member
/// count moves, so an address space that joins (fork) or leaves is seen as soon as a per-page lookup
/// would see it; an address space's index is rebuilt when its VMAs change (``AddressSpace/vmaGeneration``).
struct RmapCache {
    private struct MemberIndex {
        let mm: AddressSpace
        var generation: UInt64 = .max
        /// The object's VMAs in `mm`, sorted by `pgoff`; nil when two of them cover one page index
        /// (which the lab's VMA operations never produce), and the walk then scans them all.
        var byOffset: [VMA]? = []
    }

    private var id: UInt64 = 0
    private var object: MappingObject?
    private var memberCount = -1
    private var members: [MemberIndex] = []

    init() {}

    /// Calls `visit` for every mapping of page `index` of object `id`, under the object's reverse-map
    /// lock for reading unless the caller holds it (`locked`).
    mutating func walk(object id: UInt64, index: UInt64, locked: Bool, _ visit: (AddressSpace, VMA, UInt64) -> Void) {
        if id != self.id || object.map({ $0.memberCount.load(ordering: .acquiring) != memberCount }) ?? true {
            self.id = id
            object = MappingObject.lookup(id)
            memberCount = object?.memberCount.load(ordering: .acquiring) ?? -1
            members = object?.memberSpaces().map { MemberIndex(mm: $0) } ?? []
        }
        guard let object else { return }
        for k in members.indices {
            let mm = members[k].mm
            mm.mmapLock.withReadLock {
                // anon_vma_lock_read … anon_vma_unlock_read (rmap_walk_anon_lock), not for rmap_walk_locked.
                if !locked { object.rmapLock.readLock() }
                defer { if !locked { object.rmapLock.unlock() } }
                mm.counters.rmapWalks.wrappingAdd(1, ordering: .relaxed)
                if members[k].generation != mm.vmaGeneration {
                    members[k].generation = mm.vmaGeneration
                    members[k].byOffset = Self.index(of: object, in: mm)
                }
                guard let byOffset = members[k].byOffset else {
                    for vma in mm.vmaList where vma.object === object || vma.file === object {
                        if let address = vma.address(ofIndex: index) { visit(mm, vma, address) }
                    }
                    return
                }
                // The last VMA whose pgoff is at most `index`.
                var lo = 0
                var hi = byOffset.count
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if byOffset[mid].pgoff <= index { lo = mid + 1 } else { hi = mid }
                }
                if lo > 0, let address = byOffset[lo - 1].address(ofIndex: index) {
                    visit(mm, byOffset[lo - 1], address)
                }
            }
        }
    }

    /// The object's VMAs in `mm` sorted by page offset, or nil if two overlap in page offsets.
    private static func index(of object: MappingObject, in mm: AddressSpace) -> [VMA]? {
        // A file's VMAs (its i_mmap) include its private mappings, whose `object` is their anon_vma.
        let vmas = mm.vmaList.filter { $0.object === object || $0.file === object }.sorted { $0.pgoff < $1.pgoff }
        for k in vmas.indices.dropFirst() where vmas[k].pgoff < vmas[k - 1].pgoff + UInt64(vmas[k - 1].pageCount) {
            return nil
        }
        return vmas
    }
}
