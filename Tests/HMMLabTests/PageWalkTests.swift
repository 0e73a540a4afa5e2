import Testing

@testable import HMMLab

@Suite("PageWalk: walk_page_range callbacks, holes, test_walk, restarts, counters")
struct PageWalkTests {
    @Test("a snapshot walk reports each entry kind, holes inside and outside VMAs, and huge PMDs")
    func snapshotKinds() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 8 * 4096, protection: .readWrite, at: 0x20_0000_0000)
        _ = try f.mm.load(UInt8.self, from: a)  // zero page
        try f.mm.store(UInt8(1), at: a + 4096)  // write
        try f.mm.store(UInt8(1), at: a + 2 * 4096)
        _ = try f.mm.swapOut(a + 2 * 4096, pages: 1)  // swap
        try f.mm.store(UInt8(1), at: a + 3 * 4096)
        try f.mm.mprotect(a + 3 * 4096, length: 4096, protection: .none)
        let h = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage, at: 0x20_0020_0000)
        try f.mm.store(UInt8(1), at: h)
        let states = f.mm.snapshot(a, pages: 512 + 512)
        #expect(Array(states[0..<8]) == [.zero, .write, .swap, .protNone, .none, .none, .none, .none])
        #expect(states[8..<512].allSatisfy { $0 == .error }, "no VMA: depth -1 hole")
        #expect(states[512...].allSatisfy { $0 == .write }, "the huge PMD")
        f.finish()
    }

    @Test("walks and entries visited are counted; test_walk skips a VMA")
    func countersAndTestWalk() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 16 * 4096, protection: .readWrite)
        let b = try f.mm.mmap(length: 16 * 4096, protection: .read)
        for k in 0..<16 { try f.mm.store(UInt8(1), at: a + UInt64(k) << 12) }
        for k in 0..<16 { _ = try f.mm.load(UInt8.self, from: b + UInt64(k) << 12) }
        let walks = f.mm.counters.walks.load(ordering: .relaxed)
        let visited = f.mm.counters.entriesVisited.load(ordering: .relaxed)
        var ops = CountWritable()
        let r = f.mm.mmapLock.withReadLock { f.mm.walkPageRange(a, b + 16 * 4096, &ops) }
        #expect(r == 0)
        #expect(ops.writable == 16 && ops.ptes == 16, "the read-only VMA was skipped by test_walk")
        #expect(f.mm.counters.walks.load(ordering: .relaxed) == walks + 1)
        #expect(f.mm.counters.entriesVisited.load(ordering: .relaxed) == visited + 16 + 1, "16 PTEs and one PMD")
        f.finish()
    }

    @Test("a callback returning -EBUSY ends the walk; the restarting walk resumes from the address it gives")
    func restart() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 32 * 4096, protection: .readWrite)
        for k in 0..<32 { try f.mm.store(UInt8(1), at: a + UInt64(k) << 12) }
        var ops = BusyOnce(busyAt: [a + 5 * 4096, a + 20 * 4096])
        let r = f.mm.mmapLock.withReadLock {
            f.mm.walkPageRangeRestarting(a, a + 32 * 4096, &ops) { $0.last }
        }
        #expect(r == 0)
        #expect(f.mm.counters.walkRestarts.load(ordering: .relaxed) == 2)
        #expect(ops.seen.count == 32 && Set(ops.seen).count == 32, "every page seen exactly once")
        f.finish()
    }
}

/// Skips read-only VMAs and counts writable PTEs.
struct CountWritable: PageWalkOps {
    static var hasPmdEntry: Bool { false }
    static var hasPteEntry: Bool { true }
    static var hasPteHole: Bool { false }
    static var hasTestWalk: Bool { true }
    var writable = 0
    var ptes = 0

    mutating func testWalk(_ start: UInt64, _ end: UInt64, _ walk: inout PageWalk) -> Int32 {
        walk.vma!.isWritable ? 0 : 1
    }

    mutating func pteEntry(_ pte: EntrySlot, _ address: UInt64, _ next: UInt64, _ walk: inout PageWalk) -> Int32 {
        ptes += 1
        if pte.load().isWritable { writable += 1 }
        return 0
    }
}

/// Returns -EBUSY the first time it reaches each address in `busyAt`, recording `last` as hmm does.
struct BusyOnce: PageWalkOps {
    static var hasPmdEntry: Bool { false }
    static var hasPteEntry: Bool { true }
    static var hasPteHole: Bool { false }
    var busyAt: Set<UInt64>
    var last: UInt64 = 0
    var seen: [UInt64] = []

    mutating func pteEntry(_ pte: EntrySlot, _ address: UInt64, _ next: UInt64, _ walk: inout PageWalk) -> Int32 {
        if busyAt.remove(address) != nil {
            last = address
            return Errno.EBUSY
        }
        seen.append(address)
        return 0
    }
}
