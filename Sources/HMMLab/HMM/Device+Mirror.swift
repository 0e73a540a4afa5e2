import Glibc

/// The per-page state `HMM_DMIRROR_SNAPSHOT` reports (include/uapi test_hmm_uapi.h).
enum MirrorProt {
    public static let error: UInt8 = 0xFF
    public static let none: UInt8 = 0x00
    public static let read: UInt8 = 0x01
    public static let write: UInt8 = 0x02
    static let pmd: UInt8 = 0x04
    static let pud: UInt8 = 0x08
    public static let zero: UInt8 = 0x10
    static let devicePrivateLocal: UInt8 = 0x20
    static let devicePrivateRemote: UInt8 = 0x30
}

/// Why a device read or write failed.
public enum MirrorError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The errno of `hmm_range_fault` (or `-ENOENT` when a page could not be mirrored).
    case errno(Int32)

    public var description: String {
        switch self {
        case .errno(let e): Errno.name(e)
        }
    }
}

extension Device {
    /// The pages per `hmm_range_fault` call of `dmirror_fault` and `dmirror_snapshot` (`pfns[32]` in
    /// 7.2's lib/test_hmm.c).
    public static let faultWindow = 32
    /// `HMM_RANGE_DEFAULT_TIMEOUT` (1 s): the default of ``rangeTimeoutNanoseconds``. Lab departure:
    /// 30 s when built for the thread sanitizer (`HMM_LAB_TSAN`, see ``LabMutex``), which runs the
    /// model several times slower on a loaded machine, so that mutator threads' invalidations do not
    /// make a window time out there that a normal build finishes.
    #if HMM_LAB_TSAN
        static let defaultRangeTimeoutNanoseconds: UInt64 = 30_000_000_000
    #else
        static let defaultRangeTimeoutNanoseconds: UInt64 = 1_000_000_000
    #endif

    /// `dmirror_range_fault()` + `dmirror_do_fault()`: the canonical HMM loop — `read_begin`, mmap read
    /// lock, `hmm_range_fault`, retry on `-EBUSY`; take the device lock, retry if `read_retry` says the
    /// range was invalidated, else program the device page table. Returns 0 or a negative errno.
    func rangeFault(_ range: HMMRange, _ result: inout MigrationResult) -> Int32 {
        let deadline = monotonicNanoseconds() + rangeTimeoutNanoseconds
        beginWalk(range.start, range.end)
        defer { endWalk() }
        while true {
            if monotonicNanoseconds() > deadline { return Errno.EBUSY }
            range.notifier = notifier
            range.notifierSeq = notifier.readBegin()
            mm.mmapLock.readLock()
            let started = monotonicNanoseconds()
            let r = mm.hmmRangeFault(range)
            result.phases.walk += monotonicNanoseconds() - started - range.faultNanoseconds
            result.phases.fault += range.faultNanoseconds
            mm.mmapLock.unlock()
            result.walks += 1
            result.restarts += range.restarts
            result.faults += range.faults
            if r == Errno.EBUSY {
                result.notifierRetries += 1
                result.crossJobRetries += crossJobRetry()
                continue
            }
            if r != 0 { return r }
            let retry = mm.mmapLock.withReadLock {
                pageTable.withLock { pt -> Bool in
                    if notifier.readRetry(range.notifierSeq) { return true }
                    for i in 0..<range.npages {
                        let w = range.hmmPfns[i]
                        guard w & HMMPfn.valid != 0 else { continue }
                        let address = pageAddress(range.start, i)
                        if !cpuStillMapsDevicePage(address, HMMPfn.pfn(w)) { continue }
                        pt.set(address, pfn: HMMPfn.pfn(w), writable: w & HMMPfn.write != 0)
                    }
                    return false
                }
            }
            if !retry { return 0 }
            result.notifierRetries += 1
            result.crossJobRetries += crossJobRetry()
        }
    }

