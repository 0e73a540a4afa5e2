import Testing

@testable import HMMLab

/// hmm-tests cases about device-exclusive access (`HMM_DMIRROR_EXCLUSIVE`, `HMM_DMIRROR_CHECK_EXCLUSIVE`):
/// exclusive, exclusive_mprotect, exclusive_cow, and what the model adds around them: a CPU read and a
/// CPU write each restore the PTE with the data intact, `hmm_range_fault` of another device faults the
/// entries back, a THP is split to PTEs first, munmap releases everything.
extension HMMTests {
    /// Page `k` of the kernel test's buffer: `int` `i` at index `i` of the buffer, plus `add`.
    static func ints(page k: Int, add: Int32 = 0) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 4096)
        bytes.withUnsafeMutableBytes { b in
            let w = b.bindMemory(to: Int32.self)
            for j in w.indices { w[j] = Int32(k * 1024 + j) + add }
        }
        return bytes
    }

    /// The kernel test's initialisation: `ptr[i] = i` over `pages` pages.
    func storeInts(_ mm: AddressSpace, _ a: UInt64, pages: Int) throws {
        for k in 0..<pages { try mm.store(Self.ints(page: k), at: a + UInt64(k) << 12) }
    }

    /// The kernel test's `ASSERT_EQ(ptr[i]++, i)` loop followed by its `ASSERT_EQ(ptr[i], i + 1)` loop,
    /// a page at a time: a CPU read and a CPU write of each page. Returns the pages that were wrong.
    func incrementInts(_ mm: AddressSpace, _ a: UInt64, pages: Int) throws -> [Int] {
        var bad: [Int] = []
        for k in 0..<pages {
            let at = a + UInt64(k) << 12
            if try mm.loadBytes(4096, from: at) != Self.ints(page: k) { bad.append(k) }
            try mm.store(Self.ints(page: k, add: 1), at: at)
        }
        for k in 0..<pages where try mm.loadBytes(4096, from: a + UInt64(k) << 12) != Self.ints(page: k, add: 1) {
            bad.append(k)
        }
        return bad
    }

    /// Each folio mapped once with only the mapping's reference, unlocked: what `dmirror_exclusive`
    /// leaves (the folio reference and lock `make_device_exclusive` returned are given back). The LRU
    /// add batches are drained first: a new folio's batch reference is not the test's subject.
    func expectOneMappingEach(
        _ f: MMFixture, _ a: UInt64, pages: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        f.memory.drainLRUBatches()
        for k in 0..<pages {
            let e = try #require(f.mm.pageTable.pteSlot(a + UInt64(k) << 12)).load()
            let head = f.memory.folioRef(containing: e.pfn)
            #expect(head.mapCount == 1 && head.refCount == 1 && !head.isLocked, sourceLocation: sourceLocation)
        }
    }

    @Test(
        "exclusive: the device maps the buffer for atomic access; CPU access faults each page back, data intact; access revoked"
    )
    func exclusive() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let n = Self.npages
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try storeInts(f.mm, a, pages: n)
        let (mirror, cpages) = try d.makeExclusive(a, pages: n)
        #expect(cpages == n)
        for k in 0..<n {
            #expect(Array(mirror[k * 4096..<(k + 1) * 4096]) == Self.ints(page: k), "what the device read")
        }
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .deviceExclusive })
        #expect(d.deviceMappings().count == n && d.deviceMappings().allSatisfy { $0.atomic && !$0.writable })
        try expectOneMappingEach(f, a, pages: n)
        f.check(devices: [d])
        #expect(throws: MirrorError.errno(Errno.EPERM)) { try d.checkExclusive(a, pages: n) }
        #expect(try incrementInts(f.mm, a, pages: n) == [], "fault pages back to system memory and check them")
        #expect(f.mm.counters.faults(.deviceExclusive) == n)
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .write })
        try d.checkExclusive(a, pages: n)  // atomic access revoked: 0
        f.check(devices: [d])
        f.finish(devices: [d])
    }

    @Test(
        "exclusive_mprotect: after mprotect(PROT_READ) the entries stay device-exclusive and a device write gets -EPERM"
    )
    func exclusive_mprotect() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let n = Self.npages
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try storeInts(f.mm, a, pages: n)
        let (mirror, cpages) = try d.makeExclusive(a, pages: n)
        #expect(cpages == n)
        for k in 0..<n { #expect(Array(mirror[k * 4096..<(k + 1) * 4096]) == Self.ints(page: k)) }
        try f.mm.mprotect(a, length: n * 4096, protection: .read)
        #expect(
            f.mm.snapshot(a, pages: n).allSatisfy { $0 == .deviceExclusive },
            "change_pte_range leaves device-exclusive entries")
        #expect(d.deviceMappings().isEmpty, "the mprotect invalidation dropped the device's mappings")
        f.check(devices: [d])
        var data: [UInt8] = []
        for k in 0..<n { data += Self.ints(page: k, add: 7) }
        #expect(throws: MirrorError.errno(Errno.EPERM)) { try d.write(a, bytes: data) }
        // A CPU read restores read-only PTEs (the VMA's permission), the data unchanged.
        for k in 0..<n { #expect(try f.mm.loadBytes(4096, from: a + UInt64(k) << 12) == Self.ints(page: k)) }
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .read })
        #expect(throws: FaultError.accessError(a, write: true)) { try f.mm.store(UInt8(1), at: a) }
        f.check(devices: [d])
        f.finish(devices: [d])
    }

    @Test(
        "exclusive_cow: fork restores the device-exclusive entries; parent and child then each increment their own copy"
    )
    func exclusive_cow() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let n = Self.npages
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try storeInts(f.mm, a, pages: n)
        let (_, cpages) = try d.makeExclusive(a, pages: n)
        #expect(cpages == n)
        let child = try f.mm.fork()
        #expect(
            f.mm.snapshot(a, pages: n).allSatisfy { $0 == .read }, "restored, then write-protected for copy-on-write")
        #expect(child.snapshot(a, pages: n).allSatisfy { $0 == .read })
        #expect(d.deviceMappings().isEmpty, "fork's invalidation dropped the device's mappings")
        f.check(devices: [d], others: [child])
        #expect(try incrementInts(child, a, pages: n) == [], "the child verifies copy-on-write independently")
        #expect(try incrementInts(f.mm, a, pages: n) == [], "the parent increments its own copy")
        for k in 0..<n {
            let at = a + UInt64(k) << 12
            #expect(
                try #require(f.mm.pageTable.pteSlot(at)).load().pfn
                    != (try #require(child.pageTable.pteSlot(at))).load().pfn)
        }
        f.check(devices: [d], others: [child])
        f.finish(devices: [d], others: [child])
    }

    @Test(
        "device-exclusive: a CPU read and a CPU write each restore one page's PTE, the bytes intact, the others stay exclusive"
    )
    func exclusiveCPUReadAndWrite() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let n = 16
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 31)
        _ = try d.makeExclusive(a, pages: n)
        f.check(devices: [d])
        // Read of page 3: restored writable (anon-exclusive, VM_WRITE), every byte as written.
        #expect(try f.mm.loadBytes(4096, from: a + 3 * 4096) == MMFixture.pattern(seed: 31, page: 3))
        var states = f.mm.snapshot(a, pages: n)
        #expect(
            states[3] == .write && states.enumerated().allSatisfy { $0.offset == 3 || $0.element == .deviceExclusive })
        #expect(
            !d.deviceMappings().contains { $0.address == a + 3 * 4096 },
            "the restore's invalidation dropped the device's page")
        f.check(devices: [d])
        // Write into page 9: restored, the store lands, the rest of the page intact.
        try f.mm.store(UInt64(0xDEAD_BEEF), at: a + 9 * 4096 + 128)
        var expected = MMFixture.pattern(seed: 31, page: 9)
        withUnsafeBytes(of: UInt64(0xDEAD_BEEF)) { for (i, b) in $0.enumerated() { expected[128 + i] = b } }
        #expect(try f.mm.loadBytes(4096, from: a + 9 * 4096) == expected)
        states = f.mm.snapshot(a, pages: n)
        #expect(states[9] == .write && states.filter { $0 == .deviceExclusive }.count == n - 2)
        #expect(f.mm.counters.faults(.deviceExclusive) == 2)
        #expect(d.deviceMappings().filter(\.atomic).count == n - 2)
        try expectOneMappingEach(f, a, pages: n)
        f.check(devices: [d])
        for k in 0..<n where k != 9 {
            #expect(try f.mm.loadBytes(4096, from: a + UInt64(k) << 12) == MMFixture.pattern(seed: 31, page: k))
        }
        f.finish(devices: [d])
    }

    @Test(
        "device-exclusive: another device's snapshot reports nothing; its hmm_range_fault faults the entries back and revokes the atomic mappings"
    )
    func exclusiveRangeFault() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let other = Device(memory: f.memory, mm: f.mm)
        let n = 32
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 32)
        _ = try d.makeExclusive(a, pages: n)
        #expect(try other.snapshot(a, pages: n).allSatisfy { $0 == MirrorProt.none }, "no fault requested: no flags")
        let (bytes, faults) = try other.read(a, pages: n)
        #expect(faults == 1)
        for k in 0..<n { #expect(Array(bytes[k * 4096..<(k + 1) * 4096]) == MMFixture.pattern(seed: 32, page: k)) }
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .write })
        try d.checkExclusive(a, pages: n)
        f.check(devices: [d, other])
        f.finish(devices: [d, other])
    }

    @Test(
        "device-exclusive: a THP is split to PTEs first (FOLL_SPLIT_PMD); munmap of the exclusive range frees everything"
    )
    func exclusiveHugeAndMunmap() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let n = PageSize.pmdPages
        let buffer = try f.mm.mmap(length: 2 * n * 4096, protection: .readWrite)
        let a = (buffer + UInt64(PageSize.pmdBytes - 1)) & ~UInt64(PageSize.pmdBytes - 1)
        try f.mm.madvise(a, length: n * 4096, hugepage: true)
        try f.fill(a, pages: n, seed: 33)
        #expect(try #require(f.mm.pageTable.pmdSlot(a, allocate: false)).load().isHuge)
        let (bytes, cpages) = try d.makeExclusive(a, pages: 64)
        #expect(cpages == 64 && Array(bytes[0..<4096]) == MMFixture.pattern(seed: 33, page: 0))
        #expect(!(try #require(f.mm.pageTable.pmdSlot(a, allocate: false)).load().isHuge), "the PMD was split")
        #expect(
            f.memory.folio(containing: try #require(f.mm.pageTable.pteSlot(a)).load().pfn).order == PageSize.pmdOrder,
            "the folio was not")
        #expect(f.mm.snapshot(a, pages: n).filter { $0 == .deviceExclusive }.count == 64)
        f.check(devices: [d])
        try f.mm.munmap(buffer, length: 2 * n * 4096)
        #expect(d.deviceMappings().isEmpty)
        f.check(devices: [d])
        // A second range made exclusive and unmapped without any CPU access.
        let b = try f.mm.mmap(length: 16 * 4096, protection: .readWrite)
        try f.fill(b, pages: 16, seed: 34)
        _ = try d.makeExclusive(b, pages: 16)
        try f.mm.munmap(b, length: 16 * 4096)
        f.check(devices: [d])
        f.finish(devices: [d])
    }

    @Test("device-exclusive: a read-only VMA gets -EFAULT from GUP FOLL_WRITE; a shared VMA -EOPNOTSUPP")
    func exclusiveRefused() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let a = try f.mm.mmap(length: 4 * 4096, protection: .read)
        #expect(throws: MirrorError.errno(Errno.EFAULT)) { _ = try d.makeExclusive(a, pages: 4) }
        let s = try f.mm.mmap(length: 4 * 4096, protection: .readWrite, flags: .shared)
        #expect(throws: MirrorError.errno(Errno.EOPNOTSUPP)) { _ = try d.makeExclusive(s, pages: 4) }
        #expect(f.mm.snapshot(s, pages: 4).allSatisfy { $0 != .deviceExclusive })
        f.check(devices: [d])
        try f.mm.munmap(s, length: 4 * 4096)
        f.finish(devices: [d])
    }

    @Test(
        "device-exclusive: migrate_vma collect skips the entries; a THP split on the way to the device unmaps them to migration entries and remaps them"
    )
    func exclusiveMigrate() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let small = try f.mm.mmap(length: 16 * 4096, protection: .readWrite)
        try f.fill(small, pages: 16, seed: 35)
        _ = try d.makeExclusive(small, pages: 16)
        let r = d.migrateToDevice(small, pages: 16)
        #expect(r.collected == 0 && r.migrated == 0, "not migratable: mpfn 0")
        #expect(f.mm.snapshot(small, pages: 16).allSatisfy { $0 == .deviceExclusive })
        f.check(devices: [d])
        // A PTE-mapped THP whose first 64 pages are device-exclusive: collect skips them, then splits
        // the folio at page 64; the split's unmap (try_to_migrate) replaces their entries with migration
        // entries like the others and its remap makes them present again, behind the collect walk, so
        // they stay in system memory (the device reports -ENOENT for them) and the rest migrates.
        let n = PageSize.pmdPages
        let buffer = try f.mm.mmap(length: 2 * n * 4096, protection: .readWrite)
        let a = (buffer + UInt64(PageSize.pmdBytes - 1)) & ~UInt64(PageSize.pmdBytes - 1)
        try f.mm.madvise(a, length: n * 4096, hugepage: true)
        try f.fill(a, pages: n, seed: 36)
        _ = try d.makeExclusive(a, pages: 64)
        d.splitPolicy = .beforeCollect
        let m = d.migrateToDevice(a, pages: n)
        #expect(
            m.splitsBeforeCollect == 1 && m.collected == n - 64 && m.migrated == n - 64 && m.errno == Errno.ENOENT,
            "\(m)")
        let states = f.mm.snapshot(a, pages: n)
        #expect(
            states[0..<64].allSatisfy { $0 == .read || $0 == .write }
                && states[64...].allSatisfy { $0 == .devicePrivate })
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: n, seed: 36) == [])
        #expect(try f.mismatches(small, pages: 16, seed: 35) == [])
        f.check(devices: [d])
        f.finish(devices: [d])
    }
}
