import Glibc
import Synchronization

/// Why an address-space call was refused (the errno the system call would return).
public enum MMError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `-EINVAL`: misaligned address, zero length, range outside a VMA, …
    case invalidArgument(String)
    /// `-ENOMEM`: a range not (fully) mapped, or no memory for tables.
    case noMemory(String)
    /// `-EEXIST`: a fixed address that overlaps a mapping (`MAP_FIXED_NOREPLACE`).
    case exists(String)
    /// `-EFAULT`: mremap of a range that crosses VMAs; GUP at an address without a VMA or permission.
    case fault(String)
    /// `-EOPNOTSUPP`: make_device_exclusive of a folio that is not anonymous.
    case notSupported(String)

    public var description: String {
        switch self {
        case .invalidArgument(let s): "EINVAL: \(s)"
        case .noMemory(let s): "ENOMEM: \(s)"
        case .exists(let s): "EEXIST: \(s)"
        case .fault(let s): "EFAULT: \(s)"
        case .notSupported(let s): "EOPNOTSUPP: \(s)"
        }
    }
}

/// A process address space: the lab's `struct mm_struct`.
///
/// It owns the VMAs (sorted, guarded by ``mmapLock``), the four-level ``PageTable``, the interval
/// notifiers and the counters, and implements `mmap`, `munmap`, `mprotect`, `mremap`, `fork`,
/// swap-out of chosen pages, the fault handler (`handle_mm_fault` for anonymous memory) and CPU loads
/// and stores that go through the page table.
///
/// Locking follows the kernel: VMA changes take the mmap lock for writing; faults, walks and CPU
/// accesses take it for reading and change entries under the split PTE lock or the PMD lock; folio
/// state changes under the folio lock.
public final class AddressSpace: @unchecked Sendable {
    public let memory: PhysicalMemory
    public let swap: SwapArea?
    let pageTable: PageTable
    /// `mmap_lock`.
    let mmapLock = ReadWriteLock()
    /// `mm->notifier_subscriptions`.
    let notifiers = MMUNotifierSubscriptions()
    public let counters = MMCounters()
    /// Seeded failures at the paths' failure points (nil: none). Set it before the space is used.
    var injector: FaultInjector?
    /// The VMAs, sorted by address. Read and written under ``mmapLock``.
    var vmaList: [VMA] = [] {
        didSet { vmaGeneration &+= 1 }
    }
    /// Moves on every change of ``vmaList`` (read under the mmap lock), so the reverse map's per-object
    /// index of these VMAs (``RmapCache``) knows when to rebuild.
    private(set) var vmaGeneration: UInt64 = 0
    /// The mapping objects the VMAs use, owned here (the kernel's mm holds its anon_vmas through its
    /// VMAs). Changed with the VMA list, under the mmap lock for writing.
    var ownedObjects: [ObjectIdentifier: MappingObject] = [:]

    /// Starts using `object` in this address space (reverse map membership and ownership).
    func adopt(_ object: MappingObject) {
        if ownedObjects.updateValue(object, forKey: ObjectIdentifier(object)) == nil { object.addMember(self) }
    }

    /// Stops using `object` when no VMA refers to it any more.
    func releaseIfUnused(_ object: MappingObject) {
        guard !vmaList.contains(where: { $0.object === object || $0.file === object }) else { return }
        if ownedObjects.removeValue(forKey: ObjectIdentifier(object)) != nil { object.removeMember(self) }
    }
    var nextAddress: UInt64 = 0x10_0000_0000
    /// The host shootdown each modelled TLB flush makes; nil when flushes are counted only.
    let shootdown: TLBShootdown?
    private var tornDown = false

    /// The lowest and highest user addresses the lab hands out (47-bit user space).
    static let userRange: Range<UInt64> = 0x1000..<(1 << 47)

    public init(memory: PhysicalMemory, swap: SwapArea? = nil) throws(PageTableError) {
        self.memory = memory
        self.swap = swap
        shootdown = memory.costs.contains(.flush) ? TLBShootdown.host : nil
        pageTable = try PageTable(memory: memory)
    }