    /// For a word of `hmm_range_fault` that reported one of our device pages: whether the CPU page
    /// table still maps `address` to that device page (for a system page: true with one op thread, its
    /// changes raise invalidations; with several, ``cpuStillMapsSystemPage(_:_:)``). Called under the
    /// device lock with the mmap lock held for reading.
    ///
    /// Departure from dmirror, found by the stress loop (``Stress``): dmirror ignores its own
    /// `MMU_NOTIFY_MIGRATE` invalidations, and a CPU fault's `migrate_to_ram` raises exactly that, so
    /// when it moves a device page back between `hmm_range_fault` and the device lock,
    /// `mmu_interval_read_retry` does not see it and the device would map a freed device page (the
    /// kernel's lib/test_hmm.c has the same window). `migrate_to_ram` installs its migration entries
    /// before it clears the device's entries under the device lock, so this check under that lock
    /// closes the window. A page that moved is not mirrored: the device maps less, and a caller that
    /// needs it (a device read) finds it missing and faults it again.
    func cpuStillMapsDevicePage(_ address: UInt64, _ pfn: Pfn) -> Bool {
        // By pool, not by PG_zone_device: a device page freed meanwhile has its flags cleared.
        guard pool.contains(pfn) else { return !concurrentJobs || cpuStillMapsSystemPage(address, pfn) }
        guard let pmd = mm.pageTable.pmdSlot(address, allocate: false) else { return false }
        let e = pmd.load()
        if e.isSwapFormat { return e.isDevicePrivate && e.pfn + pteIndex(address) == pfn }
        if e.isHuge { return false }
        guard let pte = mm.pageTable.pteSlot(address)?.load() else { return false }
        return pte.isDevicePrivate && pte.pfn == pfn
    }

    /// With several op threads (``concurrentJobs``): whether the CPU page table still maps `address`
    /// to the system page `pfn` a walk reported. Lab departure (see Device+Jobs.swift): another job's
    /// migration of that page to this device raises an invalidation the device skips when no walk was
    /// registered yet, so under the device lock the walking job checks the entry itself; a page under
    /// migration (migration entry) or moved is not mirrored, and the migrating job maps it.
    func cpuStillMapsSystemPage(_ address: UInt64, _ pfn: Pfn) -> Bool {
        guard let pmd = mm.pageTable.pmdSlot(address, allocate: false) else { return false }
        let e = pmd.load()
        if e.isHuge { return e.pfn + pteIndex(address) == pfn }
        guard e.isPresent, let pte = mm.pageTable.pteSlot(address)?.load() else { return false }
        return pte.isPresent && pte.pfn == pfn
    }

    /// `dmirror_fault()`: faults `[start, end)` in for the device in windows of `window` pages
    /// (``faultWindow``, 32, as dmirror, unless a caller asks otherwise), counting walks in `result`.
    /// Windows start at `start` and are not aligned, as dmirror's are not.
    func fault(
        _ start: UInt64, _ end: UInt64, write: Bool, window: Int = faultWindow, result: inout MigrationResult
    ) -> Int32 {
        withRange(capacity: window) { range in
            var address = start
            while address < end {
                let next = min(end, pageAddress(address, window))
                range.start = address
                range.end = next
                range.defaultFlags = HMMPfn.requestFault | (write ? HMMPfn.requestWrite : 0)
                range.pfnFlagsMask = 0
                range.devPrivateOwner = owner
                range.migrate = nil
                range.hmmPfns.update(repeating: 0, count: range.npages)
                let r = rangeFault(range, &result)
                if r != 0 { return r }
                address = next
            }
            return 0
        }
    }

    func fault(_ start: UInt64, _ end: UInt64, write: Bool) -> Int32 {
        var ignored = MigrationResult()
        return fault(start, end, write: write, result: &ignored)
    }

    /// `HMM_DMIRROR_READ` (`dmirror_read()`): the device reads `pages` pages at `start` through its
    /// page table. `dmirror_do_read` copies until the first page it does not map; that page and the
    /// rest are faulted in with `hmm_range_fault` and the copy goes on from there
    /// (`start = cmd->addr + (bounce.cpages << PAGE_SHIFT)`). Returns the bytes and the number of fault
    /// rounds (`cmd->faults`).
    public func read(_ start: UInt64, pages: Int) throws(MirrorError) -> (bytes: [UInt8], faults: Int) {
        var bytes = [UInt8](repeating: 0, count: pages * PageSize.bytes)
        var faults = 0
        var copied = 0
        let end = pageAddress(start, pages)
        while true {
            if copyMirrored(start, pages: pages, into: &bytes, copied: &copied) { return (bytes, faults) }
            let r = fault(pageAddress(start, copied), end, write: false)
            if r != 0 { throw .errno(r) }
            faults += 1
        }
    }

    /// `dmirror_do_read()` under the device lock: copies the pages from `copied` (`bounce->cpages`)
    /// on, out of the frames the device page table maps, into `bytes`, counting each in `copied`;
    /// false (`-ENOENT`) at the first page it does not map.
    func copyMirrored(_ start: UInt64, pages: Int, into bytes: inout [UInt8], copied: inout Int) -> Bool {
        bytes.withUnsafeMutableBytes { b in
            pageTable.withLock { pt -> Bool in
                while copied < pages {
                    let e = pt.lookup(pageAddress(start, copied))
                    guard e != 0 else { return false }
                    RawBytes.copy(
                        to: b.baseAddress! + copied * PageSize.bytes,
                        from: memory.address(of: DevicePageTable.pfn(of: e)), count: PageSize.bytes)
                    copied += 1
                }
                return true
            }
        }
    }

