/// File mappings: `mmap` of a ``File`` and the faults that map its page cache (`do_fault()` →
/// `do_read_fault()`, `do_cow_fault()`, `do_shared_fault()` in mm/memory.c; `filemap_fault()` in
/// mm/filemap.c).
///
/// Departures from the kernel: no fault-around (`do_fault_around` maps neighbouring cached pages on a
/// read fault; the lab maps the faulting page only), no `page_mkwrite`, no large page-cache folios, and
/// no writeback: a shared mapping's read fault maps the page read-only and clean, and the first write
/// makes it writable and dirties the folio (`vma_wants_writenotify`), which is all the lab tracks.
extension AddressSpace {
    /// Maps `length` bytes of `file` from byte `offset` (`mmap(fd, offset)`, `MAP_SHARED` or
    /// `MAP_PRIVATE`), 2 MiB-aligned. The mapping's page offset is the file's (`vm_pgoff`); a private
    /// mapping gets an anon_vma of its own for its copy-on-write pages. Pages past the file's end fault
    /// with `SIGBUS`, as in the kernel.
    public func mmap(
        file: File, offset: Int = 0, length: Int, protection: Protection, shared: Bool
    ) throws(MMError) -> UInt64 {
        guard let cache = file.object else { throw .invalidArgument("mmap of a closed file (EBADF)") }
        guard length > 0 else { throw .invalidArgument("mmap length \(length) must be positive") }
        guard offset >= 0, isPageAligned(UInt64(offset)) else {
            throw .invalidArgument("mmap offset \(offset) is not page-aligned")
        }
        let size = roundUpToPage(length)
        return try mmapLock.withWriteLock { () throws(MMError) -> UInt64 in
            guard let start = allocateRange(size) else { throw .noMemory("no free range of \(size) bytes") }
            let object = shared ? cache : MappingObject(anon: ())
            var vma = VMA(
                start: start, end: start + size, protection: protection, flags: shared ? .shared : [],
                pgoff: pageNumber(UInt64(offset)), object: object)
            vma.file = cache
            adopt(object)
            adopt(cache)
            vmaList.insert(vma, at: firstVMAIndex(endingAbove: start))
            return start
        }
    }

    /// `do_fault()` on a none PTE of a file mapping: a write to a private mapping copies the page-cache
    /// page into a new anonymous folio of the VMA's anon_vma (`do_cow_fault`); otherwise the page-cache
    /// folio itself is mapped (`finish_fault`, which takes a reference and a mapcount): read-only on a
    /// read (`do_read_fault`), writable and dirty on a write to a shared mapping (`do_shared_fault`,
    /// `fault_dirty_shared_page`).
    func fileFault(_ vma: VMA, slot: EntrySlot, address: UInt64, write: Bool) throws(FaultError) -> FaultKind {
        guard let file = vma.file else { throw .sigbus(address, "no file") }
        let pfn = try pageCacheFolio(file, vma: vma, address: address)
        if write, !vma.isShared {
            return try newAnonymousPage(
                vma, slot: slot, expected: .none, address: address, kind: .copyOnWrite, source: pfn)
        }
        let lock = pageTable.lock(tableOf: slot)
        defer { lock.unlock() }
        guard slot.load().isNone else { return .spurious }
        let folio = Folio(pfn: pfn, order: 0)
        let head = memory.folioRef(folio)
        head.get()
        addRmap(folio)
        if write { head.markDirty() }
        slot.store(.present(pfn, writable: write, dirty: write))
        return .file
    }

    /// `filemap_fault()` / `shmem_get_folio()`: the folio `object` caches for the page `vma` maps at
    /// `address`, read in (zeroed) when not cached. `SIGBUS` beyond the object's end.
    func pageCacheFolio(_ object: MappingObject, vma: VMA, address: UInt64) throws(FaultError) -> Pfn {
        let index = Int(vma.pageIndex(address))
        guard index < object.pageCacheCount else { throw .sigbus(address, "beyond the end of the mapped object") }
        guard let pfn = object.cachedFolio(at: index) else { throw .outOfMemory(address) }
        return pfn
    }
}
