import Glibc
import Synchronization

/// Page-table levels, with the x86-64 four-level layout: 48-bit virtual addresses, 512 entries a table.
enum PageTableLevel: Int, Sendable, Comparable {
    case pte = 0, pmd = 1, pud = 2, pgd = 3

    /// Address bits below this level's index (`PAGE_SHIFT`, `PMD_SHIFT`, `PUD_SHIFT`, `PGDIR_SHIFT`).
    @inlinable public var shift: UInt64 { 12 + 9 * UInt64(rawValue) }
    /// Bytes one entry of this level covers.
    @inlinable var entrySpan: UInt64 { 1 << shift }
    /// The index of `address` in a table of this level (`pte_index`, `pmd_index`, …).
    @inlinable public func index(_ address: UInt64) -> Int { Int((address >> shift) & UInt64(PageSize.pmdPages - 1)) }
    /// The end of the entry holding `address`, clipped to `end` (`pmd_addr_end` and friends).
    @inlinable func addressEnd(_ address: UInt64, _ end: UInt64) -> UInt64 {
        let boundary = (address + entrySpan) & ~(entrySpan - 1)
        return boundary - 1 < end - 1 ? boundary : end
    }

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// Why a page-table operation failed.
public enum PageTableError: Error, Equatable, Sendable {
    /// No system frame for a new table (`-ENOMEM`).
    case outOfMemory
}

/// The four-level page table of one address space, every table a 4 KiB frame of system memory.
///
/// Models the kernel's `pgd_t *pgd` tree: tables are allocated on demand while faulting
/// (`__pte_alloc`, `__pmd_alloc`, `__pud_alloc`), installed with a compare-and-exchange so two racing
/// faults leave one table (the kernel takes `mm->page_table_lock`; the loser frees its table), and freed
/// by ``freeTables(start:end:inUse:)`` once no VMA covers their span (`free_pgd_range`).
///
/// Locks: each PTE table and each PMD table carries a spinlock in its descriptor's `private` word (the
/// split page-table lock `ptdesc->ptl`, `pte_lockptr` / `pmd_lockptr`).
final class PageTable: @unchecked Sendable {
    public let memory: PhysicalMemory
    /// The PGD's frame.
    public let root: Pfn
    /// The system pool's first byte, first pfn and the descriptor array, cached so that finding a
    /// table's lock costs no reference counting.
    @usableFromInline let systemBase: UnsafeMutableRawPointer
    @usableFromInline let systemFirstPfn: Pfn
    @usableFromInline let descriptors: UnsafeMutablePointer<PageDescriptor>
    /// Tables currently allocated, the root included.
    var tableCount: Int { tables.load(ordering: .relaxed) }
    private let tables = Atomic<Int>(0)
    /// Time spent waiting for the split PTE and PMD locks of this table tree (contended acquisitions only).
    let lockWait = LockWait.make()

    public init(memory: PhysicalMemory) throws(PageTableError) {
        self.memory = memory
        systemBase = memory.system.region.base
        systemFirstPfn = memory.system.firstPfn
        descriptors = memory.descriptors
        guard case .success(let folio) = memory.allocate(.system, order: 0) else { throw .outOfMemory }
        RawBytes.zero(memory.address(of: folio.pfn), count: PageSize.bytes)
        root = folio.pfn
        tables.store(1, ordering: .relaxed)
    }

    deinit {
        freeAll(root, level: .pgd)
        lockWait.free()
    }

    // MARK: Tables

    /// The first slot of the table in frame `pfn`.
    @inlinable func slots(of pfn: Pfn) -> EntrySlot {
        EntrySlot(
            (systemBase + ((pfn.index - systemFirstPfn.index) << PageSize.shift)).assumingMemoryBound(
                to: Atomic<UInt64>.self))
    }

    /// The slot for `address` in the table at `level` held in frame `table`.
    @inlinable func slot(in table: Pfn, level: PageTableLevel, address: UInt64) -> EntrySlot {
        slots(of: table).advanced(by: level.index(address))
    }

    /// Allocates a zeroed table frame (`pte_alloc_one`, `pmd_alloc_one`, …).
    @usableFromInline func allocateTable() -> Pfn? {
        guard case .success(let folio) = memory.allocate(.system, order: 0) else { return nil }
        RawBytes.zero(memory.address(of: folio.pfn), count: PageSize.bytes)
        memory.page(folio.pfn).setPrivate(0)  // the ptl, unlocked
        tables.wrappingAdd(1, ordering: .relaxed)
        return folio.pfn
    }

