/// `fork()` for the address space: `dup_mmap()` → `copy_page_range()` (mm/memory.c, mm/huge_memory.c).
extension AddressSpace {
    /// A child address space with the same VMAs. Private anonymous memory is shared copy-on-write: both
    /// sides' entries become read-only, each folio gains a reference and a mapping and loses its
    /// anon-exclusive mark (`folio_try_dup_anon_rmap_pte`); swap entries gain a slot reference
    /// (`swap_duplicate`); writable migration and device-private entries become readable in both
    /// (`copy_nonpresent_pte`); a device-exclusive entry is first restored to its present PTE, then
    /// copied as one (`try_restore_exclusive_pte`). Shared memory is not copied: the child faults it in
    /// from the shared object, as the kernel does for shmem.
    public func fork() throws(MMError) -> AddressSpace {
        let child: AddressSpace
        do {
            child = try AddressSpace(memory: memory, swap: swap)
        } catch {
            throw .noMemory("no frame for the child's page table")
        }
        try mmapLock.withWriteLock { () throws(MMError) in
            child.nextAddress = nextAddress
            for vma in vmaList {
                child.vmaList.append(vma)
                child.adopt(vma.object)
                if let file = vma.file { child.adopt(file) }
                if vma.isShared { continue }
                let range = MMUNotifierRange(start: vma.start, end: vma.end, event: .protectionPage)
                notifiers.invalidateRangeStart(range)
                defer { notifiers.invalidateRangeEnd(range) }
                switch copyPageRange(vma, to: child) {
                case .copied: break
                case .noMemory: throw .noMemory("no frame for the child's page tables")
                case .busy:
                    throw .noMemory("a device-exclusive page's folio was locked (try_restore_exclusive_pte: -EBUSY)")
                }
            }
            flushTLB()
        }
        return child
    }

    /// How `copy_page_range` ended.
    private enum CopyOutcome { case copied, noMemory, busy }

    /// `copy_page_range()` → `copy_pte_range()` for one VMA. A device-exclusive entry is made present
    /// first and then copied as a present PTE (`copy_nonpresent_pte` → `try_restore_exclusive_pte`,
    /// `-ENOENT`); when its folio is locked the copy stops (`-EBUSY`), which fails the fork as in the
    /// kernel, where `copy_pmd_range` turns any error into `-ENOMEM`.
    private func copyPageRange(_ vma: VMA, to child: AddressSpace) -> CopyOutcome {
        var address = vma.start
        while address < vma.end {
            let next = PageTableLevel.pmd.addressEnd(address, vma.end)
            defer { address = next }
            guard let pmd = pageTable.pmdSlot(address, allocate: false) else { continue }
            let entry = pmd.load()
            if entry.isNone { continue }
            if entry.isHuge || entry.isSwapFormat {
                if next - address == PageSize.pmdSize {
                    // copy_huge_pmd
                    guard let childPMD = child.pageTable.pmdSlot(address, allocate: true) else { return .noMemory }
                    let lock = pageTable.lock(tableOf: pmd)
                    let copied = duplicate(pmd, entry: pmd.load(), huge: true)
                    lock.unlock()
                    childPMD.store(copied)
                    continue
                }
                guard splitHugePMD(pmd, address: address) else { return .noMemory }
            }
            guard let table = pageTable.pteTable(under: pmd, allocate: false) else { continue }
            guard let childPMD = child.pageTable.pmdSlot(address, allocate: true),
                let childTable = child.pageTable.pteTable(under: childPMD, allocate: true)
            else { return .noMemory }
            let first = pageTable.slot(in: table, level: .pte, address: address)
            let childFirst = child.pageTable.slot(in: childTable, level: .pte, address: address)
            let lock = pageTable.lock(tableOf: first)
            for i in 0..<pageCount(address, next) {
                let slot = first.advanced(by: i)
                var old = slot.load()
                if old.isNone { continue }
                if old.isDeviceExclusive {
                    guard let restored = tryRestoreExclusivePTE(vma, slot: slot, entry: old) else {
                        lock.unlock()
                        return .busy
                    }
                    old = restored
                }
                childFirst.advanced(by: i).store(duplicate(slot, entry: old, huge: false))
            }
            lock.unlock()
        }
        return .copied
    }

    /// Write-protects (or downgrades) the parent's entry in `slot` and returns the child's copy
    /// (`copy_present_ptes`, `copy_nonpresent_pte`, `copy_huge_pmd`). Caller holds the table lock.
    private func duplicate(_ slot: EntrySlot, entry: PTE, huge: Bool) -> PTE {
        if entry.isPresent {
            // The zero page, and the huge zero folio (`copy_huge_pmd`: `mm_get_huge_zero_folio` for the
            // child, no reference with a persistent huge zero folio): the same read-only entry.
            if memory.isZero(entry.pfn) { return entry }
            let folio = memory.folio(containing: entry.pfn)
            memory.folioRef(folio).get()
            addRmap(folio)
            if huge {
                for i in 0..<folio.pageCount { memory.page(folio.pfn + i).clear(.anonExclusive) }
            } else {
                memory.page(entry.pfn).clear(.anonExclusive)
            }
            let protected = entry.writeProtected()
            slot.store(protected)
            return protected
        }
        if entry.isSwap {
            swap?.duplicate(SwapEntry(slot: UInt32(entry.swapOffset), order: 0))
            return PTE(rawValue: entry.rawValue & ~PTE.swpExclusiveBit)
        }
        if entry.isMigration {
            if entry.isWritableMigration || entry.isReadExclusiveMigration {
                let readable = PTE.migration(
                    entry.pfn, mode: .read, young: entry.migrationYoung, dirty: entry.migrationDirty,
                    softDirty: entry.swapSoftDirty)
                slot.store(readable)
                return readable
            }
            return entry
        }
        if entry.isDevicePrivate {
            let folio = memory.folio(containing: entry.pfn)
            memory.folioRef(folio).get()
            addRmap(folio)
            memory.page(entry.pfn).clear(.anonExclusive)
            let readable = PTE.devicePrivate(entry.pfn, writable: false, softDirty: entry.swapSoftDirty)
            slot.store(readable)
            return readable
        }
        return entry
    }
}
