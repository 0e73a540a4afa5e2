import Glibc

/// The CPU fault path for anonymous memory: `handle_mm_fault()` → `__handle_mm_fault()` →
/// `do_huge_pmd_anonymous_page()` / `handle_pte_fault()` (mm/memory.c, mm/huge_memory.c).
extension AddressSpace {
    /// Resolves a fault at `address` for a read or a write and returns what it did. The caller holds the
    /// mmap lock for reading (as `handle_mm_fault` requires) and retries the access afterwards; a fault
    /// that only waited (`migrationWait`) or raced (`spurious`) is retried the same way.
    ///
    /// - Throws: ``FaultError``: no VMA, an access the VMA forbids, no memory, or a fault that cannot be served.
    public func handleFault(at address: UInt64, write: Bool) throws(FaultError) -> FaultKind {
        guard let vma = vma(containing: address) else { throw .noVMA(address) }
        // access_error(): write needs VM_WRITE; any access needs VM_READ (PROT_NONE faults).
        if write ? !vma.isWritable : !vma.isReadable { throw .accessError(address, write: write) }
        let kind = try faultOnce(vma, address: address, write: write)
        counters.count(kind)
        return kind
    }

    private func faultOnce(_ vma: VMA, address: UInt64, write: Bool) throws(FaultError) -> FaultKind {
        guard let pmd = pageTable.pmdSlot(address, allocate: true) else { throw .outOfMemory(address) }
        let pmdEntry = pmd.load()
        if vma.isHugetlb { return try hugetlbFault(vma, pmd: pmd, address: address, write: write) }

        if pmdEntry.isNone, vma.isHugepage, vma.isAnonymous {
            let aligned = address & PageSize.pmdMask
            if aligned >= vma.start, aligned + PageSize.pmdSize <= vma.end,
                let kind = write ? hugeAnonymousFault(vma, pmd: pmd, address: aligned) : hugeZeroFault(pmd)
            {
                return kind
            }
            // No 2 MiB folio (or no huge zero folio): fall back to 4 KiB (THP_FAULT_FALLBACK).
        }
        if pmdEntry.isHuge {
            return try hugePMDFault(vma, pmd: pmd, entry: pmdEntry, address: address, write: write)
        }
        if pmdEntry.isMigration {
            waitForMigration(pmdEntry.pfn)
            return .migrationWait
        }
        if pmdEntry.isDevicePrivate {
            // do_huge_pmd_device_private: the fault page is the folio's head (pmd_page).
            return try devicePrivateFault(address, slot: pmd, expected: pmdEntry, throughPTE: false)
        }
        guard let table = pageTable.pteTable(under: pmd, allocate: true) else {
            if pmd.load().isNone { throw .outOfMemory(address) }
            return .spurious  // became huge meanwhile: retry
        }
        return try pteFault(
            vma, slot: pageTable.slot(in: table, level: .pte, address: address), address: address & PageSize.mask,
            write: write)
    }

    /// `handle_pte_fault()`: under the PTE lock, dispatches on the entry; each branch drops the lock
    /// before the work it hands to (`do_pte_missing`, `do_wp_page`, `do_swap_page`, a migration
    /// entry's wait, a device-private or device-exclusive entry's fault).
    private func pteFault(_ vma: VMA, slot: EntrySlot, address: UInt64, write: Bool) throws(FaultError) -> FaultKind {
        let lock = pageTable.lock(tableOf: slot)
        let entry = slot.load()

        if entry.isNone { return try pteMissing(vma, slot: slot, lock: lock, address: address, write: write) }
        if entry.isPresent {
            if entry.isProtNone {
                // do_numa_page: the VMA allows access again; restore the entry.
                slot.store(protect(entry, vma: vma, huge: false))
                lock.unlock()
                return .spurious
            }
            if !write || entry.isWritable {
                if write, !entry.isDirty { slot.store(entry.madeWritable()) }
                lock.unlock()
                return .spurious
            }
            return try wpPage(vma, slot: slot, lock: lock, entry: entry, address: address)
        }
        if entry.isSwap {
            // Pin the slot while the entry, under the lock, guarantees it is in use (the swap cache's
            // role, `swapcache_prepare`): a concurrent fault's swap-in cannot free it, and a swap-out
            // reuse it, while this fault reads it.
            swap?.duplicate(SwapEntry(slot: UInt32(entry.swapOffset), order: 0))
            lock.unlock()
            return try swapInFault(vma, slot: slot, entry: entry, address: address, write: write)
        }
        lock.unlock()
        if entry.isMigration {
            waitForMigration(entry.pfn)
            return .migrationWait
        }
        if entry.isDevicePrivate {
            return try devicePrivateFault(address, slot: slot, expected: entry, throughPTE: true)
        }
        if entry.isDeviceExclusive {
            return removeDeviceExclusiveEntry(vma, slot: slot, expected: entry, address: address)
        }
        throw .sigbus(address, "unexpected entry \(entry)")
    }

