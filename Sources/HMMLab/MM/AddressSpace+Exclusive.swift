import Glibc

/// Device-exclusive entries: `make_device_exclusive()` (mm/rmap.c) and the ways a device-exclusive
/// entry becomes a present PTE again, `restore_exclusive_pte()` from a CPU fault
/// (`remove_device_exclusive_entry()`) and from fork (`try_restore_exclusive_pte()`) (mm/memory.c).
///
/// As in 7.2 the entry keeps the folio's mapping: the mapcount and the mapping's reference stay where
/// they were while the PTE is device-exclusive, and zap drops them as for a present PTE.
extension AddressSpace {
    /// Models `make_device_exclusive()` of 7.2 (the `folio_walk` version, no rmap walk): faults the page
    /// in writable with a reference (`get_user_page_vma_remote(FOLL_GET | FOLL_WRITE | FOLL_SPLIT_PMD)`),
    /// refuses a folio that is not anonymous or is hugetlb (`-EOPNOTSUPP`; the lab asks the VMA before the fault, with the same outcome), locks it (`folio_lock_killable`), raises a
    /// `MMU_NOTIFY_EXCLUSIVE` invalidation of the page carrying `owner`, walks again to find the same
    /// page mapped writable by a PTE (else starts over), clears the PTE with a flush
    /// (`ptep_clear_flush`), marks the folio dirty if the PTE was, and installs the device-exclusive
    /// entry with the PTE's soft-dirty bit.
    ///
    /// Returns the page and its folio, locked and with the reference taken; the caller programs its
    /// device, then unlocks the folio and puts the reference (``endDeviceExclusive(_:)``). The caller
    /// holds the mmap lock for reading.
    ///
    /// Departure: the folio lock is waited for by spinning with `sched_yield`, not sleeping, and no fatal
    /// signal ends the wait.
    func makeDeviceExclusive(_ address: UInt64, owner: UInt64) throws(MMError) -> (page: Pfn, folio: Folio) {
        let address = address & PageSize.mask
        if vma(containing: address)?.isHugetlb == true {
            throw .notSupported("make_device_exclusive of a hugetlb folio at 0x\(String(address, radix: 16))")
        }
        while true {
            let page = try getUserPageForWrite(address)
            let folio = memory.folio(containing: page)
            let head = memory.folioRef(folio)
            guard head.test(.anon) else {
                memory.put(folio)
                throw .notSupported(
                    "make_device_exclusive of a folio that is not anonymous at 0x\(String(address, radix: 16))")
            }
            lockFolioWaiting(head)
            let range = MMUNotifierRange(start: address, end: address + PageSize.size, event: .exclusive, owner: owner)
            notifiers.invalidateRangeStart(range)
            let done = replaceWithDeviceExclusive(address, page: page, folio: folio)
            notifiers.invalidateRangeEnd(range)
            if done { return (page, folio) }
            head.unlock()
            memory.put(folio)
        }
    }

    /// What the caller of ``makeDeviceExclusive(_:owner:)`` does once its device is programmed:
    /// `folio_unlock()` + `folio_put()`.
    func endDeviceExclusive(_ folio: Folio) {
        memory.folioRef(folio).unlock()
        memory.put(folio)
    }

    /// The second walk of `make_device_exclusive()` (`folio_walk_start` at PTE level, under the PTE lock)
    /// and the replacement: false when the address no longer maps `page` through a writable PTE.
    private func replaceWithDeviceExclusive(_ address: UInt64, page: Pfn, folio: Folio) -> Bool {
        guard let pmd = pageTable.pmdSlot(address, allocate: false), !pmd.load().isHuge,
            let slot = pageTable.pteSlot(address)
        else { return false }
        let lock = pageTable.lock(tableOf: slot)
        let old = slot.load()
        guard old.isPresent, !old.isProtNone, old.isWritable, old.pfn == page else {
            lock.unlock()
            return false
        }
        slot.store(.deviceExclusive(page, softDirty: old.isSoftDirty))
        if old.isDirty { memory.folioRef(folio).markDirty() }
        lock.unlock()
        flushTLB()  // ptep_clear_flush: the PTE was present
        return true
    }

