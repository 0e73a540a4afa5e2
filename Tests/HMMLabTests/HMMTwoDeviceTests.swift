import Testing

@testable import HMMLab

/// The `hmm2` fixtures of hmm-tests.c (two devices on one address space) and the THP tests.
@Suite("hmm-tests: two devices, copy-on-write in device memory, THP migration")
struct HMMTwoDeviceTests {

    @Test(
        "hmm2.migrate_mixed: PROT_NONE and a hole are -EINVAL; one 4-page call across three VMAs (read-only zero page, read-only page, two writable pages) migrates all four; another device's page is -ENOENT"
    )
    func migrate_mixed() throws {
        let f = try MMFixture()
        let d0 = Device(memory: f.memory, mm: f.mm, verify: true)
        let d1 = Device(memory: f.memory, mm: f.mm, verify: true)
        let p = try f.mm.mmap(length: 6 * 4096, protection: .none)
        func page(_ k: UInt64) -> UInt64 { p + k * 4096 }
        #expect(d1.migrateToDevice(p, pages: 6).errno == Errno.EINVAL, "a protected area")
        try f.mm.munmap(page(1), length: 4096)  // punch a hole after the first page
        #expect(d1.migrateToDevice(p, pages: 3).errno == Errno.EINVAL, "the VMA does not cover the range")
        try f.mm.mprotect(page(2), length: 4096, protection: .read)
        let val = try f.mm.load(Int32.self, from: page(2)) + 3  // page 2: the read-only zero page
        #expect(val == 3)
        try f.mm.mprotect(page(3), length: 4096, protection: .readWrite)
        try f.mm.store(val, at: page(3))
        try f.mm.mprotect(page(3), length: 4096, protection: .read)  // page 3: read-only
        try f.mm.mprotect(page(4), length: 2 * 4096, protection: .readWrite)
        try f.mm.store(val, at: page(4))
        try f.mm.store(val, at: page(5))  // pages 4-5: read-write
        let r = d1.migrateToDevice(page(2), pages: 4)
        #expect(r.errno == 0 && r.collected == 4 && r.migrated == 4, "\(r)")
        #expect(d0.migrateToDevice(page(5), pages: 1).errno == Errno.ENOENT, "page 5 is on device 1")
        f.check(devices: [d0, d1])
        #expect(try (2...5).map { try f.mm.load(Int32.self, from: page(UInt64($0))) } == [0, 3, 3, 3])
        f.finish(devices: [d0, d1])
    }