    /// `do_pte_missing()` for an empty entry, entered with the PTE lock held: a file or shared VMA's
    /// fault, the zero page for an anonymous read (`do_anonymous_page`), or a new anonymous page.
    private func pteMissing(
        _ vma: VMA, slot: EntrySlot, lock: TableLock, address: UInt64, write: Bool
    ) throws(FaultError) -> FaultKind {
        if !write, vma.file == nil, !vma.isShared {
            // do_anonymous_page, read: map the zero page, special and read-only.
            slot.store(.present(memory.zeroPage, writable: false, special: true))
            lock.unlock()
            return .zeroPage
        }
        lock.unlock()
        if vma.file != nil { return try fileFault(vma, slot: slot, address: address, write: write) }
        if vma.isShared { return try sharedFault(vma, slot: slot, address: address) }
        return try newAnonymousPage(vma, slot: slot, expected: .none, address: address, kind: .anonymous)
    }

    /// `do_wp_page()` for a present, read-only entry and a write, entered with the PTE lock held: the
    /// zero page replaced, a shared mapping made writable (`wp_page_shared`), an exclusive anonymous
    /// page reused (`wp_page_reuse`), or the page copied (`wp_page_copy`).
    private func wpPage(
        _ vma: VMA, slot: EntrySlot, lock: TableLock, entry: PTE, address: UInt64
    ) throws(FaultError) -> FaultKind {
        if memory.isZero(entry.pfn) {
            lock.unlock()
            return try newAnonymousPage(vma, slot: slot, expected: entry, address: address, kind: .anonymous)
        }
        if vma.isShared {
            // wp_page_shared: a file folio is dirtied (fault_dirty_shared_page).
            if vma.file != nil { memory.folioRef(containing: entry.pfn).markDirty() }
            slot.store(entry.madeWritable())
            lock.unlock()
            return .reuse
        }
        let page = memory.page(entry.pfn)
        let folio = memory.folio(containing: entry.pfn)
        let head = memory.folioRef(folio)
        if page.test(.anonExclusive) || (folio.order == 0 && canReuseAnonFolio(head)) {
            // wp_can_reuse_anon_folio → wp_page_reuse.
            page.set(.anonExclusive)
            slot.store(entry.madeWritable())
            lock.unlock()
            return .reuse
        }
        // wp_page_copy: do_wp_page takes a reference on the old folio under the PTE lock
        // (`folio_get`), so the copy made without the lock reads a folio that cannot be freed
        // meanwhile; it is dropped once the new page is in (or the fault found the entry changed).
        head.get()
        lock.unlock()
        defer { memory.put(folio) }
        return try newAnonymousPage(vma, slot: slot, expected: entry, address: address, kind: .copyOnWrite)
    }

    /// `wp_can_reuse_anon_folio()` for a small folio, under the PTE lock: no reuse with more than three
    /// references; a folio off the LRU may be in this CPU's add batch, whose reference would refuse the
    /// reuse, so this CPU's batch is drained first (`lru_add_drain`); then reuse when this mapping holds
    /// the only reference. The folio lock the kernel then tries is not modelled.
    private func canReuseAnonFolio(_ head: FolioRef) -> Bool {
        if head.refCount > 3 { return false }
        if !head.test(.lru) { memory.lruAddDrain() }
        return head.mapCount == 1 && head.refCount == 1
    }