    deinit { teardown() }

    /// `exit_mmap()`: releases every mapping (idempotent).
    ///
    /// Departure from the kernel: `exit_mmap` drains only this CPU's LRU add batch (`lru_add_drain`)
    /// and folios in other CPUs' batches are freed when those drain; the lab drains every batch
    /// (``PhysicalMemory/drainLRUBatches()``) so that a torn-down address space has given back every frame.
    func teardown() {
        defer { memory.drainLRUBatches() }
        mmapLock.withWriteLock {
            guard !tornDown else { return }
            tornDown = true
            notifiers.invalidateRangeStart(MMUNotifierRange(start: 0, end: Self.userRange.upperBound, event: .release))
            for vma in vmaList { zap(vma, vma.start, vma.end) }
            vmaList.removeAll()
            for object in ownedObjects.values { object.removeMember(self) }
            ownedObjects.removeAll()
            pageTable.freeTables(start: Self.userRange.lowerBound, end: Self.userRange.upperBound) { _, _ in false }
            notifiers.invalidateRangeEnd(MMUNotifierRange(start: 0, end: Self.userRange.upperBound, event: .release))
        }
    }

    // MARK: - VMAs

    /// A copy of the VMA list.
    var vmas: [VMA] { mmapLock.withReadLock { vmaList } }

