/// What the walker does after a `pmd_entry` callback (`walk->action`).
enum WalkAction: Sendable {
    /// `ACTION_SUBTREE`: descend into the PTE table (the default).
    case subtree
    /// `ACTION_CONTINUE`: the callback handled this PMD; go on to the next.
    case `continue`
    /// `ACTION_AGAIN`: look at this PMD again (it changed under the callback).
    case again
}

/// The walk state handed to callbacks (`struct mm_walk`).
struct PageWalk {
    /// The address space walked.
    public unowned(unsafe) let mm: AddressSpace
    /// The VMA being walked; nil in a hole outside every VMA.
    var vma: VMA?
    /// Set by `pmdEntry` to steer the walker.
    var action: WalkAction = .subtree
    /// Entries visited so far, PTE and PMD level.
    var ptesVisited = 0
    var pmdsVisited = 0

    init(mm: AddressSpace) { self.mm = mm }
}

/// The callbacks of a page walk (`struct mm_walk_ops`). Implementations are value types whose methods
/// the generic walker calls directly, so each walk specialises with no closure or existential per
/// entry. Declare which callbacks exist with the `has…` properties (the kernel tests for NULL).
///
/// Callbacks return 0 to go on, or a negative errno to stop the walk (`-EBUSY` to ask the caller to
/// restart from an address, as `hmm_range_fault` does); `testWalk` returns 1 to skip a VMA.
protocol PageWalkOps {
    static var hasPmdEntry: Bool { get }
    static var hasPteEntry: Bool { get }
    static var hasPteHole: Bool { get }
    static var hasTestWalk: Bool { get }

    /// `test_walk`: 0 walk this VMA, 1 skip it, < 0 stop with that error.
    mutating func testWalk(_ start: UInt64, _ end: UInt64, _ walk: inout PageWalk) -> Int32
    /// `pmd_entry`: a PMD that is not none, for `[address, next)`. Called without the PMD lock, as in the kernel.
    mutating func pmdEntry(_ pmd: EntrySlot, _ address: UInt64, _ next: UInt64, _ walk: inout PageWalk) -> Int32
    /// `pte_entry`: every PTE of a table (none ones included), with the PTE lock held.
    mutating func pteEntry(_ pte: EntrySlot, _ address: UInt64, _ next: UInt64, _ walk: inout PageWalk) -> Int32
    /// `pte_hole`: `[address, next)` has no table at `depth` (0 PGD … 3 PMD), or no VMA (`depth` -1).
    mutating func pteHole(_ address: UInt64, _ next: UInt64, depth: Int, _ walk: inout PageWalk) -> Int32
}

extension PageWalkOps {
    static var hasTestWalk: Bool { false }
    mutating func testWalk(_ start: UInt64, _ end: UInt64, _ walk: inout PageWalk) -> Int32 { 0 }
    mutating func pmdEntry(_ pmd: EntrySlot, _ address: UInt64, _ next: UInt64, _ walk: inout PageWalk) -> Int32 { 0 }
    mutating func pteEntry(_ pte: EntrySlot, _ address: UInt64, _ next: UInt64, _ walk: inout PageWalk) -> Int32 { 0 }
    mutating func pteHole(_ address: UInt64, _ next: UInt64, depth: Int, _ walk: inout PageWalk) -> Int32 { 0 }
}

/// The walker: `walk_page_range()` (mm/pagewalk.c).
extension AddressSpace {
    /// Walks `[start, end)` VMA by VMA and level by level, calling `ops`. The caller holds the mmap lock
    /// (for reading, `PGWALK_RDLOCK`). Counts one walk and the entries visited.
    ///
    /// Departure from the kernel: a huge or non-present PMD is never split by the walker to reach
    /// `pte_entry` (the kernel splits when `pte_entry` is set); ops that need such PMDs handle them in
    /// `pmdEntry`, as hmm and migrate_vma do.
    ///
    /// - Returns: 0, or the first non-zero value a callback returned.
    func walkPageRange<Ops: PageWalkOps>(_ start: UInt64, _ end: UInt64, _ ops: inout Ops) -> Int32 {
        counters.walks.wrappingAdd(1, ordering: .relaxed)
        var walk = PageWalk(mm: self)
        let result = walkRange(start, end, &ops, &walk)
        counters.entriesVisited.wrappingAdd(walk.ptesVisited + walk.pmdsVisited, ordering: .relaxed)
        return result
    }

    /// Walks `[start, end)`, restarting after `-EBUSY` from the address `restartFrom` reports (the
    /// `hmm_range_fault` loop), counting each restart. `restartFrom` is read after each `-EBUSY`.
    func walkPageRangeRestarting<Ops: PageWalkOps>(
        _ start: UInt64, _ end: UInt64, _ ops: inout Ops, restartFrom: (inout Ops) -> UInt64
    ) -> Int32 {
        var from = start
        while true {
            let r = walkPageRange(from, end, &ops)
            guard r == Errno.EBUSY else { return r }
            counters.walkRestarts.wrappingAdd(1, ordering: .relaxed)
            from = restartFrom(&ops)
        }
    }