    @usableFromInline func freeTable(_ pfn: Pfn) {
        memory.page(pfn).setPrivate(0)
        memory.put(Folio(pfn: pfn, order: 0))
        tables.wrappingSubtract(1, ordering: .relaxed)
    }

    /// The slot of the next-level table for `address`, descending from `slot` at `level`, allocating the
    /// table when absent. Nil on allocation failure.
    @inlinable func descend(_ slot: EntrySlot, allocate: Bool) -> Pfn? {
        var entry = slot.load()
        if entry.isNone {
            guard allocate, let fresh = allocateTable() else { return nil }
            // pmd_install / __pud_alloc: populate under the lock of the table that holds the slot (the
            // PMD lock for a PTE table), not with a lockless compare-and-swap. Code that holds the PMD
            // lock, finds the PMD none and then stores a leaf (a THP fault, `migrate_vma_insert_huge_pmd_page`)
            // relies on nobody populating it meanwhile; a lockless install in that window was
            // overwritten by the huge entry, and the PTE table, with the page a concurrent fault had
            // just mapped in it, was lost (`bench stress --seed 7`: a frame mapped by no page table,
            // with a reference and a mapping, not returned after teardown).
            let lock = self.lock(tableOf: slot)
            entry = slot.load()
            if entry.isNone {
                slot.store(.table(fresh))
                lock.unlock()
                return fresh
            }
            lock.unlock()
            freeTable(fresh)  // lost the race: use the winner's table
        }
        guard entry.isPresent, !entry.isHuge else { return nil }
        return entry.pfn
    }

    /// The PMD slot for `address` (`pmd_offset` after `pgd_offset`, `p4d_offset`, `pud_offset`), allocating
    /// the upper tables if `allocate` (`__pud_alloc`, `__pmd_alloc`). Nil when a level is absent and not
    /// allocated, or allocation failed.
    @inlinable func pmdSlot(_ address: UInt64, allocate: Bool) -> EntrySlot? {
        guard let pud = descend(slot(in: root, level: .pgd, address: address), allocate: allocate),
            let pmd = descend(slot(in: pud, level: .pud, address: address), allocate: allocate)
        else { return nil }
        return slot(in: pmd, level: .pmd, address: address)
    }

    /// The PTE table under a PMD slot, allocating it if `allocate` (`pte_alloc`). Nil when the PMD is a
    /// huge or non-present leaf, or absent and not allocated.
    @inlinable func pteTable(under pmd: EntrySlot, allocate: Bool) -> Pfn? {
        descend(pmd, allocate: allocate)
    }

    /// The PTE slot for `address` if the tables exist and the PMD is a table (`pte_offset_map`).
    @inlinable func pteSlot(_ address: UInt64) -> EntrySlot? {
        guard let pmd = pmdSlot(address, allocate: false), let table = pteTable(under: pmd, allocate: false) else {
            return nil
        }
        return slot(in: table, level: .pte, address: address)
    }

    /// The frame of the table that holds `slot` (for its lock).
    @inlinable func tableFrame(of slot: EntrySlot) -> Pfn {
        let address = UnsafeMutableRawPointer(slot.pointer)
        return systemFirstPfn + ((address - systemBase) >> PageSize.shift)
    }

    // MARK: Locks

    /// Takes the split lock of the table that holds `slot` (`pte_offset_map_lock`, `pmd_lock`).
    @inlinable @inline(__always) func lock(tableOf slot: EntrySlot) -> TableLock {
        let lock = TableLock(descriptors + tableFrame(of: slot).index, wait: lockWait)
        lock.lock()
        return lock
    }

    // MARK: Freeing

    /// Frees the tables below the root whose whole span lies in `[start, end)` rounded out to their span
    /// and for which `inUse(spanStart, spanEnd)` is false (no VMA overlaps). Models `free_pgd_range()`:
    /// the caller has zapped the entries and holds the mmap lock for writing.
    func freeTables(start: UInt64, end: UInt64, inUse: (UInt64, UInt64) -> Bool) {
        freeRange(root, level: .pgd, base: 0, start: start, end: end, inUse: inUse)
    }