    /// A new 4 KiB folio installed, writable, where `expected` still is: zeroed for `do_anonymous_page`
    /// (expected none) and for a write to the zero page, a copy of `source` for `do_cow_fault` (a
    /// page-cache page, expected none), a copy of the old page otherwise. Models
    /// `wp_page_copy()`, which handles both the zero-page and the copy case; replacing a present entry
    /// raises a `MMU_NOTIFY_CLEAR` invalidation and, under the PTE lock as the kernel does, flushes
    /// (`ptep_clear_flush`) and drops the old folio's mapping (`folio_remove_rmap_pte`), so a reverse-map
    /// walk that takes the same lock sees the entry and the mapcount agree; the reference goes after.
    func newAnonymousPage(
        _ vma: VMA, slot: EntrySlot, expected: PTE, address: UInt64, kind: FaultKind, source: Pfn? = nil
    ) throws(FaultError) -> FaultKind {
        guard case .success(let folio) = memory.allocate(.system, order: 0) else { throw .outOfMemory(address) }
        let copying = expected.isPresent && !memory.isZero(expected.pfn)
        if let from = copying ? expected.pfn : source {
            RawBytes.copy(to: memory.address(of: folio.pfn), from: memory.address(of: from), count: PageSize.bytes)
        } else {
            RawBytes.zero(memory.address(of: folio.pfn), count: PageSize.bytes)  // __GFP_ZERO
        }
        let replacing = !expected.isNone
        let range = MMUNotifierRange(start: address, end: address + PageSize.size, event: .clear)
        if replacing { notifiers.invalidateRangeStart(range) }
        defer { if replacing { notifiers.invalidateRangeEnd(range) } }
        let lock = pageTable.lock(tableOf: slot)
        guard slot.load() == expected else {
            lock.unlock()
            memory.put(folio)
            return .spurious
        }
        if replacing { flushTLB() }  // ptep_clear_flush
        addNewAnonRmap(folio, vma: vma, address: address)
        slot.store(.present(folio.pfn, writable: true, dirty: true))
        let old = copying ? memory.folio(containing: expected.pfn) : nil
        if let old { removeRmap(old) }
        lock.unlock()
        if let old { memory.put(old) }
        return kind
    }

    /// `do_swap_page()`: read the slot into a new folio and map it. Without a swap cache, every swap-in
    /// makes a private, exclusive copy; the entry's slot reference is dropped only by the thread that
    /// installs it. The caller pinned the slot with a reference under the PTE lock; it is dropped here.
    /// The copy is exclusive (`RMAP_EXCLUSIVE`), so, as `do_swap_page` does for an exclusive folio, a
    /// writable VMA maps it writable on a read fault too (no uffd-wp or soft-dirty write protection is
    /// modelled that would keep it read-only).
    private func swapInFault(
        _ vma: VMA, slot: EntrySlot, entry: PTE, address: UInt64, write: Bool
    ) throws(FaultError) -> FaultKind {
        guard let swap else { throw .sigbus(address, "swap entry but no swap area") }
        let swapEntry = SwapEntry(slot: UInt32(entry.swapOffset), order: 0)
        defer { swap.free(swapEntry) }  // the caller's pin
        if injector?.fire(.swapin) == true { throw .sigbus(address, "injected swap-in read error") }
        guard case .success(let folio) = memory.allocate(.system, order: 0) else { throw .outOfMemory(address) }
        swap.read(swapEntry, into: folio, of: memory)
        let lock = pageTable.lock(tableOf: slot)
        guard slot.load() == entry else {
            lock.unlock()
            memory.put(folio)
            return .spurious
        }
        addNewAnonRmap(folio, vma: vma, address: address)
        // An exclusive folio is mapped writable in a writable VMA even on a read fault (`pte_mkwrite`),
        // dirty only on a write fault.
        slot.store(.present(folio.pfn, writable: vma.isWritable, dirty: write, softDirty: entry.swapSoftDirty))
        lock.unlock()
        swap.free(swapEntry)
        return .swapIn
    }

    /// `shmem_fault()` + `finish_fault()`: the object's page-cache folio at this index, allocated
    /// (zeroed) on first touch; the mapping takes a reference and a mapcount.
    private func sharedFault(_ vma: VMA, slot: EntrySlot, address: UInt64) throws(FaultError) -> FaultKind {
        let pfn = try pageCacheFolio(vma.object, vma: vma, address: address)
        let lock = pageTable.lock(tableOf: slot)
        guard slot.load().isNone else {
            lock.unlock()
            return .spurious
        }
        let folio = Folio(pfn: pfn, order: 0)
        memory.folioRef(folio).get()
        addRmap(folio)
        slot.store(.present(pfn, writable: vma.isWritable, dirty: vma.isWritable))
        lock.unlock()
        return .shared
    }

    /// `do_huge_pmd_anonymous_page()`: a zeroed 2 MiB folio mapped by the PMD. Nil when no 2 MiB folio
    /// could be allocated or the PMD is no longer none.
    private func hugeAnonymousFault(_ vma: VMA, pmd: EntrySlot, address: UInt64) -> FaultKind? {
        guard case .success(let folio) = memory.allocate(.system, order: PageSize.pmdOrder) else { return nil }
        RawBytes.zero(memory.address(of: folio.pfn), count: folio.byteCount)
        let lock = pageTable.lock(tableOf: pmd)
        guard pmd.load().isNone else {
            lock.unlock()
            memory.put(folio)
            return nil
        }
        addNewAnonRmap(folio, vma: vma, address: address)
        pmd.store(.present(folio.pfn, writable: true, dirty: true, huge: true))
        lock.unlock()
        return .anonymousHuge
    }