    func walkRange<Ops: PageWalkOps>(_ start: UInt64, _ end: UInt64, _ ops: inout Ops, _ walk: inout PageWalk) -> Int32
    {
        var address = start
        var i = firstVMAIndex(endingAbove: start)
        while address < end {
            if i >= vmaList.count || vmaList[i].start >= end {
                walk.vma = nil
                return Ops.hasPteHole ? ops.pteHole(address, end, depth: -1, &walk) : 0
            }
            let vma = vmaList[i]
            if address < vma.start {
                walk.vma = nil
                if Ops.hasPteHole {
                    let r = ops.pteHole(address, vma.start, depth: -1, &walk)
                    if r != 0 { return r }
                }
                address = vma.start
            }
            let next = min(end, vma.end)
            walk.vma = vma
            if Ops.hasTestWalk {
                let t = ops.testWalk(address, next, &walk)
                if t < 0 { return t }
                if t > 0 {
                    address = next
                    i += 1
                    continue
                }
            }
            let r = walkUpper(address, next, &ops, &walk)
            if r != 0 { return r }
            address = next
            i += 1
        }
        return 0
    }

    /// `walk_pgd_range` / `walk_p4d_range` / `walk_pud_range`: holes for absent upper tables, then PMDs.
    ///
    /// Lab departure: there is no `pud_entry` callback, and a huge PUD would be reported as a hole.
    /// Nothing in the model maps one (no 1 GiB THP, DAX or hugetlb mappings), so `hmm_vma_walk_pud`
    /// (a PUD leaf reported with its pfns and map order, or faulted) has nothing to meet.
    func walkUpper<Ops: PageWalkOps>(_ start: UInt64, _ end: UInt64, _ ops: inout Ops, _ walk: inout PageWalk) -> Int32
    {
        var address = start
        while address < end {
            let pgdNext = PageTableLevel.pgd.addressEnd(address, end)
            let pgdSlot = pageTable.slot(in: pageTable.root, level: .pgd, address: address)
            let pgd = pgdSlot.load()
            guard pgd.isPresent else {
                if Ops.hasPteHole {
                    let r = ops.pteHole(address, pgdNext, depth: 0, &walk)
                    if r != 0 { return r }
                }
                address = pgdNext
                continue
            }
            while address < pgdNext {
                let pudNext = PageTableLevel.pud.addressEnd(address, pgdNext)
                let pud = pageTable.slot(in: pgd.pfn, level: .pud, address: address).load()
                if pud.isPresent, !pud.isHuge {
                    let r = walkPMDRange(pud.pfn, address, pudNext, &ops, &walk)
                    if r != 0 { return r }
                } else if Ops.hasPteHole {
                    let r = ops.pteHole(address, pudNext, depth: 2, &walk)
                    if r != 0 { return r }
                }
                address = pudNext
            }
        }
        return 0
    }

    /// `walk_pmd_range`.
    func walkPMDRange<Ops: PageWalkOps>(
        _ pmdTable: Pfn, _ start: UInt64, _ end: UInt64, _ ops: inout Ops, _ walk: inout PageWalk
    ) -> Int32 {
        var address = start
        while address < end {
            let next = PageTableLevel.pmd.addressEnd(address, end)
            let slot = pageTable.slot(in: pmdTable, level: .pmd, address: address)
            let entry = slot.load()
            walk.pmdsVisited += 1
            if entry.isNone {
                if Ops.hasPteHole {
                    let r = ops.pteHole(address, next, depth: 3, &walk)
                    if r != 0 { return r }
                }
                address = next
                continue
            }
            walk.action = .subtree
            if Ops.hasPmdEntry {
                let r = ops.pmdEntry(slot, address, next, &walk)
                if r != 0 { return r }
                if walk.action == .again { continue }
                if walk.action == .continue {
                    address = next
                    continue
                }
            }
            if Ops.hasPteEntry {
                let current = slot.load()
                if current.isPresent, !current.isHuge {
                    let r = walkPTERange(current.pfn, address, next, &ops, &walk)
                    if r != 0 { return r }
                }
            }
            address = next
        }
        return 0
    }

    /// `walk_pte_range`: every PTE of the range under the PTE lock.
    func walkPTERange<Ops: PageWalkOps>(
        _ table: Pfn, _ start: UInt64, _ end: UInt64, _ ops: inout Ops, _ walk: inout PageWalk
    ) -> Int32 {
        let first = pageTable.slot(in: table, level: .pte, address: start)
        let lock = pageTable.lock(tableOf: first)
        defer { lock.unlock() }
        let count = pageCount(start, end)
        var address = start
        for i in 0..<count {
            let r = ops.pteEntry(first.advanced(by: i), address, address + PageSize.size, &walk)
            if r != 0 {
                walk.ptesVisited += i + 1
                return r
            }
            address += PageSize.size
        }
        walk.ptesVisited += count
        return 0
    }
}