    /// `HMM_DMIRROR_WRITE` (`dmirror_write()`): the device writes `bytes` at `start` through its page
    /// table. `dmirror_do_write` copies until the first page not mirrored writable; that page and the
    /// rest are faulted in for write and the copy goes on from there. Returns the number of fault
    /// rounds.
    @discardableResult
    public func write(_ start: UInt64, bytes: [UInt8]) throws(MirrorError) -> Int {
        let pages = (bytes.count + PageSize.bytes - 1) / PageSize.bytes
        let end = pageAddress(start, pages)
        var faults = 0
        var copied = 0
        while true {
            if copyIntoMirrored(start, pages: pages, from: bytes, copied: &copied) { return faults }
            let r = fault(pageAddress(start, copied), end, write: true)
            if r != 0 { throw .errno(r) }
            faults += 1
        }
    }

    /// `dmirror_do_write()` under the device lock: copies the pages from `copied` on, out of `bytes`,
    /// into the frames the device page table maps writable, counting each in `copied`; false
    /// (`-ENOENT`) at the first page not mapped writable.
    func copyIntoMirrored(_ start: UInt64, pages: Int, from bytes: [UInt8], copied: inout Int) -> Bool {
        bytes.withUnsafeBytes { b in
            pageTable.withLock { pt -> Bool in
                while copied < pages {
                    let e = pt.lookup(pageAddress(start, copied))
                    guard e & DevicePageTable.write != 0 else { return false }
                    let offset = copied * PageSize.bytes
                    RawBytes.copy(
                        to: memory.address(of: DevicePageTable.pfn(of: e)), from: b.baseAddress! + offset,
                        count: min(PageSize.bytes, b.count - offset))
                    copied += 1
                }
                return true
            }
        }
    }

    /// `HMM_DMIRROR_SNAPSHOT` (`dmirror_snapshot` + `dmirror_mkentry`): `hmm_range_fault` without
    /// faulting, one ``MirrorProt`` byte per page.
    public func snapshot(_ start: UInt64, pages: Int) throws(MirrorError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: pages)
        let end = pageAddress(start, pages)
        let r: Int32 = withRange(capacity: Self.faultWindow) { range in
            var address = start
            while address < end {
                let next = min(end, pageAddress(address, Self.faultWindow))
                range.start = address
                range.end = next
                range.defaultFlags = 0
                range.pfnFlagsMask = 0
                range.devPrivateOwner = owner
                range.migrate = nil
                range.hmmPfns.update(repeating: 0, count: range.npages)
                while true {
                    range.notifier = notifier
                    range.notifierSeq = notifier.readBegin()
                    mm.mmapLock.readLock()
                    let r = mm.hmmRangeFault(range)
                    mm.mmapLock.unlock()
                    if r == Errno.EBUSY { continue }
                    if r != 0 { return r }
                    break
                }
                for i in 0..<range.npages {
                    out[pageCount(start, address) + i] = mirrorEntry(range.hmmPfns[i])
                }
                address = next
            }
            return 0
        }
        if r != 0 { throw .errno(r) }
        return out
    }

    /// `dmirror_mkentry()`.
    func mirrorEntry(_ w: UInt64) -> UInt8 {
        if w & HMMPfn.error != 0 { return MirrorProt.error }
        if w & HMMPfn.valid == 0 { return MirrorProt.none }
        let pfn = HMMPfn.pfn(w)
        var perm: UInt8
        let page = memory.page(pfn)
        if page.test(.zoneDevice) {
            let head = memory.page(memory.folio(containing: pfn).pfn)
            perm = head.deviceOwner == owner ? MirrorProt.devicePrivateLocal : MirrorProt.devicePrivateRemote
        } else if pfn == memory.zeroPage {
            // is_zero_pfn() is the 4 KiB zero page only (x86): a page of the huge zero folio reports
            // HMM_DMIRROR_PROT_NONE, with READ and PMD from the word.
            perm = MirrorProt.zero
        } else {
            perm = MirrorProt.none
        }
        perm |= w & HMMPfn.write != 0 ? MirrorProt.write : MirrorProt.read
        if HMMPfn.mapOrder(w) == PageSize.pmdOrder { perm |= MirrorProt.pmd }
        return perm
    }
}
