/// dmirror's atomic-access ioctls (lib/test_hmm.c): pages made device-exclusive and mapped in the
/// device page table with the atomic tag.
extension Device {
    /// `HMM_DMIRROR_EXCLUSIVE` (`dmirror_exclusive()`): under the mmap read lock, for each page of
    /// `[start, start + pages)`, `make_device_exclusive()` with no owner (dmirror passes NULL, so its
    /// own `MMU_NOTIFY_EXCLUSIVE` invalidation is not filtered: it drops the page's old mapping), then
    /// `dmirror_atomic_map()` (the page tagged `DPT_XA_TAG_ATOMIC` under the device lock), then the
    /// folio is unlocked and put. The first failure ends the loop and is returned. Then the device
    /// reads the range back (`dmirror_do_read`): the bytes, and `cpages`, the pages read.
    func makeExclusive(_ start: UInt64, pages: Int) throws(MirrorError) -> (bytes: [UInt8], cpages: Int) {
        let end = pageAddress(start, pages)
        guard end >= start else { throw .errno(Errno.EINVAL) }
        mm.mmapLock.readLock()
        let failure = makeExclusiveLocked(start, end)
        mm.mmapLock.unlock()
        if failure != 0 { throw .errno(failure) }
        var bytes = [UInt8](repeating: 0, count: pages * PageSize.bytes)
        var copied = 0
        guard copyMirrored(start, pages: pages, into: &bytes, copied: &copied) else { throw .errno(Errno.ENOENT) }
        return (bytes, copied)
    }

    /// The loop of ``makeExclusive(_:pages:)``, with the mmap lock held for reading: 0 or a negative errno.
    private func makeExclusiveLocked(_ start: UInt64, _ end: UInt64) -> Int32 {
        var address = start
        while address < end {
            let made: (page: Pfn, folio: Folio)
            do {
                made = try mm.makeDeviceExclusive(address, owner: 0)
            } catch {
                return Self.errno(error)
            }
            pageTable.withLock { $0.setAtomic(address, pfn: made.page) }
            mm.endDeviceExclusive(made.folio)
            address += PageSize.size
        }
        return 0
    }

    /// The errno `make_device_exclusive()` returns for an ``MMError``.
    static func errno(_ error: MMError) -> Int32 {
        switch error {
        case .fault: Errno.EFAULT
        case .noMemory: Errno.ENOMEM
        case .notSupported: Errno.EOPNOTSUPP
        case .invalidArgument, .exists: Errno.EINVAL
        }
    }

    /// `HMM_DMIRROR_CHECK_EXCLUSIVE` (`dmirror_check_atomic()`): throws `-EPERM` if any page of the
    /// range is still mapped for atomic access in the device page table (a CPU access, or any other
    /// invalidation, has not revoked it).
    func checkExclusive(_ start: UInt64, pages: Int) throws(MirrorError) {
        let stillAtomic = pageTable.withLock { pt in
            (0..<pages).contains { pt.lookup(pageAddress(start, $0)) & DevicePageTable.atomic != 0 }
        }
        if stillAtomic { throw .errno(Errno.EPERM) }
    }
}
