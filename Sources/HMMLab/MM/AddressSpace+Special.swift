/// Mappings other than plain anonymous memory: a driver's `VM_MIXEDMAP` pages, `VM_PFNMAP` ranges and
/// hugetlb (`MAP_HUGETLB`) VMAs.
extension AddressSpace {
    /// `mmap()` of a special mapping: a private VMA with `.mixedMap` or `.pfnMap` (a driver's `mmap`
    /// sets these flags; the lab sets them at creation), empty until ``insertPage(_:)`` fills it.
    ///
    /// Departure from the kernel: a fault in such a VMA is served as in anonymous memory (the kernel
    /// calls the driver's `vm_ops->fault`, or has none and sends SIGBUS).
    func mmapSpecial(length: Int, protection: Protection, flags: VMAFlags) throws(MMError) -> UInt64 {
        guard !flags.isDisjoint(with: .special) else {
            throw .invalidArgument("a special mapping needs .mixedMap or .pfnMap")
        }
        return try mmap(length: length, protection: protection, flags: flags)
    }

    /// `vm_insert_page()` (mm/memory.c) of a new zeroed page, as dmirror's `mmap` does
    /// (`alloc_page(__GFP_ZERO)`, insert, `put_page`): the PTE maps it with the VMA's `vm_page_prot`,
    /// read-only in a private mapping, and holds the page's only reference and mapcount
    /// (`folio_add_file_rmap_pte`; the page has no `mapping`).
    func insertPage(_ address: UInt64) throws(MMError) {
        try mmapLock.withWriteLock { () throws(MMError) in
            guard let vma = vma(containing: address), vma.flags.contains(.mixedMap) else {
                throw .invalidArgument("vm_insert_page needs a VM_MIXEDMAP VMA")
            }
            guard case .success(let folio) = memory.allocate(.system, order: 0) else {
                throw .noMemory("vm_insert_page")
            }
            RawBytes.zero(memory.address(of: folio.pfn), count: PageSize.bytes)
            guard let pmd = pageTable.pmdSlot(address, allocate: true),
                let table = pageTable.pteTable(under: pmd, allocate: true)
            else {
                memory.put(folio)
                throw .noMemory("vm_insert_page: page table")
            }
            let slot = pageTable.slot(in: table, level: .pte, address: address & PageSize.mask)
            let lock = pageTable.lock(tableOf: slot)
            defer { lock.unlock() }
            guard slot.load().isNone else {
                memory.put(folio)
                throw .exists("vm_insert_page: 0x\(String(address, radix: 16)) is mapped")
            }
            addRmap(folio)
            slot.store(.present(folio.pfn, writable: vma.isShared && vma.isWritable))
        }
    }

    /// `mmap(MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB)` with the default 2 MiB hstate: a VMA aligned
    /// to 2 MiB whose length is a multiple of 2 MiB (`-EINVAL` otherwise, as `hugetlb_get_unmapped_area`
    /// requires), with `.hugetlb`.
    ///
    /// Departure from the kernel: no pool reservation at mmap (`hugetlb_reserve_pages`); a fault that
    /// finds no free 2 MiB frame is `VM_FAULT_SIGBUS`, as an unreserved one is in the kernel.
    func mmapHugetlb(length: Int, protection: Protection) throws(MMError) -> UInt64 {
        let huge = PageSize.pmdBytes
        guard length > 0, length % huge == 0 else {
            throw .invalidArgument("hugetlb length \(length) is not a multiple of 2 MiB")
        }
        let raw = try mmap(length: length + huge, protection: protection, flags: .hugetlb)
        let start = (raw + UInt64(huge - 1)) & ~UInt64(huge - 1)
        if start > raw { try munmap(raw, length: Int(start - raw)) }
        let tail = raw + UInt64(length + huge) - (start + UInt64(length))
        if tail > 0 { try munmap(start + UInt64(length), length: Int(tail)) }
        return start
    }

    /// `hugetlb_vm_op_may_split()`: `-EINVAL` when `address` or `end` would split a hugetlb VMA
    /// inside one of its 2 MiB pages (`split_vma` on behalf of munmap or mprotect).
    func requireHugetlbAligned(_ address: UInt64, _ end: UInt64, _ call: String) throws(MMError) {
        for cut in [address, end] where !isPMDAligned(cut) {
            if let vma = vma(containing: cut), vma.isHugetlb, vma.start < cut {
                throw .invalidArgument("\(call) at 0x\(String(cut, radix: 16)) splits a hugetlb page")
            }
        }
    }

    /// `hugetlb_fault()`: a none entry gets a zeroed 2 MiB folio of the pool (`hugetlb_no_page`, an anon
    /// folio: `hugetlb_add_new_anon_rmap`), read-only after a read fault of a private mapping; a write
    /// to a read-only entry of an anon-exclusive folio makes it writable (`hugetlb_wp` reuse). The PMD
    /// is never split. Counted as `anonymousHuge` and `reuse`.
    ///
    /// Departure from the kernel: no copy-on-write of a hugetlb folio another address space maps (the
    /// lab's fork copies no hugetlb VMA differently from anonymous memory; such a write is SIGBUS here).
    func hugetlbFault(_ vma: VMA, pmd: EntrySlot, address: UInt64, write: Bool) throws(FaultError) -> FaultKind {
        let haddr = address & PageSize.pmdMask
        if pmd.load().isNone { return try hugetlbNoPage(vma, pmd: pmd, address: haddr, write: write) }
        let lock = pageTable.lock(tableOf: pmd)
        defer { lock.unlock() }
        let entry = pmd.load()
        guard entry.isPresent, entry.isHuge, write, !entry.isWritable else { return .spurious }
        guard memory.page(entry.pfn).test(.anonExclusive) else {
            throw .sigbus(address, "hugetlb copy-on-write is not modelled")
        }
        pmd.store(.present(entry.pfn, writable: true, dirty: true, huge: true))
        flushTLB()
        return .reuse
    }

    /// `hugetlb_no_page()` for a private mapping.
    private func hugetlbNoPage(_ vma: VMA, pmd: EntrySlot, address: UInt64, write: Bool) throws(FaultError) -> FaultKind
    {
        guard case .success(let folio) = memory.allocate(.system, order: PageSize.pmdOrder) else {
            throw .sigbus(address, "no free hugetlb page")
        }
        RawBytes.zero(memory.address(of: folio.pfn), count: folio.byteCount)
        let lock = pageTable.lock(tableOf: pmd)
        defer { lock.unlock() }
        guard pmd.load().isNone else {
            memory.put(folio)
            return .spurious
        }
        addNewAnonRmap(folio, vma: vma, address: address)
        pmd.store(.present(folio.pfn, writable: write && vma.isWritable, dirty: write, huge: true))
        return .anonymousHuge
    }
}
