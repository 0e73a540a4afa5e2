import Glibc

/// What ``AddressSpace/swapOut(_:pages:)`` did.
public struct SwapOutResult: Sendable, Equatable {
    /// Pages written to swap and freed.
    public var swapped = 0
    /// Pages left where they were, with the reason (`"locked"`, `"not present"`, …).
    var skipped: [String: Int] = [:]

    mutating func skip(_ reason: String) { skipped[reason, default: 0] += 1 }
}

/// Reclaim of chosen pages to the swap area: the `shrink_folio_list()` steps for one anonymous folio —
/// `folio_alloc_swap`, `try_to_unmap` through the reverse map (every address space that maps it gets a
/// swap entry), `pageout` (the copy), and the free.
///
/// Departure: the kernel writes the folio out after unmapping it, and a fault meanwhile finds it in the
/// swap cache. The lab has no swap cache, so the copy is made under the PTE lock just before the first
/// swap entry is installed; otherwise a concurrent fault would read the slot before its bytes were
/// there (the stress loop found that: pages came back with another page's old bytes). The allocation's
/// own reference on the slot stands for the swap cache's until every mapping has its entry, so a
/// mapping that swaps the page back in meanwhile cannot free the slot under the others.
extension AddressSpace {
    /// Swaps out the private anonymous pages of `[address, pageAddress(address, pages))`.
    ///
    /// This CPU's LRU add batch is drained first (`lru_add_drain`, as `madvise_pageout` does).
    /// Departure: the kernel reclaims only folios it can isolate from the LRU; the lab does not isolate,
    /// so a folio still in another CPU's add batch is swapped out too and freed when that batch drains.
    ///
    /// A 2 MiB folio is first split: its PMD into PTEs, then the folio into 512 order-0 folios, which
    /// the kernel does too when it cannot swap a THP whole (`split_folio_to_list`); that needs this
    /// address space to be its only mapper. Pages of shared mappings and hugetlb pages are not swapped (shmem swap is not
    /// modelled), nor are the zero page, pages under migration, on the device, or locked.
    public func swapOut(_ address: UInt64, pages: Int) throws(MMError) -> SwapOutResult {
        guard let swap else { throw .invalidArgument("swap-out needs a swap area") }
        guard isPageAligned(address), pages > 0 else {
            throw .invalidArgument("swap-out range must be page-aligned and non-empty")
        }
        memory.lruAddDrain()  // as madvise_pageout does before it isolates
        var result = SwapOutResult()
        for k in 0..<pages {
            let at = pageAddress(address, k)
            guard let folio = isolateForSwap(at, &result) else { continue }
            // The folio is locked and we hold a reference: unmap it everywhere.
            let entry: SwapEntry
            do {
                entry = try swap.allocate(order: 0)
            } catch {
                memory.folioRef(folio).unlock()
                memory.put(folio)
                result.skip("swap full")
                continue
            }
            var installed = 0
            let head = memory.folioRef(folio)
            let exclusive = head.test(.anonExclusive)
            AddressSpace.rmapWalk(folio.pfn, in: memory) { mm, _, va in
                guard let slot = mm.pageTable.pteSlot(va) else { return }
                let range = MMUNotifierRange(start: va, end: va + PageSize.size, event: .clear)
                mm.notifiers.invalidateRangeStart(range)
                let lock = mm.pageTable.lock(tableOf: slot)
                let old = slot.load()
                if old.isPresent, old.pfn == folio.pfn {
                    // pageout, before the first swap entry can be seen: without a swap cache, a fault
                    // that finds the entry reads the slot at once, so the bytes must be there. Under
                    // this PTE lock no store is under way (stores hold it); other mappers map the page
                    // read-only (copy-on-write), so it cannot change after this.
                    if installed == 0 { swap.writeData(folio, to: entry, from: memory) }
                    swap.duplicate(entry)  // this mapping's reference
                    slot.store(.swap(slot: entry.slot, softDirty: old.isSoftDirty, exclusive: exclusive))
                    installed += 1
                    mm.removeRmap(folio)
                    memory.put(folio)
                }
                lock.unlock()
                mm.flushTLB()
                mm.notifiers.invalidateRangeEnd(range)
            }
            if head.mapCount != 0 {
                var cache = RmapCache()
                var seen: [String] = []
                AddressSpace.rmapWalk(folio.pfn, in: memory, cache: &cache) { mm, vma, va in
                    seen.append(
                        "mm \(ObjectIdentifier(mm).hashValue & 0xffff) va 0x\(String(va, radix: 16)) \(mm.pageTable.pteSlot(va)?.load() as Any)"
                    )
                }
                let all = entries { $0.isPresent && $0.pfn == folio.pfn }
                let message =
                    "try_to_unmap left \(folio) mapped \(head.mapCount) times, installed \(installed), walk \(seen), here \(all), flags \(head.rawFlags)"
                _ = (message + "\n").withCString { Glibc.write(2, $0, strlen($0)) }  // optimized builds drop the message
                preconditionFailure(message)
            }
            // No mapping was left to replace (a racing munmap): the slot was never written, and only
            // the write ends its "writing" state, so write it and let the free below return it.
            if installed == 0 { swap.writeData(folio, to: entry, from: memory) }
            swap.free(entry)  // the swap cache's reference: the slot lives on while a mapping has it
            head.clear([.anonExclusive, .anon])
            head.setMapping(0)
            head.unlock()
            memory.put(folio)  // our reference: the folio is freed
            result.swapped += 1
        }
        return result
    }