    private func freeRange(
        _ table: Pfn, level: PageTableLevel, base: UInt64, start: UInt64, end: UInt64, inUse: (UInt64, UInt64) -> Bool
    ) {
        guard level > .pte else { return }
        let first = level.index(max(start, base))
        let span = level.entrySpan
        for i in first..<512 {
            let lo = base + UInt64(i) * span
            if lo >= end { break }
            let hi = lo + span
            let s = slots(of: table).advanced(by: i)
            let entry = s.load()
            guard entry.isPresent, !entry.isHuge else { continue }
            freeRange(
                entry.pfn, level: PageTableLevel(rawValue: level.rawValue - 1)!, base: lo, start: start, end: end,
                inUse: inUse)
            if !inUse(lo, hi) {
                precondition(
                    isEmpty(entry.pfn),
                    "freeing a table at \(level) for 0x\(String(lo, radix: 16)) that still has entries")
                s.store(.none)
                freeTable(entry.pfn)
            }
        }
    }

    private func isEmpty(_ table: Pfn) -> Bool {
        let s = slots(of: table)
        for i in 0..<512 where !s.advanced(by: i).load().isNone { return false }
        return true
    }

    /// Frees every table (`free_pgtables` at exit); the caller has released the pages they mapped.
    private func freeAll(_ table: Pfn, level: PageTableLevel) {
        if level > .pte {
            let s = slots(of: table)
            for i in 0..<512 {
                let entry = s.advanced(by: i).load()
                if entry.isPresent, !entry.isHuge {
                    freeAll(entry.pfn, level: PageTableLevel(rawValue: level.rawValue - 1)!)
                }
            }
        }
        freeTable(table)
    }
}

/// The PTE table of the last PMD a caller looked up, so that a pass over neighbouring addresses in
/// address order (finalize restoring a window's entries) descends the four levels once per PMD, not
/// once per page, as `page_vma_mapped_walk` keeps its `pvmw->pmd` while it moves along a folio.
/// Valid while the caller holds the mmap lock: tables are freed only under it, for writing.
struct PTECursor {
    @usableFromInline var key: UInt64 = .max
    @usableFromInline var table: Pfn?

    public init() {}

    /// The PTE slot for `address` (`pte_offset_map`), or nil when the PMD is not a table.
    @inlinable @inline(__always) mutating func slot(_ address: UInt64, in pageTable: PageTable) -> EntrySlot? {
        if pmdNumber(address) != key {
            key = pmdNumber(address)
            table = pageTable.pmdSlot(address, allocate: false).flatMap {
                pageTable.pteTable(under: $0, allocate: false)
            }
        }
        guard let table else { return nil }
        return pageTable.slot(in: table, level: .pte, address: address)
    }
}

/// A split page-table lock held in a table page's descriptor (`spinlock_t ptl` of `struct ptdesc`).
///
/// A test-and-test-and-set spinlock that yields the CPU after a few hundred spins, since the lab's
/// threads can outnumber cores. When the first try fails, the wait is timed into `wait` (the page
/// table's ``LockWait``; `ptl_wait_ns`).
struct TableLock: @unchecked Sendable {
    @usableFromInline let descriptor: UnsafeMutablePointer<PageDescriptor>
    @usableFromInline let wait: LockWait?

    @inlinable init(_ descriptor: UnsafeMutablePointer<PageDescriptor>, wait: LockWait? = nil) {
        self.descriptor = descriptor
        self.wait = wait
    }

    @inlinable func lock() {
        if descriptor.pointee.private.load(ordering: .relaxed) == 0,
            descriptor.pointee.private.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged
        {
            return
        }
        lockContended()
    }

    /// The slow path of ``lock()``: spin, yield, and count the time waited.
    @usableFromInline @inline(never) func lockContended() {
        let started = monotonicNanoseconds()
        defer { wait?.add(since: started) }
        var spins = 0
        while true {
            if descriptor.pointee.private.load(ordering: .relaxed) == 0,
                descriptor.pointee.private.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged
            {
                return
            }
            spins += 1
            if spins > 256 {
                sched_yield()
                spins = 0
            }
        }
    }

    @inlinable public func unlock() {
        descriptor.pointee.private.store(0, ordering: .releasing)
    }
}