    /// `get_user_page_vma_remote(mm, addr, FOLL_GET | FOLL_WRITE | FOLL_SPLIT_PMD)` for one page: splits a
    /// huge PMD into PTEs first (`FOLL_SPLIT_PMD`), faults the page in for writing (which restores a
    /// device-exclusive entry and breaks copy-on-write) and takes a reference on its folio under the
    /// table lock. Caller holds the mmap lock for reading.
    ///
    /// - Throws: `-EFAULT` (``MMError/fault(_:)``) for no VMA or one without write permission
    ///   (`check_vma_flags`), `-ENOMEM` when the fault finds no memory.
    func getUserPageForWrite(_ address: UInt64) throws(MMError) -> Pfn {
        var got: Pfn?
        let memory = self.memory
        while true {
            if let pmd = pageTable.pmdSlot(address, allocate: false), pmd.load().isHuge {
                guard splitHugePMD(pmd, address: address & PageSize.pmdMask) else {
                    throw .noMemory("FOLL_SPLIT_PMD: no frame for a PTE table at 0x\(String(address, radix: 16))")
                }
                continue
            }
            if translateAndCopy(
                address, write: true,
                { _, pfn in
                    memory.folioRef(containing: pfn).get()
                    got = pfn
                })
            {
                return got!
            }
            do {
                _ = try handleFault(at: address, write: true)
            } catch {
                if case .outOfMemory = error { throw .noMemory("GUP: no memory for 0x\(String(address, radix: 16))") }
                throw .fault("GUP FOLL_WRITE at 0x\(String(address, radix: 16)): \(error)")
            }
        }
    }

    /// `folio_lock()`: spins (yielding) until the lock is taken.
    func lockFolioWaiting(_ head: FolioRef) {
        var spins = 0
        while !head.tryLock() {
            spins += 1
            if spins > 64 {
                sched_yield()
                spins = 0
            }
        }
    }

    /// `remove_device_exclusive_entry()`, reached from `do_swap_page()`: takes a reference
    /// (`folio_try_get`; a folio being freed means the entry is gone) and the folio lock, raises a
    /// `MMU_NOTIFY_CLEAR` invalidation of the page with no owner (the device drops its mapping), and
    /// under the PTE lock, if the entry is still the one that faulted, restores the PTE. The caller
    /// then retries the access.
    ///
    /// Departure: a contended folio lock returns at once and the access faults again, as
    /// `folio_lock_or_retry` does with `FAULT_FLAG_ALLOW_RETRY` (the kernel also waits for the lock
    /// with the mmap lock dropped; the lab does not wait).
    func removeDeviceExclusiveEntry(_ vma: VMA, slot: EntrySlot, expected: PTE, address: UInt64) -> FaultKind {
        let folio = memory.folio(containing: expected.pfn)
        let head = memory.folioRef(folio)
        guard head.tryGet() else { return .spurious }
        defer { memory.put(folio) }
        guard head.tryLock() else { return .spurious }
        let range = MMUNotifierRange(start: address, end: address + PageSize.size, event: .clear)
        notifiers.invalidateRangeStart(range)
        let lock = pageTable.lock(tableOf: slot)
        if slot.load() == expected { slot.store(restoreExclusivePTE(vma, expected)) }
        lock.unlock()
        head.unlock()
        notifiers.invalidateRangeEnd(range)
        return .deviceExclusive
    }

    /// `restore_exclusive_pte()`: the PTE a device-exclusive entry stands for, old (`pte_mkold`), with
    /// the entry's soft-dirty bit, writable when the VMA is and the page is anon-exclusive
    /// (`can_change_pte_writable`), then dirty if the folio is. Caller holds the folio lock and the
    /// PTE lock. No flush: the entry was not present.
    func restoreExclusivePTE(_ vma: VMA, _ entry: PTE) -> PTE {
        let writable = vma.isWritable && memory.page(entry.pfn).test(.anonExclusive)
        let dirty = writable && memory.folioRef(containing: entry.pfn).test(.dirty)
        let pte = PTE.present(entry.pfn, writable: writable, dirty: dirty, softDirty: entry.swapSoftDirty)
        return PTE(rawValue: pte.rawValue & ~PTE.accessedBit)
    }

    /// `try_restore_exclusive_pte()` (fork's `copy_nonpresent_pte`): restores the PTE in `slot` if the
    /// folio lock can be had without waiting, and returns it; nil when the folio is locked (the kernel's
    /// `-EBUSY`, which fails the fork). Caller holds the PTE lock.
    func tryRestoreExclusivePTE(_ vma: VMA, slot: EntrySlot, entry: PTE) -> PTE? {
        let head = memory.folioRef(containing: entry.pfn)
        guard head.tryLock() else { return nil }
        let restored = restoreExclusivePTE(vma, entry)
        slot.store(restored)
        head.unlock()
        return restored
    }
}