    @Test("hmm2.snapshot: one state per page without faulting")
    func snapshot() throws {
        let f = try MMFixture()
        let d0 = Device(memory: f.memory, mm: f.mm)
        let d1 = Device(memory: f.memory, mm: f.mm)
        let a = try f.mm.mmap(length: 7 * 4096, protection: .readWrite)
        try f.mm.munmap(a + 4096, length: 4096)  // page 1: hole
        try f.mm.mprotect(a, length: 4096, protection: .none)  // page 0: PROT_NONE
        _ = try f.mm.load(UInt8.self, from: a + 2 * 4096)  // page 2: zero page
        try f.fill(a + 3 * 4096, pages: 4, seed: 2)
        try f.mm.mprotect(a + 3 * 4096, length: 4096, protection: .read)  // page 3: read-only
        #expect(d0.migrateToDevice(a + 5 * 4096, pages: 1).errno == 0)  // page 5: on device 0
        #expect(d1.migrateToDevice(a + 6 * 4096, pages: 1).errno == 0)  // page 6: on device 1
        let s = try d0.snapshot(a, pages: 7)
        #expect(
            s == [
                MirrorProt.error, MirrorProt.error, MirrorProt.zero | MirrorProt.read, MirrorProt.read,
                MirrorProt.write,
                MirrorProt.devicePrivateLocal | MirrorProt.write, MirrorProt.none,
            ])
        f.finish(devices: [d0, d1])
    }

    @Test("hmm2.double_map: two devices read the same pages; one migrates them, the other faults them back")
    func double_map() throws {
        let f = try MMFixture()
        let d0 = Device(memory: f.memory, mm: f.mm, verify: true)
        let d1 = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 64
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 3)
        try f.mm.mprotect(a, length: n * 4096, protection: .read)
        #expect(try d0.read(a, pages: n).faults == 1)
        #expect(try d1.read(a, pages: n).faults == 1)
        #expect(d1.migrateToDevice(a, pages: n).errno == 0)
        let (bytes, faults) = try d0.read(a, pages: n)
        #expect(faults == 1, "device 0 faults device 1's pages back")
        for k in 0..<n { #expect(Array(bytes[k * 4096..<(k + 1) * 4096]) == MMFixture.pattern(seed: 3, page: k)) }
        f.finish(devices: [d0, d1])
    }

    @Test("hmm_cow_in_device: migrate, fork, parent writes: pages come back and are copied")
    func hmm_cow_in_device() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 32
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 4)
        #expect(d.migrateToDevice(a, pages: n).migrated == n)
        let child = try f.mm.fork()
        try f.fill(a, pages: n, seed: 5)
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .write })
        #expect(try f.mismatches(a, pages: n, seed: 4, in: child) == [], "the child keeps the old values")
        f.check(devices: [d], others: [child])
        f.finish(devices: [d], others: [child])
    }

    @Test("migrate_anon_huge_empty: an untouched PROT_READ 2 MiB range migrates as one device THP, mapped read-only")
    func migrate_anon_huge_empty() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: 2 << 20, protection: .read, flags: .hugepage)
        let r = d.migrateToDevice(a, pages: 512)
        #expect(r.errno == 0 && r.collected == 1 && r.migrated == 512)
        #expect(
            try #require(f.mm.pageTable.pmdSlot(a, allocate: false)).load().isDevicePrivate,
            "a device-private PMD entry")
        #expect(
            try d.snapshot(a, pages: 512).allSatisfy {
                $0 == MirrorProt.devicePrivateLocal | MirrorProt.read | MirrorProt.pmd
            })
        #expect(try d.read(a, pages: 512).bytes.allSatisfy { $0 == 0 })
        f.check(devices: [d])
        #expect(try f.mm.load(UInt64.self, from: a + 4096 * 100) == 0)
        f.finish(devices: [d])
    }

    /// The aligned 2 MiB inside a fresh `PROT_READ` mapping of two PMDs, with `MADV_HUGEPAGE` on it, as
    /// hmm-tests' huge-zero tests build their buffer.
    func hugeZeroBuffer(_ f: MMFixture) throws -> (buffer: UInt64, map: UInt64) {
        let size = UInt64(PageSize.pmdBytes)
        let buffer = try f.mm.mmap(length: 2 * PageSize.pmdBytes, protection: .read)
        let map = (buffer + size - 1) & ~(size - 1)
        try f.mm.madvise(map, length: PageSize.pmdBytes, hugepage: true)
        return (buffer, map)
    }

    /// Whether the PMD at `address` is the huge zero PMD, read-only.
    func isHugeZeroPMD(_ f: MMFixture, _ address: UInt64) -> Bool {
        guard let e = f.mm.pageTable.pmdSlot(address, allocate: false)?.load() else { return false }
        return f.memory.isHugeZeroPMD(e) && !e.isWritable
    }

    @Test(
        "migrate_anon_huge_zero: a read of a PROT_READ MADV_HUGEPAGE range maps the huge zero PMD; it migrates as one compound hole (cpages == npages), the device reads zeros, every page faults back zero"
    )
    func migrate_anon_huge_zero() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let (buffer, map) = try hugeZeroBuffer(f)
        #expect(try f.mm.load(Int32.self, from: map) == 0)  // initialize a read-only zero huge page
        #expect(isHugeZeroPMD(f, map) && f.mm.counters.faults(.hugeZeroPage) == 1, "the huge zero PMD")
        // dmirror_mkentry: is_zero_pfn is the 4 KiB zero page only, so the huge zero folio is NONE|READ|PMD.
        #expect(try d.snapshot(map, pages: 512).allSatisfy { $0 == MirrorProt.read | MirrorProt.pmd })
        let r = d.migrateToDevice(map, pages: 512)
        #expect(r.errno == 0 && r.collected == 1 && r.migrated == 512, "\(r)")
        #expect(d.deviceMappings().count == 512, "cpages == npages")
        #expect(
            try #require(f.mm.pageTable.pmdSlot(map, allocate: false)).load().isDevicePrivate,
            "a device-private PMD entry")
        #expect(try d.read(map, pages: 512).bytes.allSatisfy { $0 == 0 }, "what the device read")
        f.check(devices: [d])
        let zeros = [UInt8](repeating: 0, count: 4096)
        for k in 0..<512 { #expect(try f.mm.loadBytes(4096, from: map + UInt64(k) << 12) == zeros) }  // faulted back
        #expect(f.mm.snapshot(map, pages: 512).allSatisfy { $0 == .read })
        f.check(devices: [d])
        try f.mm.munmap(buffer, length: 2 * PageSize.pmdBytes)
        f.finish(devices: [d])
    }

    @Test(
        "migrate_anon_huge_fault: a populated THP migrates whole; every page reports PMD; a CPU fault brings it back whole"
    )
    func migrate_anon_huge_fault() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        try f.fill(a, pages: 512, seed: 6)
        #expect(f.mm.counters.faults(.anonymousHuge) == 1)
        let r = d.migrateToDevice(a, pages: 512)
        #expect(r.errno == 0 && r.collected == 1 && r.migrated == 512 && r.splitsAfterIsolation == 0)
        #expect(
            try d.snapshot(a, pages: 512).allSatisfy {
                $0 == MirrorProt.devicePrivateLocal | MirrorProt.write | MirrorProt.pmd
            })
        #expect(f.mm.snapshot(a, pages: 2) == [.devicePrivate, .devicePrivate])
        f.check(devices: [d])
        #expect(
            try f.mm.load(UInt64.self, from: a + 4096 * 9)
                == UInt64(littleEndianBytes: MMFixture.pattern(seed: 6, page: 9)))
        #expect(try #require(f.mm.pageTable.pmdSlot(a, allocate: false)).load().isHuge, "back as a THP")
        #expect(try f.mismatches(a, pages: 512, seed: 6) == [])
        f.finish(devices: [d])
    }

    @Test(
        "migrate_partial_unmap_fault: migrate 2 MiB (THP or MADV_NOHUGEPAGE), unmap half of it at offset 0, 1/4 or 1/2, fault the rest back",
        arguments: [false, true], [0, 1, 2])
    func migrate_partial_unmap_fault(thp: Bool, offsetQuarter: Int) throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let size = UInt64(PageSize.pmdBytes)
        let a = try f.filledPMDRange(hugepage: thp, seed: 7)
        #expect(d.migrateToDevice(a, pages: 512).migrated == 512)
        #expect(d.deviceMappings().count == 512, "cpages == npages")
        let hole = UInt64(offsetQuarter) * size / 4
        try f.mm.munmap(a + hole, length: PageSize.pmdBytes / 2)
        for k in 0..<512 {
            let at = UInt64(k) << 12
            if at >= hole && at < hole + size / 2 { continue }
            #expect(try f.mm.loadBytes(4096, from: a + at) == MMFixture.pattern(seed: 7, page: k))
        }
        f.finish(devices: [d])
    }

    @Test(
        "a partly unmapped device THP whose anon object a forked child shares faults back: split_folio unmaps and remaps through every address space of the object, as the kernel's does"
    )
    func partialUnmapFaultAfterFork() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.filledPMDRange(seed: 7)
        // The child keeps the object (one page of the buffer before the THP) but not the THP, as a
        // workload's cow child does.
        let child = try f.mm.fork()
        try child.munmap(a, length: PageSize.pmdBytes)
        #expect(d.migrateToDevice(a, pages: 512).migrated == 512)
        #expect(try #require(f.mm.pageTable.pmdSlot(a, allocate: false)).load().isDevicePrivate, "a device THP")
        try f.mm.munmap(a, length: PageSize.pmdBytes / 2)
        // A fault that cannot split the folio makes no progress and would retry for ever: give up after 10 s.
        let deadline = monotonicNanoseconds() + 10_000_000_000
        for k in 256..<512 {
            let at = pageAddress(a, k)
            _ = try f.mm.load(UInt64.self, from: at, signalPending: { monotonicNanoseconds() > deadline })
            #expect(try f.mm.loadBytes(PageSize.bytes, from: at) == MMFixture.pattern(seed: 7, page: k))
        }
        #expect(d.deviceMappings().isEmpty)
        f.finish(devices: [d], others: [child])
    }

    @Test(
        "migrate_remap_fault: mremap (MREMAP_FIXED, with and without MREMAP_DONTUNMAP) to offset 0, 1/4 or 1/2 past the buffer, before or after migrating 2 MiB (THP or MADV_NOHUGEPAGE), then fault back",
        arguments: [false, true], [false, true])
    func migrate_remap_fault(before: Bool, dontUnmap: Bool) throws {
        for thp in [false, true] {
            for offset in [0, PageSize.pmdBytes / 4, PageSize.pmdBytes / 2] {
                let f = try MMFixture()
                let d = Device(memory: f.memory, mm: f.mm, verify: true)
                let size = UInt64(PageSize.pmdBytes)
                let buffer = try f.mm.mmap(length: 8 * PageSize.pmdBytes, protection: .readWrite)
                let map = (buffer + size - 1) & ~(size - 1)
                try f.mm.madvise(map, length: PageSize.pmdBytes, hugepage: thp)
                try f.mm.munmap(map + size, length: 2 * PageSize.pmdBytes)
                try f.fill(map, pages: 512, seed: 8)
                let target = map + size + UInt64(offset)
                func remap() throws -> UInt64 {
                    try f.mm.mremap(
                        map, oldLength: PageSize.pmdBytes, newLength: PageSize.pmdBytes, to: target,
                        dontUnmap: dontUnmap)
                }
                var at = map
                if before { at = try remap() }
                let r = d.migrateToDevice(at, pages: 512)
                #expect(r.errno == 0 && r.migrated == 512, "thp \(thp) offset \(offset): \(r)")
                if !before { at = try remap() }
                #expect(at == target)
                #expect(try f.mismatches(at, pages: 512, seed: 8) == [], "thp \(thp) offset \(offset)")
                if dontUnmap {
                    // The old range is mapped still, by an empty VMA: it reads zero.
                    #expect(try f.mm.load(UInt64.self, from: map + 4096 * 3) == 0)
                }
                try f.mm.munmap(at, length: PageSize.pmdBytes)
                f.finish(devices: [d])
            }
        }
    }

    @Test(
        "migrate_anon_huge_err: the device fails 2 MiB allocations, so the THP is split and moves as 4 KiB pages",
        arguments: Device.SplitPolicy.allCases)
    func migrate_anon_huge_err(policy: Device.SplitPolicy) throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true, splitPolicy: policy)
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        try f.fill(a, pages: 512, seed: 9)
        d.setAllocationFailure(FailureInjection(order9: 1))
        let r = d.migrateToDevice(a, pages: 512)
        #expect(r.errno == 0 && r.migrated == 512)
        if policy == .afterIsolation {
            #expect(r.splitsAfterIsolation == 1 && r.splitsBeforeCollect == 0)
        } else {
            #expect(r.splitsBeforeCollect == 1 && r.splitsAfterIsolation == 0)
        }
        #expect(try d.snapshot(a, pages: 512).allSatisfy { $0 == MirrorProt.devicePrivateLocal | MirrorProt.write })
        f.check(devices: [d])
        #expect(
            try f.mm.load(UInt64.self, from: a + 4096 * 3)
                == UInt64(littleEndianBytes: MMFixture.pattern(seed: 9, page: 3)))
        // Part 2: a THP on the device, then system memory fails 2 MiB allocations on the way back.
        d.setAllocationFailure(.none)
        let b = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        try f.fill(b, pages: 512, seed: 10)
        #expect(d.migrateToDevice(b, pages: 512).collected == 1)
        f.memory.system.allocator.setFailureInjection(FailureInjection(order9: 1))
        let back = d.migrateToSystem(b, pages: 512)
        f.memory.system.allocator.setFailureInjection(.none)
        #expect(back.migrated == 512 && back.splitsAfterIsolation == 1)
        #expect(try f.mismatches(b, pages: 512, seed: 10) == [])
        f.finish(devices: [d])
    }

    @Test(
        "migrate_anon_huge_zero_err: an empty PROT_READ THP range, then one read-faulted to the huge zero PMD, each with the 2 MiB device allocation failing, moves as 512 pages and faults back zero"
    )
    func migrate_anon_huge_zero_err() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let zeros = [UInt8](repeating: 0, count: 4096)
        for readFirst in [false, true] {
            let (buffer, map) = try hugeZeroBuffer(f)  // munmap and mmap again between the halves
            if readFirst {
                #expect(try f.mm.load(Int32.self, from: map) == 0)  // the zero THP page
                #expect(isHugeZeroPMD(f, map), "the huge zero PMD")
            }
            d.setAllocationFailure(FailureInjection(order9: 1))  // HMM_DMIRROR_FLAG_FAIL_ALLOC
            let r = d.migrateToDevice(map, pages: 512)
            d.setAllocationFailure(FailureInjection())
            #expect(r.errno == 0 && r.collected == 1 && r.migrated == 512, "\(r)")
            #expect(d.deviceMappings().count == 512, "cpages == npages")
            #expect(f.mm.snapshot(map, pages: 512).allSatisfy { $0 == .devicePrivate })
            #expect(try d.read(map, pages: 512).bytes.allSatisfy { $0 == 0 })
            f.check(devices: [d])
            if readFirst {
                for k in 0..<512 { #expect(try f.mm.loadBytes(4096, from: map + UInt64(k) << 12) == zeros) }  // every page faulted back
            } else {
                #expect(try f.mm.load(Int32.self, from: map + 2048 * 4) == 0)  // a single page faulted back
            }
            f.check(devices: [d])
            try f.mm.munmap(buffer, length: 2 * PageSize.pmdBytes)
        }
        f.finish(devices: [d])
    }
}