    /// The read-fault branch of `do_huge_pmd_anonymous_page()` (`!FAULT_FLAG_WRITE`, the zero page not
    /// forbidden, `transparent_hugepage_use_zero_page()` at its default, true): under the PMD lock, a
    /// none PMD gets the huge zero folio, read-only and special (`set_huge_zero_folio`); a PMD filled
    /// meanwhile makes the fault spurious. Nil without a huge zero folio (`VM_FAULT_FALLBACK`). The
    /// kernel deposits a preallocated page table with the PMD (`pgtable_trans_huge_deposit`); the lab
    /// allocates the table when the PMD is split, as it does for every huge PMD.
    private func hugeZeroFault(_ pmd: EntrySlot) -> FaultKind? {
        guard memory.hugeZeroFolio != nil else { return nil }
        let lock = pageTable.lock(tableOf: pmd)
        defer { lock.unlock() }
        guard pmd.load().isNone else { return .spurious }
        pmd.store(.present(memory.hugeZeroPfn, writable: false, huge: true, special: true))
        return .hugeZeroPage
    }

    /// `do_huge_zero_wp_pmd()`: a write to the huge zero PMD allocates a zeroed 2 MiB folio
    /// (`vma_alloc_anon_folio_pmd`) and, under a `MMU_NOTIFY_CLEAR` invalidation of the 2 MiB range and
    /// the PMD lock, replaces the zero PMD with it, writable (`pmdp_huge_clear_flush`,
    /// `map_anon_folio_pmd_pf`). Nil when no 2 MiB folio could be had (`VM_FAULT_FALLBACK`: the caller
    /// splits the PMD into zero-page PTEs and the 4 KiB write fault allocates), or `.spurious` when the
    /// PMD changed meanwhile.
    private func hugeZeroWriteFault(_ vma: VMA, pmd: EntrySlot, entry: PTE, address: UInt64) -> FaultKind? {
        guard case .success(let folio) = memory.allocate(.system, order: PageSize.pmdOrder) else { return nil }
        RawBytes.zero(memory.address(of: folio.pfn), count: folio.byteCount)
        let haddr = address & PageSize.pmdMask
        let range = MMUNotifierRange(start: haddr, end: haddr + PageSize.pmdSize, event: .clear)
        notifiers.invalidateRangeStart(range)
        defer { notifiers.invalidateRangeEnd(range) }
        let lock = pageTable.lock(tableOf: pmd)
        guard pmd.load() == entry else {
            lock.unlock()
            memory.put(folio)
            return .spurious
        }
        addNewAnonRmap(folio, vma: vma, address: haddr)
        pmd.store(.present(folio.pfn, writable: true, dirty: true, huge: true))
        lock.unlock()
        flushTLB()
        return .anonymousHuge
    }

    /// Faults on a huge PMD (`do_huge_pmd_wp_page`): a write to the huge zero PMD goes to
    /// ``hugeZeroWriteFault(_:pmd:entry:address:)`` and, when that falls back, splits the PMD
    /// (`__split_huge_pmd` → `__split_huge_zero_page_pmd`) for the PTE path; a write to another
    /// read-only PMD reuses an exclusive folio, otherwise splits the PMD and lets the PTE path copy
    /// (the kernel does the same).
    private func hugePMDFault(
        _ vma: VMA, pmd: EntrySlot, entry: PTE, address: UInt64, write: Bool
    ) throws(FaultError) -> FaultKind {
        if entry.isProtNone {
            let lock = pageTable.lock(tableOf: pmd)
            if pmd.load() == entry { pmd.store(protect(entry, vma: vma, huge: true)) }
            lock.unlock()
            return .spurious
        }
        if !write || entry.isWritable { return .spurious }
        if memory.isHugeZero(entry.pfn) {
            if let kind = hugeZeroWriteFault(vma, pmd: pmd, entry: entry, address: address) { return kind }
            guard splitHugePMD(pmd, address: address) else { throw .outOfMemory(address) }
            return try faultOnce(vma, address: address, write: write)
        }
        let head = FolioRef(head: memory.page(entry.pfn))
        let lock = pageTable.lock(tableOf: pmd)
        if pmd.load() == entry, head.test(.anonExclusive) || (head.mapCount == 1 && head.refCount == 1) {
            head.set(.anonExclusive)
            pmd.store(entry.madeWritable())
            lock.unlock()
            return .reuse
        }
        lock.unlock()
        guard splitHugePMD(pmd, address: address) else { throw .outOfMemory(address) }
        return try faultOnce(vma, address: address, write: write)
    }

