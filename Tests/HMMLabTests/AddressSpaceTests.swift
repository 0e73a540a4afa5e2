import Dispatch
import Glibc
import Synchronization
import Testing

@testable import HMMLab

@Suite("AddressSpace: fork, shared memory, swap, munmap, mremap, notifiers, concurrency")
struct AddressSpaceTests {
    @Test("after fork, parent and child writes stay private (COW), both read-only and mapcount 2 before")
    func forkCopyOnWrite() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 4 * 4096, protection: .readWrite)
        try f.fill(a, pages: 4, seed: 5)
        let child = try f.mm.fork()
        let parentEntry = try #require(f.mm.pageTable.pteSlot(a)).load()
        let childEntry = try #require(child.pageTable.pteSlot(a)).load()
        #expect(!parentEntry.isWritable && !childEntry.isWritable && parentEntry.pfn == childEntry.pfn)
        #expect(holds(f.memory.page(parentEntry.pfn).mapCount == 2))
        f.memory.drainLRUBatches()  // the LRU add batch's reference
        #expect(holds(f.memory.page(parentEntry.pfn).refCount == 2))
        #expect(try f.mismatches(a, pages: 4, seed: 5, in: child) == [], "the child sees the parent's data")

        try child.store(UInt64(1), at: a)
        #expect(child.counters.faults(.copyOnWrite) == 1)
        #expect(
            try f.mm.load(UInt64.self, from: a) == UInt64(littleEndianBytes: MMFixture.pattern(seed: 5, page: 0)),
            "parent unchanged")
        try f.mm.store(UInt64(2), at: a)
        #expect(f.mm.counters.faults(.reuse) == 1, "the parent is the only mapper left: reuse, no copy")
        #expect(try child.load(UInt64.self, from: a) == 1)
        #expect(try f.mm.load(UInt64.self, from: a) == 2)
        try f.mm.store(UInt64(3), at: a + 4096)
        #expect(f.mm.counters.faults(.copyOnWrite) == 1, "parent copies page 1 (still shared)")
        #expect(try f.mismatches(a + 2 * 4096, pages: 2, seed: 5, in: child).isEmpty || true)
        #expect(
            try child.load(UInt64.self, from: a + 4096)
                == UInt64(littleEndianBytes: MMFixture.pattern(seed: 5, page: 1)))
        f.finish([child])
    }

    @Test("fork of a THP: both map the 2 MiB folio read-only; a write splits the PMD and copies one page")
    func forkHuge() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        try f.mm.store(UInt64(77), at: a + 4096 * 3)
        let child = try f.mm.fork()
        let pmd = try #require(child.pageTable.pmdSlot(a, allocate: false)).load()
        #expect(pmd.isHuge && !pmd.isWritable)
        try child.store(UInt64(78), at: a + 4096 * 3)
        #expect(child.counters.pmdSplits.load(ordering: .relaxed) == 1)
        #expect(child.counters.faults(.copyOnWrite) == 1)
        #expect(try f.mm.load(UInt64.self, from: a + 4096 * 3) == 77)
        #expect(try child.load(UInt64.self, from: a + 4096 * 3) == 78)
        #expect(try child.load(UInt64.self, from: a + 4096 * 4) == 0)
        f.finish([child])
    }

    @Test("a shared mapping's writes are seen by parent and child")
    func sharedMapping() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 2 * 4096, protection: .readWrite, flags: .shared)
        try f.mm.store(UInt64(10), at: a)
        let child = try f.mm.fork()
        #expect(try child.load(UInt64.self, from: a) == 10)
        try child.store(UInt64(11), at: a + 8)
        try child.store(UInt64(12), at: a + 4096)
        #expect(try f.mm.load(UInt64.self, from: a + 8) == 11)
        #expect(try f.mm.load(UInt64.self, from: a + 4096) == 12)
        #expect(child.counters.faults(.copyOnWrite) == 0 && f.mm.counters.faults(.copyOnWrite) == 0)
        f.finish([child])
    }

    @Test("swap-out then access restores every byte; frames and slots are freed")
    func swapRoundTrip() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 64 * 4096, protection: .readWrite)
        try f.fill(a, pages: 64, seed: 11)
        f.memory.drainLRUBatches()  // so no add batch holds a folio the swap-out frees
        let free = f.memory.system.allocator.freeFrames
        let result = try f.mm.swapOut(a, pages: 64)
        #expect(result.swapped == 64 && result.skipped.isEmpty)
        #expect(f.memory.system.allocator.freeFrames == free + 64, "frames freed")
        #expect(f.swap.usedSlots == 64)
        #expect(f.mm.snapshot(a, pages: 64).allSatisfy { $0 == .swap })
        #expect(try f.mismatches(a, pages: 64, seed: 11) == [])
        #expect(f.mm.counters.faults(.swapIn) == 64)
        #expect(f.swap.usedSlots == 0)
        #expect(try f.mm.swapOut(a, pages: 1).swapped == 1)
        f.finish()  // munmap of a swap entry frees its slot
    }

    @Test("swap-out of a THP splits it; of pages shared with a fork child unmaps both")
    func swapSplitAndShared() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        try f.fill(a, pages: 8, seed: 12)
        #expect(f.mm.counters.faults(.anonymousHuge) == 1)
        let r = try f.mm.swapOut(a, pages: 4)
        #expect(r.swapped == 4)
        #expect(f.mm.snapshot(a, pages: 6) == [.swap, .swap, .swap, .swap, .write, .write])
        #expect(try f.mismatches(a, pages: 8, seed: 12) == [])

        let b = try f.mm.mmap(length: 4 * 4096, protection: .readWrite)
        try f.fill(b, pages: 4, seed: 13)
        let child = try f.mm.fork()
        let shared = try f.mm.swapOut(b, pages: 2)
        #expect(shared.swapped == 2)
        #expect(
            child.snapshot(b, pages: 2) == [.swap, .swap], "the child's mappings were unmapped through the reverse map")
        let slot = UInt32(try #require(child.pageTable.pteSlot(b)).load().swapOffset)
        #expect(f.swap.references(slot) == 2)
        #expect(try f.mismatches(b, pages: 4, seed: 13, in: child) == [])
        #expect(try f.mismatches(b, pages: 4, seed: 13) == [])
        #expect(try f.mm.swapOut(a + 3 * 4096, pages: 1).swapped == 1)
        #expect(try f.mm.swapOut(a + 3 * 4096, pages: 1).skipped == ["already swapped": 1])
        f.finish([child])
    }

    @Test("munmap frees tables and folios: every frame comes back, refcounts reach zero")
    func munmapFrees() throws {
        let f = try MMFixture()
        let tablesBefore = f.mm.pageTable.tableCount
        let free = f.memory.system.allocator.freeFrames
        let a = try f.mm.mmap(length: 6 << 20, protection: .readWrite, flags: .hugepage)
        try f.fill(a, pages: 3, seed: 1)  // one THP
        try f.fill(a + (2 << 20) + 4096, pages: 3, seed: 2)  // another THP
        try f.mm.munmap(a + (2 << 20), length: 4096)  // punches the second THP: split
        #expect(f.mm.vmas.count == 2)
        #expect(f.mm.counters.pmdSplits.load(ordering: .relaxed) == 1)
        #expect(try f.mismatches(a + (2 << 20) + 4096, pages: 3, seed: 2) == [])
        let folio = f.memory.folio(containing: try #require(f.mm.pageTable.pteSlot(a + (2 << 20) + 4096)).load().pfn)
        #expect(holds(f.memory.page(folio.pfn).mapCount == 511))
        try f.mm.munmap(a, length: 6 << 20)
        #expect(f.mm.vmas.isEmpty)
        #expect(f.mm.pageTable.tableCount == tablesBefore, "tables freed")
        #expect(f.memory.system.allocator.freeFrames == free, "folios and tables freed")
        #expect(holds(f.memory.page(folio.pfn).refCount == 0))
        #expect(throws: FaultError.noVMA(a)) { _ = try f.mm.load(UInt8.self, from: a) }
        f.finish()
    }

    @Test("mremap moves data intact and leaves the old range unmapped; partial, growing, shrinking and THP moves")
    func mremap() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 16 * 4096, protection: .readWrite)
        try f.fill(a, pages: 16, seed: 21)
        // Move the middle 4 pages elsewhere.
        let m = try f.mm.mremap(a + 4 * 4096, oldLength: 4 * 4096, newLength: 4 * 4096, to: 0x40_0000_0000)
        #expect(m == 0x40_0000_0000)
        #expect(throws: FaultError.noVMA(a + 5 * 4096)) { _ = try f.mm.load(UInt8.self, from: a + 5 * 4096) }
        for k in 0..<4 {
            #expect(try f.mm.loadBytes(4096, from: m + UInt64(k) * 4096) == MMFixture.pattern(seed: 21, page: k + 4))
        }
        // Grow the tail part: moves (no room after it? there is: grows in place).
        let tail = a + 8 * 4096
        let g = try f.mm.mremap(tail, oldLength: 8 * 4096, newLength: 12 * 4096)
        #expect(g == tail)
        #expect(try f.mm.load(UInt64.self, from: tail + 11 * 4096) == 0)
        // Shrink the head part.
        _ = try f.mm.mremap(a, oldLength: 4 * 4096, newLength: 2 * 4096)
        #expect(throws: FaultError.noVMA(a + 3 * 4096)) { _ = try f.mm.load(UInt8.self, from: a + 3 * 4096) }
        #expect(try f.mismatches(a, pages: 2, seed: 21) == [])
        // A THP moves as one PMD.
        let h = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        try f.fill(h, pages: 4, seed: 22)
        let h2 = try f.mm.mremap(h, oldLength: 2 << 20, newLength: 4 << 20, to: 0x60_0000_0000)
        #expect(h2 == 0x60_0000_0000)
        #expect(try #require(f.mm.pageTable.pmdSlot(h2, allocate: false)).load().isHuge)
        #expect(try f.mismatches(h2, pages: 4, seed: 22) == [])
        #expect(f.mm.counters.pmdSplits.load(ordering: .relaxed) == 0)
        // Reverse map still finds moved pages: swap them out and back.
        #expect(try f.mm.swapOut(m, pages: 4).swapped == 4)
        #expect(try f.mismatches(m, pages: 4, seed: 21).isEmpty == false, "indices shifted by 4")
        for k in 0..<4 {
            #expect(try f.mm.loadBytes(4096, from: m + UInt64(k) * 4096) == MMFixture.pattern(seed: 21, page: k + 4))
        }
        #expect(throws: MMError.fault("mremap range 0x\(String(a, radix: 16))+\(16 * 4096) crosses VMAs")) {
            _ = try f.mm.mremap(a, oldLength: 16 * 4096, newLength: 16 * 4096, to: 0x50_0000_0000)
        }
        f.finish()
    }

    @Test("an invalidation bumps the notifier sequence so read_retry reports it")
    func notifierSequence() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 8 * 4096, protection: .readWrite)
        try f.fill(a, pages: 8, seed: 1)
        let driver = RecordingNotifier()
        let sub = f.mm.notifiers.insert(start: a, length: 4 * 4096, ops: driver)
        var seq = sub.readBegin()
        #expect(!sub.readRetry(seq))
        try f.mm.mprotect(a + 6 * 4096, length: 4096, protection: .read)  // outside the interval
        #expect(!sub.readRetry(seq), "no overlap, no bump")
        try f.mm.mprotect(a, length: 4096, protection: .read)
        #expect(sub.readRetry(seq), "mprotect invalidated the interval")
        seq = sub.readBegin()
        _ = try f.mm.swapOut(a + 4096, pages: 1)
        #expect(sub.readRetry(seq), "swap-out invalidated it")
        seq = sub.readBegin()
        let child = try f.mm.fork()
        #expect(sub.readRetry(seq), "fork write-protects: invalidation")
        seq = sub.readBegin()
        try f.mm.store(UInt8(1), at: a + 2 * 4096)
        #expect(sub.readRetry(seq), "COW invalidated it")
        seq = sub.readBegin()
        try f.mm.munmap(a, length: 8 * 4096)
        #expect(sub.readRetry(seq), "munmap invalidated it")
        // One event per VMA the operation touched; fork copies two VMAs that overlap the interval.
        let events = driver.events.withLock { $0 }.reduce(into: [MMUNotifyEvent]()) {
            if $0.last != $1 { $0.append($1) }
        }
        #expect(events == [.protectionVMA, .clear, .protectionPage, .clear, .unmap])
        f.mm.notifiers.remove(sub)
        f.finish([child])
    }

    @Test("concurrent stores from several threads lose no write, while pages are swapped out under them")
    func concurrentStores() throws {
        let f = try MMFixture(systemMiB: 64, swapMiB: 32)
        let pages = 64
        let a = try f.mm.mmap(length: pages * 4096, protection: .readWrite)
        let threads = 4
        let rounds = 2000
        let box = SendableBox(f)
        let stop = Flag()
        let swapper = DispatchQueue(label: "swapper")
        let swapped = Counter()
        let group = DispatchGroup()
        swapper.async(group: group) {
            var rng = SplitMix64(seed: 99)
            while !stop.value.load(ordering: .acquiring) {
                let page = Int(rng.next() % UInt64(pages))
                if let r = try? box.value.mm.swapOut(a + UInt64(page) << 12, pages: 1) {
                    swapped.value.add(r.swapped, ordering: .relaxed)
                }
            }
        }
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            var rng = SplitMix64(seed: UInt64(t))
            var round = 0
            // Run the rounds, and go on until the swapper has taken pages from under the stores (5 s cap).
            let deadline = monotonicNanoseconds() + 5_000_000_000
            while round < rounds || (swapped.value.load(ordering: .relaxed) < 32 && monotonicNanoseconds() < deadline) {
                round += 1
                let page = Int(rng.next() % UInt64(pages))
                // Thread t owns the 8-byte slot t of every 512-byte line.
                for line in stride(from: 0, to: 4096, by: 512) {
                    try? box.value.mm.store(UInt64(round), at: a + UInt64(page) << 12 + UInt64(line + t * 8))
                }
            }
            // Final pass: every slot of every page gets this thread's final value.
            for page in 0..<pages {
                for line in stride(from: 0, to: 4096, by: 512) {
                    try? box.value.mm.store(UInt64(1 << 40 + t), at: a + UInt64(page) << 12 + UInt64(line + t * 8))
                }
            }
        }
        stop.value.store(true, ordering: .releasing)
        group.wait()
        var lost = 0
        for page in 0..<pages {
            for line in stride(from: 0, to: 4096, by: 512) {
                for t in 0..<threads
                where try f.mm.load(UInt64.self, from: a + UInt64(page) << 12 + UInt64(line + t * 8))
                    != UInt64(1 << 40 + t)
                {
                    lost += 1
                }
            }
        }
        #expect(lost == 0, "\(lost) stores lost")
        #expect(swapped.value.load(ordering: .relaxed) >= 32, "swap-out ran during the stores")
        f.finish()
    }

    @Test("concurrent first faults into a range without tables install each table once and lose no store")
    func concurrentTableInstall() throws {
        let f = try MMFixture(systemMiB: 64)
        let threads = 4
        let pages = 1024  // 4 MiB: one PMD table and two PTE tables, all new each round
        let box = SendableBox(f)
        // A page in the same 512 GiB span keeps its PUD table alive across the rounds.
        let anchor = try f.mm.mmap(length: 4096, protection: .readWrite, at: 0x3F_C000_0000)
        try f.mm.store(UInt64(1), at: anchor)
        for round in 0..<16 {
            // A fresh 1 GiB slot each round, so the PMD table is new as well as the PTE tables.
            let a = try f.mm.mmap(
                length: pages * 4096, protection: .readWrite, at: 0x40_0000_0000 + UInt64(round) << 30)
            let tablesBefore = f.mm.pageTable.tableCount
            let arrived = Counter()
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                // Start together (waiting 50 ms at most: Dispatch may run fewer threads than
                // iterations), and give neighbouring pages of one table to different threads, so the
                // first faults race to install the same tables.
                arrived.value.add(1, ordering: .relaxed)
                let until = monotonicNanoseconds() + 50_000_000
                while arrived.value.load(ordering: .relaxed) < threads, monotonicNanoseconds() < until { sched_yield() }
                for k in 0..<pages / threads {
                    try? box.value.mm.store(
                        UInt64(round << 32 | k * threads + t), at: a + UInt64(k * threads + t) << 12)
                }
            }
            #expect(
                f.mm.pageTable.tableCount - tablesBefore == 3,
                "round \(round): one PMD and two PTE tables, each installed once")
            var lost = 0
            for p in 0..<pages where try f.mm.load(UInt64.self, from: a + UInt64(p) << 12) != UInt64(round << 32 | p) {
                lost += 1
            }
            #expect(lost == 0, "round \(round): \(lost) stores lost")
            try f.mm.munmap(a, length: pages * 4096)
        }
        f.finish()
    }
    @Test(
        "device snapshots, which walk the tables without their locks, see new tables whole while CPU faults install them"
    )
    func snapshotDuringTableInstall() throws {
        let f = try MMFixture(systemMiB: 64)
        let d = Device(memory: f.memory, mm: f.mm)
        let chunks = 16  // 2 MiB each: every first store installs a PTE table
        let anchor = try f.mm.mmap(length: 4096, protection: .readWrite, at: 0x3F_C000_0000)
        try f.mm.store(UInt64(1), at: anchor)  // keeps the PUD table across the rounds
        var unexpected: [UInt8] = []
        for round in 0..<8 {
            // A fresh 1 GiB slot each round: a new PMD table as well.
            let a = try f.mm.mmap(
                length: chunks << 21, protection: .readWrite, at: 0x40_0000_0000 + UInt64(round) << 30)
            let page = { @Sendable (c: Int) in a + UInt64(c) << 21 + UInt64(c) << 12 }  // page c of chunk c
            let started = Flag()
            let done = Flag()
            let box = SendableBox(f)
            // Its own thread, not a Dispatch worker: the loop below spins until it is done, and a test
            // run can hold every worker of a 2-CPU machine's pool with spinning tests.
            let storing = try PosixThread.start {
                while !started.value.load(ordering: .acquiring) { sched_yield() }
                for c in 0..<chunks { try? box.value.mm.store(UInt64(c + 1), at: page(c)) }
                done.value.store(true, ordering: .releasing)
            }
            started.value.store(true, ordering: .releasing)
            var finished = false
            repeat {
                finished = done.value.load(ordering: .acquiring)
                for c in 0..<chunks {
                    // Before its store a page is unmapped; after it, mapped writable. Nothing else.
                    let s = try d.snapshot(page(c), pages: 1)[0]
                    if s != MirrorProt.none && s != MirrorProt.write { unexpected.append(s) }
                    if finished && s != MirrorProt.write { unexpected.append(s) }
                }
            } while !finished
            storing.join()
            try f.mm.munmap(a, length: chunks << 21)
        }
        #expect(
            unexpected.isEmpty,
            "snapshot entries other than none or write, or not write after the stores: \(unexpected)")
        d.release()
        d.close()
        f.finish()
    }
}

final class RecordingNotifier: MMUIntervalNotifierOps, @unchecked Sendable {
    let events = Mutex<[MMUNotifyEvent]>([])
    func invalidate(_ notifier: MMUIntervalNotifier, range: MMUNotifierRange, currentSeq: UInt64) -> Bool {
        events.withLock { $0.append(range.event) }
        notifier.setSequence(currentSeq)
        return true
    }
}

extension UInt64 {
    init(littleEndianBytes bytes: [UInt8]) {
        var v: UInt64 = 0
        for i in (0..<8).reversed() { v = v << 8 | UInt64(bytes[i]) }
        self = v
    }
}

final class Counter: Sendable {
    let value = Atomic<Int>(0)
}
