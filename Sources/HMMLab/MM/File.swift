/// The page cache of a shmem object or a file: page index → folio, one reference per cached folio.
extension MappingObject {
    /// `filemap_get_folio(FGP_CREAT)` / `shmem_get_folio()`: the folio cached at `index`, added zeroed
    /// (a hole of a sparse file, or a new shmem page) when none is. Nil beyond the object's end
    /// (`-EFAULT`, a fault's `SIGBUS`) or with no free frame. A new folio goes on the LRU
    /// (`filemap_add_folio` → `folio_add_lru`), so migration isolates it and refuses it only in
    /// `migrate_vma_pages` (not anonymous), as in the kernel.
    func cachedFolio(at index: Int) -> Pfn? {
        guard let pageCache, let memory, index >= 0, index < pageCacheCount else { return nil }
        let cached = pageCache[index].load(ordering: .acquiring)
        if cached != 0 { return Pfn(rawValue: cached - 1) }
        guard case .success(let folio) = memory.allocate(.system, order: 0) else { return nil }
        RawBytes.zero(memory.address(of: folio.pfn), count: PageSize.bytes)
        let head = memory.folioRef(folio)
        head.set(kind == .shmem ? [.swapBacked, .uptodate] : .uptodate)
        head.setMapping(encode(index: UInt64(index)), ordering: .releasing)
        let (won, current) = pageCache[index].compareExchange(
            expected: 0, desired: folio.pfn.rawValue + 1, ordering: .acquiringAndReleasing)
        if won {
            memory.folioAddLRU(folio)
            return folio.pfn
        }
        memory.put(folio)
        return Pfn(rawValue: current - 1)
    }

    /// Whether `head` is the folio cached at `index`: the page cache holds a reference on it.
    func caches(_ head: Pfn, at index: UInt64) -> Bool {
        guard let pageCache, index < UInt64(pageCacheCount) else { return false }
        return pageCache[Int(index)].load(ordering: .acquiring) == head.rawValue + 1
    }
}

/// A regular file with no backing store: its `address_space` (the page cache, ``object``) and a size
/// fixed when it is made (`open(O_TMPFILE)` + `ftruncate`, as hmm-tests' `hmm_create_file`).
///
/// Departures from the kernel: there is no disk and no writeback; a page never written reads as zeros
/// (a hole of a sparse file); the dirty flag is set (`folio_mark_dirty`) but never cleared; the page
/// cache is freed when the last holder lets the file go (``close()`` and the mappings' address spaces),
/// as an unlinked file's inode is evicted on its last `fput`.
public final class File: @unchecked Sendable {
    /// The page cache (`file->f_mapping`); nil once the file is closed.
    private(set) var object: MappingObject?
    /// Size in pages.
    public let pages: Int
    private let memory: PhysicalMemory

    public init(pages: Int, memory: PhysicalMemory) {
        self.pages = pages
        self.memory = memory
        object = MappingObject(cachePages: pages, kind: .file, memory: memory)
    }

    /// `pwrite(fd, bytes, count, offset)` → `generic_perform_write()`: copies into the page-cache folios
    /// (made on demand) and marks them dirty. Throws `-EFAULT`-like when the range passes the end or the
    /// file is closed, `-ENOMEM` with no free frame.
    public func write(offset: Int, bytes: [UInt8]) throws(MMError) {
        try forEachPage(offset, bytes.count, "pwrite") { pfn, inPage, done, n in
            bytes.withUnsafeBytes {
                RawBytes.copy(to: memory.address(of: pfn) + inPage, from: $0.baseAddress! + done, count: n)
            }
            memory.folioRef(containing: pfn).markDirty()
        }
    }

    /// `pread(fd, buffer, count, offset)` → `filemap_read()`: the bytes of the page cache (pages not yet
    /// cached are read in, as zeros).
    public func read(offset: Int, count: Int) throws(MMError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try forEachPage(offset, count, "pread") { pfn, inPage, done, n in
            out.withUnsafeMutableBytes {
                RawBytes.copy(to: $0.baseAddress! + done, from: memory.address(of: pfn) + inPage, count: n)
            }
        }
        return out
    }

    /// `close(fd)`: drops this handle's reference; mappings keep the page cache until they go. Not to be
    /// called while another thread uses this handle (the lab has no file table to serialise it).
    public func close() { object = nil }

    /// Calls `body(pfn, offsetInPage, bytesDone, bytesInPage)` for each page of `[offset, offset+count)`.
    private func forEachPage(
        _ offset: Int, _ count: Int, _ call: String, _ body: (Pfn, Int, Int, Int) -> Void
    ) throws(MMError) {
        guard let object else { throw .invalidArgument("\(call) on a closed file (EBADF)") }
        guard offset >= 0, count >= 0, offset + count <= pages * PageSize.bytes else {
            throw .fault("\(call) of \(count) bytes at \(offset) passes the end of a \(pages)-page file")
        }
        var done = 0
        while done < count {
            let position = offset + done
            let inPage = position % PageSize.bytes
            let n = min(count - done, PageSize.bytes - inPage)
            guard let pfn = object.cachedFolio(at: position / PageSize.bytes) else {
                throw .noMemory("\(call): no frame for the page cache")
            }
            body(pfn, inPage, done, n)
            done += n
        }
    }
}