    /// Finds the folio at `address`, takes a reference and its lock, splitting a 2 MiB folio first.
    /// Nil (with the reason counted) when the page cannot be swapped.
    private func isolateForSwap(_ address: UInt64, _ result: inout SwapOutResult) -> Folio? {
        mmapLock.withReadLock { () -> Folio? in
            guard let vma = vma(containing: address) else {
                result.skip("not mapped")
                return nil
            }
            if vma.isShared {
                result.skip("shared mapping")
                return nil
            }
            if vma.isHugetlb {
                result.skip("hugetlb")  // hugetlb folios are never on the LRU
                return nil
            }
            guard let pmd = pageTable.pmdSlot(address, allocate: false) else {
                result.skip("not present")
                return nil
            }
            if memory.isHugeZeroPMD(pmd.load()) {
                result.skip("zero page")  // the huge zero folio is never on the LRU, so reclaim never sees it
                return nil
            }
            if pmd.load().isHuge, !splitHugePMD(pmd, address: address) {
                result.skip("no memory to split")
                return nil
            }
            guard let slot = pageTable.pteSlot(address) else {
                result.skip("not present")
                return nil
            }
            let lock = pageTable.lock(tableOf: slot)
            let entry = slot.load()
            guard entry.isPresent, !entry.isProtNone, !memory.isZero(entry.pfn) else {
                lock.unlock()
                result.skip(
                    entry.isSwap
                        ? "already swapped" : memory.isZero(entry.pfn) && entry.isPresent ? "zero page" : "not present")
                return nil
            }
            var folio = memory.folio(containing: entry.pfn)
            let head = memory.folioRef(folio)
            guard vma.isAnonymous || head.test(.anon) else {
                lock.unlock()
                result.skip("file page")  // page cache: written back and dropped, not swapped (not modelled)
                return nil
            }
            guard head.tryGet() else {
                lock.unlock()
                result.skip("being freed")
                return nil
            }
            guard head.tryLock() else {
                lock.unlock()
                memory.put(folio)
                result.skip("locked")
                return nil
            }
            lock.unlock()
            if folio.order > 0 {
                // Keep the lock and our reference on the page at `address`.
                guard splitFolio(folio, keep: entry.pfn) else {
                    head.unlock()
                    memory.put(folio)
                    result.skip("large folio mapped elsewhere")
                    return nil
                }
                folio = Folio(pfn: entry.pfn, order: 0)
            }
            return folio
        }
    }
}
