/// `madvise(MADV_FREE)` (mm/madvise.c).
extension AddressSpace {
    /// `madvise_free_single_vma()` over every VMA of `[address, address+length)`, under a
    /// `MMU_NOTIFY_CLEAR` invalidation per VMA. Only private anonymous VMAs qualify (`-EINVAL` for
    /// shared, hugetlb and special ones; `-ENOMEM` for a range not fully mapped).
    ///
    /// Per entry as ``madviseFreePMD(_:_:_:)`` and ``madviseFreePTE(_:_:)`` say. Departure from the
    /// kernel: the lab has no reclaim that discards a lazyfree folio, so a freed page keeps its bytes
    /// until it is written or unmapped (the kernel may drop it and read zeroes later); the mark itself
    /// (no `swapBacked`, clean entry) is kept.
    func madviseFree(_ address: UInt64, length: Int) throws(MMError) {
        let end = try checkedRange(address, length, "madvise")
        try mmapLock.withReadLock { () throws(MMError) in
            try requireMapped(address, end, "madvise")
            var i = firstVMAIndex(endingAbove: address)
            while i < vmaList.count, vmaList[i].start < end {
                let vma = vmaList[i]
                guard !vma.isShared, !vma.isHugetlb, vma.flags.isDisjoint(with: .special) else {
                    throw .invalidArgument("MADV_FREE needs private anonymous memory")
                }
                let range = MMUNotifierRange(start: max(address, vma.start), end: min(end, vma.end), event: .clear)
                notifiers.invalidateRangeStart(range)
                madviseFree(range.start, range.end)
                flushTLB()
                notifiers.invalidateRangeEnd(range)
                i += 1
            }
        }
    }

    /// `madvise_free_pte_range()` per PMD of `[start, end)`.
    private func madviseFree(_ start: UInt64, _ end: UInt64) {
        var address = start
        while address < end {
            let next = PageTableLevel.pmd.addressEnd(address, end)
            defer { address = next }
            guard let pmd = pageTable.pmdSlot(address, allocate: false) else { continue }
            if pmd.load().isHuge {
                madviseFreePMD(pmd, address, next)
                continue
            }
            guard let table = pageTable.pteTable(under: pmd, allocate: false) else { continue }  // none, migration, device-private
            let first = pageTable.slot(in: table, level: .pte, address: address)
            let lock = pageTable.lock(tableOf: first)
            for k in 0..<pageCount(address, next) { madviseFreePTE(first.advanced(by: k), pageAddress(address, k)) }
            lock.unlock()
        }
    }

    /// `madvise_free_huge_pmd()`: the huge zero PMD is left alone; a folio that this mapping alone maps
    /// and the range covers whole gets a clean, old PMD and is marked lazyfree.
    ///
    /// Departure from the kernel: a partly covered THP is left as it is (the kernel splits it and
    /// frees the covered pages).
    private func madviseFreePMD(_ pmd: EntrySlot, _ start: UInt64, _ end: UInt64) {
        let lock = pageTable.lock(tableOf: pmd)
        defer { lock.unlock() }
        let entry = pmd.load()
        guard entry.isHuge, entry.isPresent, !memory.isZero(entry.pfn), end - start == PageSize.pmdSize else { return }
        guard markLazyfree(memory.folio(containing: entry.pfn)) else { return }
        pmd.store(PTE(rawValue: entry.rawValue & ~(PTE.dirtyBit | PTE.accessedBit)))
    }

    /// One PTE of `madvise_free_pte_range()` under its table lock: a swap entry is dropped with its
    /// slot; other non-present entries (migration, device-private, device-exclusive) are skipped, as
    /// are the zero page, ZONE_DEVICE pages and pages of large folios; an order-0 anon folio this
    /// mapping alone maps gets a clean, old PTE and is marked lazyfree.
    private func madviseFreePTE(_ slot: EntrySlot, _ address: UInt64) {
        let entry = slot.load()
        if entry.isNone { return }
        if entry.isSwap {
            slot.store(.none)
            swap?.free(SwapEntry(slot: UInt32(entry.swapOffset), order: 0))
            return
        }
        guard entry.isPresent, !memory.isZero(entry.pfn) else { return }
        let folio = memory.folio(containing: entry.pfn)
        guard folio.order == 0, markLazyfree(folio) else { return }
        slot.store(PTE(rawValue: entry.rawValue & ~(PTE.dirtyBit | PTE.accessedBit)))
    }

    /// `folio_mark_lazyfree()` after the checks of its callers: an anon, non-device folio mapped once
    /// and trylocked loses `dirty` and `swapBacked`. False when it does not qualify.
    private func markLazyfree(_ folio: Folio) -> Bool {
        let head = memory.folioRef(folio)
        guard head.test(.anon), !head.test(.zoneDevice), head.mapCount == 1, head.tryLock() else { return false }
        head.clear([.dirty, .swapBacked])
        head.unlock()
        return true
    }
}