    /// The index of the first VMA that ends above `address` (`find_vma`). Caller holds the mmap lock.
    func firstVMAIndex(endingAbove address: UInt64) -> Int {
        var lo = 0
        var hi = vmaList.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if vmaList[mid].end <= address { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The VMA containing `address` (`vma_lookup`). Caller holds the mmap lock.
    func vma(containing address: UInt64) -> VMA? {
        let i = firstVMAIndex(endingAbove: address)
        return i < vmaList.count && vmaList[i].start <= address ? vmaList[i] : nil
    }

    func overlaps(_ start: UInt64, _ end: UInt64) -> Bool {
        let i = firstVMAIndex(endingAbove: start)
        return i < vmaList.count && vmaList[i].start < end
    }

    /// Makes `address` a VMA boundary, splitting the VMA that spans it (`split_vma`), under the object's
    /// reverse-map lock for writing (`vma_prepare` → `anon_vma_lock_write`).
    func splitVMA(at address: UInt64) {
        let i = firstVMAIndex(endingAbove: address)
        guard i < vmaList.count, vmaList[i].start < address else { return }
        var head = vmaList[i]
        var tail = head
        head.end = address
        tail.start = address
        tail.pgoff = head.pgoff + pageNumber(address - head.start)
        head.object.rmapLock.withWriteLock {
            vmaList[i] = head
            vmaList.insert(tail, at: i + 1)
        }
    }

    /// Merges neighbours that are continuous in address, object and page offset with equal attributes
    /// (`vma_merge`), so mprotect back and forth does not fragment the list; each merge under the
    /// object's reverse-map lock for writing (`vma_prepare`).
    func mergeVMAs() {
        var i = 0
        while i + 1 < vmaList.count {
            let a = vmaList[i]
            let b = vmaList[i + 1]
            if a.end == b.start, a.object === b.object, a.protection == b.protection, a.flags == b.flags,
                a.pgoff + UInt64(a.pageCount) == b.pgoff
            {
                a.object.rmapLock.withWriteLock {
                    vmaList[i].end = b.end
                    vmaList.remove(at: i + 1)
                }
            } else {
                i += 1
            }
        }
    }

    func roundUpToPage(_ n: Int) -> UInt64 { (UInt64(n) + 4095) & PageSize.mask }

    /// Finds a free 2 MiB-aligned range of `length` bytes, leaving a 2 MiB gap after it.
    func allocateRange(_ length: UInt64) -> UInt64? {
        let align = PageSize.pmdSize
        var start = (nextAddress + align - 1) & ~(align - 1)
        while overlaps(start, start + length) { start += align }
        guard start + length <= Self.userRange.upperBound else { return nil }
        nextAddress = start + ((length + align - 1) & ~(align - 1)) + align
        return start
    }

    // MARK: - mmap

    /// Maps `length` bytes of anonymous memory (`mmap(MAP_ANONYMOUS | MAP_PRIVATE or MAP_SHARED)`).
    ///
    /// - Parameters:
    ///   - flags: `.shared` for `MAP_SHARED`, `.hugepage` for `MADV_HUGEPAGE`.
    ///   - fixed: an exact, page-aligned address (`MAP_FIXED_NOREPLACE`); otherwise 2 MiB-aligned.
    /// - Returns: the start address.
    public func mmap(
        length: Int, protection: Protection, flags: VMAFlags = [], at fixed: UInt64? = nil
    ) throws(MMError) -> UInt64 {
        guard length > 0 else { throw .invalidArgument("mmap length \(length) must be positive") }
        let size = roundUpToPage(length)
        return try mmapLock.withWriteLock { () throws(MMError) -> UInt64 in
            let start: UInt64
            if let fixed {
                guard isPageAligned(fixed) else {
                    throw .invalidArgument("mmap address 0x\(String(fixed, radix: 16)) is not page-aligned")
                }
                guard Self.userRange.contains(fixed), fixed + size <= Self.userRange.upperBound else {
                    throw .noMemory("mmap range 0x\(String(fixed, radix: 16))+\(size) is outside user space")
                }
                guard !overlaps(fixed, fixed + size) else {
                    throw .exists("mmap range 0x\(String(fixed, radix: 16))+\(size) overlaps a mapping")
                }
                start = fixed
            } else {
                guard let s = allocateRange(size) else { throw .noMemory("no free range of \(size) bytes") }
                start = s
            }
            let object =
                flags.contains(.shared)
                ? MappingObject(shmemPages: Int(pageNumber(size)), memory: memory) : MappingObject(anon: ())
            let vma = VMA(
                start: start, end: start + size, protection: protection, flags: flags,
                pgoff: flags.contains(.shared) ? 0 : pageNumber(start), object: object)
            adopt(object)
            vmaList.insert(vma, at: firstVMAIndex(endingAbove: start))
            return start
        }
    }

    /// Checks `[address, address+length)` is page-aligned and non-empty, and returns its end.
    func checkedRange(_ address: UInt64, _ length: Int, _ call: String) throws(MMError) -> UInt64 {
        guard isPageAligned(address) else {
            throw .invalidArgument("\(call) address 0x\(String(address, radix: 16)) is not page-aligned")
        }
        guard length > 0 else { throw .invalidArgument("\(call) length \(length) must be positive") }
        let end = address + roundUpToPage(length)
        guard end <= Self.userRange.upperBound else { throw .invalidArgument("\(call) range ends beyond user space") }
        return end
    }

    // MARK: - munmap

    /// Unmaps `[address, address+length)` (`munmap` → `do_vmi_munmap`): splits the VMAs at the edges,
    /// zaps the entries (dropping folio references and swap slots), removes the VMAs and frees the page
    /// tables no VMA needs any more. Unmapped holes in the range are fine, as in the kernel.
    public func munmap(_ address: UInt64, length: Int) throws(MMError) {
        let end = try checkedRange(address, length, "munmap")
        try mmapLock.withWriteLock { () throws(MMError) in
            try requireHugetlbAligned(address, end, "munmap")
            let range = MMUNotifierRange(start: address, end: end, event: .unmap)
            notifiers.invalidateRangeStart(range)
            splitVMA(at: address)
            splitVMA(at: end)
            let i = firstVMAIndex(endingAbove: address)
            var removedObjects: [MappingObject] = []
            while i < vmaList.count, vmaList[i].start < end {
                // unlink_anon_vmas: the VMA leaves the object's index under its write lock.
                let vma = vmaList[i].object.rmapLock.withWriteLock { vmaList.remove(at: i) }
                zap(vma, vma.start, vma.end)
                removedObjects.append(vma.object)
                if let file = vma.file { removedObjects.append(file) }
            }
            for object in removedObjects { releaseIfUnused(object) }
            pageTable.freeTables(start: address, end: end) { lo, hi in overlaps(lo, hi) }
            notifiers.invalidateRangeEnd(range)
        }
    }

    // MARK: - Zap

    /// Clears every entry of `[start, end)` in `vma` and releases what they held (`unmap_page_range` →
    /// `zap_pmd_range` → `zap_pte_range`): folio references and mapcounts, swap slots. Huge PMDs that
    /// the range only partly covers are split first. Caller holds the mmap lock for writing, or for
    /// reading with the range otherwise protected.
    func zap(_ vma: VMA, _ start: UInt64, _ end: UInt64) {
        var address = start
        while address < end {
            let next = PageTableLevel.pmd.addressEnd(address, end)
            defer { address = next }
            guard let pmd = pageTable.pmdSlot(address, allocate: false) else { continue }
            let entry = pmd.load()
            if entry.isNone { continue }
            if entry.isHuge || entry.isSwapFormat {
                let whole = isPMDAligned(address) && next - address == PageSize.pmdSize
                if whole {
                    let lock = pageTable.lock(tableOf: pmd)
                    let old = pmd.exchange(.none)
                    lock.unlock()
                    release(old, huge: true)
                    continue
                }
                guard splitHugePMD(pmd, address: address) else { continue }
            }
            guard let table = pageTable.pteTable(under: pmd, allocate: false) else { continue }
            let first = pageTable.slot(in: table, level: .pte, address: address)
            let lock = pageTable.lock(tableOf: first)
            for i in 0..<pageCount(address, next) {
                let old = first.advanced(by: i).exchange(.none)
                if !old.isNone { release(old, huge: false) }
            }
            lock.unlock()
        }
        flushTLB()
    }

    /// Drops what a cleared entry held (`zap_present_ptes`, `zap_nonpresent_ptes`, `zap_huge_pmd`). The
    /// zero page and the huge zero folio hold nothing (`zap_huge_pmd` only frees the deposited table
    /// of a huge zero PMD, which the lab does not deposit).
    func release(_ old: PTE, huge: Bool) {
        if old.isPresent {
            if memory.isZero(old.pfn) { return }
            let folio = memory.folio(containing: old.pfn)
            removeRmap(folio)
            memory.put(folio)
        } else if old.isSwap {
            swap?.free(SwapEntry(slot: UInt32(old.swapOffset), order: 0))
        } else if old.isDevicePrivate || old.isDeviceExclusive {
            let folio = memory.folio(containing: old.pfn)
            removeRmap(folio)
            memory.put(folio)
        }
        // A migration entry holds neither a mapcount nor a reference: the migration does.
    }

    // MARK: - mprotect

    /// Changes the protection of `[address, address+length)` (`mprotect` → `mprotect_fixup` →
    /// `change_protection`). The whole range must be mapped (`-ENOMEM` otherwise). Present entries of
    /// private memory become writable only where the page is anon-exclusive (`can_change_pte_writable`);
    /// the others stay write-protected and take a COW fault. `PROT_NONE` turns present entries into
    /// protnone entries that keep their pfn.
    public func mprotect(_ address: UInt64, length: Int, protection: Protection) throws(MMError) {
        let end = try checkedRange(address, length, "mprotect")
        try mmapLock.withWriteLock { () throws(MMError) in
            try requireMapped(address, end, "mprotect")
            try requireHugetlbAligned(address, end, "mprotect")
            let range = MMUNotifierRange(start: address, end: end, event: .protectionVMA)
            notifiers.invalidateRangeStart(range)
            splitVMA(at: address)
            splitVMA(at: end)
            var i = firstVMAIndex(endingAbove: address)
            while i < vmaList.count, vmaList[i].start < end {
                vmaList[i].protection = protection
                changeProtection(vmaList[i])
                i += 1
            }
            mergeVMAs()
            flushTLB()
            notifiers.invalidateRangeEnd(range)
        }
    }

    /// Throws `-ENOMEM` unless VMAs cover `[address, end)` without a gap (`mprotect` and `madvise`
    /// refuse an unmapped hole). Caller holds the mmap lock.
    func requireMapped(_ address: UInt64, _ end: UInt64, _ call: String) throws(MMError) {
        var cursor = address
        var i = firstVMAIndex(endingAbove: address)
        while cursor < end {
            guard i < vmaList.count, vmaList[i].start <= cursor else {
                throw .noMemory("\(call) range 0x\(String(cursor, radix: 16)) is not mapped")
            }
            cursor = vmaList[i].end
            i += 1
        }
    }

    /// `madvise(MADV_HUGEPAGE)` (`hugepage: true`) or `madvise(MADV_NOHUGEPAGE)` on
    /// `[address, address+length)`: sets or clears `VM_HUGEPAGE`, splitting VMAs at the range's ends
    /// (`madvise_update_vma`). Only later faults are affected: mapped pages stay as they are.
    func madvise(_ address: UInt64, length: Int, hugepage: Bool) throws(MMError) {
        let end = try checkedRange(address, length, "madvise")
        try mmapLock.withWriteLock { () throws(MMError) in
            try requireMapped(address, end, "madvise")
            splitVMA(at: address)
            splitVMA(at: end)
            var i = firstVMAIndex(endingAbove: address)
            while i < vmaList.count, vmaList[i].start < end {
                if hugepage { vmaList[i].flags.insert(.hugepage) } else { vmaList[i].flags.remove(.hugepage) }
                i += 1
            }
            mergeVMAs()
        }
    }

    /// Rewrites the entries of a VMA for its (new) protection (`change_pte_range`, `change_huge_pmd`).
    func changeProtection(_ vma: VMA) {
        var address = vma.start
        while address < vma.end {
            let next = PageTableLevel.pmd.addressEnd(address, vma.end)
            defer { address = next }
            guard let pmd = pageTable.pmdSlot(address, allocate: false) else { continue }
            let entry = pmd.load()
            if entry.isHuge {
                if next - address < PageSize.pmdSize {
                    guard splitHugePMD(pmd, address: address) else { continue }
                } else {
                    let lock = pageTable.lock(tableOf: pmd)
                    pmd.store(protect(pmd.load(), vma: vma, huge: true))
                    lock.unlock()
                    continue
                }
            } else if entry.isSwapFormat {
                let lock = pageTable.lock(tableOf: pmd)
                pmd.store(protect(pmd.load(), vma: vma, huge: true))
                lock.unlock()
                continue
            }
            guard let table = pageTable.pteTable(under: pmd, allocate: false) else { continue }
            let first = pageTable.slot(in: table, level: .pte, address: address)
            let lock = pageTable.lock(tableOf: first)
            for i in 0..<pageCount(address, next) {
                let slot = first.advanced(by: i)
                let old = slot.load()
                if !old.isNone { slot.store(protect(old, vma: vma, huge: false)) }
            }
            lock.unlock()
        }
    }

    /// One entry under a VMA's protection (`change_pte_range`, `change_softleaf_pte` for non-present
    /// entries). A device-exclusive entry is left as it is, as in 7.2: it has no write variant, and the
    /// PTE it is restored to takes the VMA's permission then (`restore_exclusive_pte`).
    func protect(_ old: PTE, vma: VMA, huge: Bool) -> PTE {
        if old.isPresent {
            if !vma.isReadable && !vma.isWritable { return .protNone(old.pfn, huge: huge) }
            let zero = memory.isZero(old.pfn)
            // A shared file page stays read-only until dirty (`vma_wants_writenotify`: its write fault dirties the folio).
            let sharedWritable = vma.isShared && (vma.file == nil || old.isDirty)
            let canWrite = vma.isWritable && !zero && (sharedWritable || memory.page(old.pfn).test(.anonExclusive))
            var new = PTE.present(
                old.pfn, writable: canWrite, dirty: old.isDirty, huge: huge, special: zero, softDirty: old.isSoftDirty)
            if !canWrite { new = new.writeProtected() }
            return new
        }
        if old.isWritableMigration, !vma.isWritable {
            return .migration(
                old.pfn, mode: .read, young: old.migrationYoung, dirty: old.migrationDirty, softDirty: old.swapSoftDirty
            )
        }
        if old.isWritableDevicePrivate, !vma.isWritable {
            return .devicePrivate(old.pfn, writable: false, softDirty: old.swapSoftDirty)
        }
        return old
    }

    // MARK: - mremap

    /// Resizes or moves `[address, address+oldLength)` (`mremap`). Shrinking unmaps the tail; growing
    /// extends in place when the space after the VMA is free and no target was given; otherwise the range
    /// moves (`MREMAP_MAYMOVE`, or `MREMAP_FIXED` to `target`): page-table entries are moved, not the
    /// folios (`move_page_tables`, `move_ptes`, `move_huge_pmd`), the VMA keeps its page offset so the
    /// reverse map still finds each page, and the old range is left unmapped — or, with `dontUnmap`
    /// (`MREMAP_DONTUNMAP`, which needs a move of the same size), mapped still by an empty VMA of the
    /// same kind, whose next access faults in a fresh page (`move_vma` keeps the old VMA).
    ///
    /// Kept in one piece on purpose, as `do_mremap()`'s checks and cases read in one place in
    /// mm/mremap.c.
    ///
    /// - Returns: the new start address.
    public func mremap(
        _ address: UInt64, oldLength: Int, newLength: Int, to target: UInt64? = nil, dontUnmap: Bool = false
    ) throws(MMError) -> UInt64 {
        let oldEnd = try checkedRange(address, oldLength, "mremap")
        guard newLength > 0 else { throw .invalidArgument("mremap new length \(newLength) must be positive") }
        let newSize = roundUpToPage(newLength)
        let oldSize = oldEnd - address
        if dontUnmap, newSize != oldSize {
            throw .invalidArgument(
                "mremap MREMAP_DONTUNMAP needs the old and new lengths equal (\(oldSize) and \(newSize))")
        }
        if let target, !isPageAligned(target) {
            throw .invalidArgument("mremap target 0x\(String(target, radix: 16)) is not page-aligned")
        }
        if newSize < oldSize, target == nil {
            try munmap(address + newSize, length: Int(oldSize - newSize))
            return address
        }
        return try mmapLock.withWriteLock { () throws(MMError) -> UInt64 in
            guard let vma = vma(containing: address) else {
                throw .fault("mremap of unmapped address 0x\(String(address, radix: 16))")
            }
            guard oldEnd <= vma.end else {
                throw .fault("mremap range 0x\(String(address, radix: 16))+\(oldSize) crosses VMAs")
            }
            if target == nil, newSize == oldSize, !dontUnmap { return address }
            // Grow in place.
            if target == nil, oldEnd == vma.end, !overlaps(oldEnd, address + newSize),
                address + newSize <= Self.userRange.upperBound,
                vma.object.kind == .anon
            {
                let i = firstVMAIndex(endingAbove: address)
                vma.object.rmapLock.withWriteLock { vmaList[i].end = address + newSize }  // vma_expand → vma_prepare
                return address
            }
            // Move.
            let destination: UInt64
            if let target {
                guard target + newSize <= Self.userRange.upperBound else {
                    throw .noMemory("mremap target beyond user space")
                }
                guard !(target < oldEnd && address < target + newSize) else {
                    throw .invalidArgument("mremap target overlaps the old range")
                }
                if overlaps(target, target + newSize) {
                    throw .exists("mremap target 0x\(String(target, radix: 16))+\(newSize) overlaps a mapping")
                }
                destination = target
            } else {
                guard let d = allocateRange(newSize) else {
                    throw .noMemory("no free range of \(newSize) bytes for mremap")
                }
                destination = d
            }
            let range = MMUNotifierRange(start: address, end: oldEnd, event: .unmap)
            notifiers.invalidateRangeStart(range)
            defer { notifiers.invalidateRangeEnd(range) }
            splitVMA(at: address)
            splitVMA(at: oldEnd)
            let i = firstVMAIndex(endingAbove: address)
            // move_vma: the old VMA's unlink and the copy's link (copy_vma) change the object's index
            // under its write lock.
            let object = vmaList[i].object
            var moved = object.rmapLock.withWriteLock { vmaList.remove(at: i) }
            let moveSize = min(oldSize, newSize)
            moveEntries(from: address, to: destination, length: moveSize)
            if oldSize > newSize {
                // Shrinking move: the part not moved is unmapped.
                var rest = moved
                rest.start = address + moveSize
                rest.pgoff = moved.pgoff + pageNumber(moveSize)
                zap(rest, rest.start, rest.end)
            }
            let old = moved
            moved.start = destination
            moved.end = destination + newSize
            object.rmapLock.withWriteLock {
                vmaList.insert(moved, at: firstVMAIndex(endingAbove: destination))
                if dontUnmap { vmaList.insert(old, at: firstVMAIndex(endingAbove: old.start)) }
            }
            pageTable.freeTables(start: address, end: oldEnd) { lo, hi in overlaps(lo, hi) }
            flushTLB()
            return destination
        }
    }

    /// Moves the entries of `[from, from+length)` to `[to, to+length)` (`move_page_tables`). Whole aligned
    /// huge PMDs move as one entry (`move_huge_pmd`); others are split and moved PTE by PTE (`move_ptes`).
    func moveEntries(from: UInt64, to: UInt64, length: UInt64) {
        var offset: UInt64 = 0
        while offset < length {
            let old = from + offset
            let next = PageTableLevel.pmd.addressEnd(old, from + length)
            let span = next - old
            defer { offset += span }
            guard let oldPMD = pageTable.pmdSlot(old, allocate: false) else { continue }
            let entry = oldPMD.load()
            if entry.isNone { continue }
            if entry.isHuge || entry.isSwapFormat {
                let pmdAligned = isPMDAligned(old) && isPMDAligned(to + offset)
                if pmdAligned, span == PageSize.pmdSize, let newPMD = pageTable.pmdSlot(to + offset, allocate: true),
                    newPMD.load().isNone
                {
                    let lock = pageTable.lock(tableOf: oldPMD)
                    let moving = oldPMD.exchange(.none)
                    lock.unlock()
                    let lock2 = pageTable.lock(tableOf: newPMD)
                    newPMD.store(moving)
                    lock2.unlock()
                    continue
                }
                guard splitHugePMD(oldPMD, address: old) else { continue }
            }
            guard let table = pageTable.pteTable(under: oldPMD, allocate: false) else { continue }
            for k in 0..<Int(pageNumber(span)) {
                let source = pageTable.slot(in: table, level: .pte, address: pageAddress(old, k))
                let lock = pageTable.lock(tableOf: source)
                let moving = source.exchange(.none)
                lock.unlock()
                if moving.isNone { continue }
                guard let newPMD = pageTable.pmdSlot(to + pageAddress(offset, k), allocate: true),
                    let newTable = pageTable.pteTable(under: newPMD, allocate: true)
                else {
                    preconditionFailure("mremap: no memory for a page table while moving entries")
                }
                let destination = pageTable.slot(in: newTable, level: .pte, address: to + pageAddress(offset, k))
                let lock2 = pageTable.lock(tableOf: destination)
                destination.store(moving)
                lock2.unlock()
            }
        }
    }
}