    /// `migration_entry_wait()` → `migration_entry_wait_on_locked()` (mm/migrate.c, mm/filemap.c):
    /// waits until the folio under migration is unlocked; the caller retries. As in the kernel since
    /// 5.19, the waiter takes no reference on the folio (a reference would make the migration's
    /// expected-refcount check fail and undo every migration a CPU fault races). The kernel queues on
    /// the folio's wait queue under the PTE lock so the folio cannot be freed first; the lab reads the
    /// lock bit of the page descriptor, which outlives the folio (a freed folio's flags are cleared, so
    /// the wait ends; a reused one only makes it wait longer, and the retry sees the new entry).
    func waitForMigration(_ pfn: Pfn) {
        injector?.willWaitForMigration()
        let head = memory.folioRef(containing: pfn)
        var spins = 0
        while head.isLocked {
            spins += 1
            if spins > 64 {
                sched_yield()
                spins = 0
            }
        }
    }

    /// `do_swap_page()` on a device-private entry (and `do_huge_pmd_device_private()` for a PMD): under
    /// the PTE (PMD) lock, check that the entry is still the one that faulted (`pte_same`), then trylock
    /// the device page and take a reference "while we know the page can't be freed", drop the table
    /// lock and call the owner's `migrate_to_ram` with it as the fault page (`throughPTE`: `vmf->pte`
    /// set or not). If the entry changed the fault is retried.
    ///
    /// Lab departure: when the page lock is contended the fault returns and is retried, as
    /// `do_huge_pmd_device_private` does; 7.2's `do_swap_page` instead sleeps until the folio is
    /// unlocked (`softleaf_entry_wait_on_locked`). The lab's waits poll the lock bit and have no wait
    /// queue, so a waiter cannot see an unlock that its holder follows at once with a new lock (a CPU
    /// access that keeps faulting on the page, as when every migration back is pinned) and would wait
    /// as long as that goes on; the kernel's waiter is woken by the unlock itself, and then retries the
    /// fault just as the lab's does.
    ///
    /// The check under the table lock matters: without it the pfn read earlier may belong to a device
    /// page that was migrated back and freed meanwhile, and whose frame was reallocated (to another
    /// address, or to the same one by the next migration to the device). A trylock on the free frame is wiped by the
    /// allocator's descriptor preparation, the later tryGet then succeeds on the new incarnation, and
    /// `migrate_to_ram` runs with a fault page it holds a reference on but not the lock: collect skips
    /// the trylock for the fault folio, so the page migrates unlocked, concurrently with another
    /// migration of it (eviction, an op's migration), and references and mappings end up on the wrong
    /// pages (a frame freed while mapped, another left mapped by no PTE).
    private func devicePrivateFault(
        _ address: UInt64, slot: EntrySlot, expected: PTE, throughPTE: Bool
    ) throws(FaultError) -> FaultKind {
        let pfn = expected.pfn
        let tableLock = pageTable.lock(tableOf: slot)
        guard slot.load() == expected else {
            tableLock.unlock()
            return .spurious
        }
        let folio = memory.folio(containing: pfn)
        let head = memory.folioRef(folio)
        guard head.tryLock() else {
            tableLock.unlock()
            return .spurious  // see the departure above
        }
        // The entry holds a reference, so the folio cannot be freed while the table lock is held.
        head.get()
        tableLock.unlock()
        defer {
            // unlock_page(vmf->page) + put_page: the folio that holds the page now (a split during the
            // migration leaves the lock and the reference with the fault page's own folio).
            let now = memory.folio(containing: pfn)
            memory.folioRef(now).unlock()
            memory.put(now)
            // A CPU fault injected during this migrate_to_ram waited on the fault page: it goes on now.
            injector?.joinCPUFaults()
        }
        guard let pagemap = memory.pagemap(of: pfn) else {
            throw .sigbus(address, "device-private \(pfn) has no registered device pagemap")
        }
        try pagemap.migrateToRAM(self, address: address & PageSize.mask, faultPage: pfn, throughPTE: throughPTE)
        return .devicePrivate
    }
}
