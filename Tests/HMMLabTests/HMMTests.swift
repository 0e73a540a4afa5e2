import Glibc
import Testing

@testable import HMMLab

/// The kernel's HMM selftests (tools/testing/selftests/mm/hmm-tests.c) against the lab's dmirror.
/// Buffers are smaller than the kernel's 4 MiB where that changes nothing; every test ends with the
/// invariant check (no migration entry left, refcounts and mapcounts consistent, device and CPU page
/// tables agreeing) and with every frame back.
@Suite("hmm-tests: hmm_range_fault and migrate_vma through the dmirror device")
struct HMMTests {
    static let npages = 256

    @Test(
        "migrate_to_ram of a 2 MiB device folio with no 2 MiB system page: the unmapped split keeps the fault page's reference"
    )
    func migrateToRAMSplitKeepsFaultReference() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        try f.fill(a, pages: 512, seed: 11)
        let r = d.migrateOnFault(a, pages: 512, compound: true)
        #expect(r.errno == 0 && r.migrated == 512)
        #expect(try #require(f.mm.pageTable.pmdSlot(a, allocate: false)).load().isDevicePrivate)
        // No 2 MiB system page: migrate_to_ram falls back to 4 KiB pages and splits the unmapped device
        // folio (migrate_vma_split_unmapped_folio) while the fault path holds its lock and a reference.
        f.memory.system.allocator.setFailureInjection(FailureInjection(order9: 1))
        let expected = try #require(
            MMFixture.pattern(seed: 11, page: 5).withUnsafeBytes {
                $0.loadUnaligned(fromByteOffset: 64, as: UInt64.self)
            } as UInt64?)
        let v: UInt64 = try f.mm.load(from: a + 5 * 4096 + 64)
        f.memory.system.allocator.setFailureInjection(.none)
        #expect(v == expected)
        #expect(d.stats.pagesToSystem.load(ordering: .relaxed) == 512, "every page of the split folio moved back")
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: 512, seed: 11) == [])
        f.finish(devices: [d])
    }

    @Test("anon_read: the device reads through hmm_range_fault; a none page and the zero page read zero")
    func anon_read() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = Self.npages
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        _ = try f.mm.load(UInt8.self, from: a + 4096)  // page 1: zero page
        try f.fill(a + 2 * 4096, pages: n - 2, seed: 1)
        try f.mm.mprotect(a, length: n * 4096, protection: .read)
        let (bytes, faults) = try d.read(a, pages: n)
        #expect(faults == 1)
        #expect(bytes[0..<8192].allSatisfy { $0 == 0 })
        for k in 2..<n { #expect(Array(bytes[k * 4096..<(k + 1) * 4096]) == MMFixture.pattern(seed: 1, page: k - 2)) }
        f.finish(devices: [d])
    }

    @Test("anon_read_prot: a PROT_NONE buffer cannot be read by the device (-EFAULT)")
    func anon_read_prot() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let a = try f.mm.mmap(length: 16 * 4096, protection: .readWrite)
        try f.fill(a, pages: 16, seed: 2)
        try f.mm.mprotect(a, length: 16 * 4096, protection: .none)
        #expect(throws: MirrorError.errno(Errno.EFAULT)) { _ = try d.read(a, pages: 16) }
        #expect(d.deviceMappings().isEmpty)
        f.finish(devices: [d])
    }

    @Test("anon_write: the device writes and the CPU sees it")
    func anon_write() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let n = Self.npages
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        var data: [UInt8] = []
        for k in 0..<n { data += MMFixture.pattern(seed: 3, page: k) }
        #expect(try d.write(a, bytes: data) == 1)
        #expect(try f.mismatches(a, pages: n, seed: 3) == [])
        f.finish(devices: [d])
    }

    @Test("anon_write_prot: read-only: device read of the zero page works, write is -EPERM until mprotect")
    func anon_write_prot() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let a = try f.mm.mmap(length: 4 * 4096, protection: .read)
        let (bytes, faults) = try d.read(a, pages: 1)
        #expect(faults == 1 && bytes.allSatisfy { $0 == 0 })
        let data =
            MMFixture.pattern(seed: 4, page: 0) + MMFixture.pattern(seed: 4, page: 1)
            + MMFixture.pattern(seed: 4, page: 2) + MMFixture.pattern(seed: 4, page: 3)
        #expect(throws: MirrorError.errno(Errno.EPERM)) { try d.write(a, bytes: data) }
        try f.mm.mprotect(a, length: 4 * 4096, protection: .readWrite)
        #expect(try d.write(a, bytes: data) == 1)
        #expect(try f.mismatches(a, pages: 4, seed: 4) == [])
        f.finish(devices: [d])
    }

    @Test(
        "anon_write_child: after fork the child's device writes stay private", arguments: [false, true], [false, true])
    func anon_write_child(migrate: Bool, thp: Bool) throws {
        let f = try MMFixture()
        let parentDevice = Device(memory: f.memory, mm: f.mm, verify: true)
        // As the kernel's test: with THP, one PMD's worth of pages, MADV_HUGEPAGE at the aligned start
        // of a buffer twice that size.
        let n = thp ? PageSize.pmdPages : Self.npages
        let buffer = try f.mm.mmap(length: 2 * n * 4096, protection: .readWrite)
        let a = thp ? (buffer + UInt64(PageSize.pmdBytes - 1)) & ~UInt64(PageSize.pmdBytes - 1) : buffer
        if thp { try f.mm.madvise(a, length: n * 4096, hugepage: true) }
        try f.fill(a, pages: n, seed: 5)
        if migrate {
            #expect(parentDevice.migrateToDevice(a, pages: n).errno == 0)
            #expect(parentDevice.deviceMappings().count == n, "cpages == npages")
        }
        let child = try f.mm.fork()
        let childDevice = Device(memory: f.memory, mm: child, verify: true)
        #expect(try f.mismatches(a, pages: n, seed: 5, in: child) == [], "the child sees the parent's values")
        var data: [UInt8] = []
        for k in 0..<n { data += MMFixture.pattern(seed: 6, page: k) }
        #expect(try childDevice.write(a, bytes: data) == 1, "faults == 1")
        #expect(childDevice.deviceMappings().count == n, "cpages == npages")
        #expect(try f.mismatches(a, pages: n, seed: 6, in: child) == [])
        #expect(try f.mismatches(a, pages: n, seed: 5) == [], "the parent's data is unchanged (COW)")
        f.check(devices: [parentDevice, childDevice], others: [child])
        childDevice.release()
        childDevice.close()
        f.finish(devices: [parentDevice], others: [child])
    }

    @Test(
        "lab: migrating pages a fork child moved elsewhere (mremap) or unmapped: the reverse map finds each mapping once"
    )
    func migrateSharedAfterChildMremap() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 32
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 21)
        let child = try f.mm.fork()
        // The child moves pages 8..<24 (same object and page offsets, another address) and unmaps 0..<4.
        let moved = try child.mremap(a + 8 * 4096, oldLength: 16 * 4096, newLength: 16 * 4096, to: 0x40_0000_0000)
        try child.munmap(a, length: 4 * 4096)
        // migrate_vma_setup collects the parent's entries; try_to_migrate finds the child's through the
        // reverse map, at the old address for pages 4..<8 and 24..<32 and at the new one for 8..<24.
        let r = d.migrateToDevice(a, pages: n)
        #expect(r.errno == 0 && r.migrated == n)
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .devicePrivate })
        #expect(
            child.snapshot(moved, pages: 16).allSatisfy { $0 == .devicePrivate }, "the moved mappings follow the pages")
        #expect(child.snapshot(a + 4 * 4096, pages: 4).allSatisfy { $0 == .devicePrivate })
        #expect(child.snapshot(a + 24 * 4096, pages: 8).allSatisfy { $0 == .devicePrivate })
        f.check(devices: [d], others: [child])
        // The child reads its pages back at both addresses (device faults: migrate_to_ram for both spaces).
        for k in 8..<24 {
            #expect(
                try child.loadBytes(4096, from: moved + UInt64(k - 8) << 12) == MMFixture.pattern(seed: 21, page: k),
                "page \(k)")
        }
        for k in Array(4..<8) + Array(24..<32) {
            #expect(
                try child.loadBytes(4096, from: a + UInt64(k) << 12) == MMFixture.pattern(seed: 21, page: k),
                "page \(k)")
        }
        #expect(try f.mismatches(a, pages: n, seed: 21) == [])
        f.finish(devices: [d], others: [child])
    }

    @Test("anon_write_child_shared: in a shared mapping the child's device writes reach the parent")
    func anon_write_child_shared() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 16 * 4096, protection: .readWrite, flags: .shared)
        try f.fill(a, pages: 16, seed: 7)
        let child = try f.mm.fork()
        let childDevice = Device(memory: f.memory, mm: child)
        var data: [UInt8] = []
        for k in 0..<16 { data += MMFixture.pattern(seed: 8, page: k) }
        #expect(try f.mismatches(a, pages: 16, seed: 7, in: child) == [], "the child sees the parent's values")
        #expect(try childDevice.write(a, bytes: data) == 1, "faults == 1")
        #expect(childDevice.deviceMappings().count == 16, "cpages == npages")
        #expect(try f.mismatches(a, pages: 16, seed: 8) == [])
        f.finish(devices: [childDevice], others: [child])
    }

    @Test("migrate: anonymous memory moves to the device; the device reads it; the CPU faults it back")
    func migrate() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = Self.npages
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 9)
        let r = d.migrateToDevice(a, pages: n)
        #expect(r.errno == 0 && r.collected == n && r.migrated == n)
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .devicePrivate })
        #expect(try d.snapshot(a, pages: n).allSatisfy { $0 == MirrorProt.devicePrivateLocal | MirrorProt.write })
        let (bytes, faults) = try d.read(a, pages: n)
        #expect(faults == 0)
        for k in 0..<n { #expect(Array(bytes[k * 4096..<(k + 1) * 4096]) == MMFixture.pattern(seed: 9, page: k)) }
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: n, seed: 9) == [], "CPU faults bring every page back intact")
        #expect(f.mm.counters.faults(.devicePrivate) == n)
        #expect(d.stats.pagesVerified.load(ordering: .relaxed) >= 2 * n)
        f.finish(devices: [d])
    }

    @Test("migrate_fault: migrate, fault half back, migrate the mixed range again")
    func migrate_fault() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = Self.npages
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 10)
        // cmd.cpages after HMM_DMIRROR_MIGRATE_TO_DEV: the range's pages in the device page table
        // (dmirror_do_read over it), whether this call moved them or an earlier one did.
        func cpages() -> Int { d.deviceMappings().filter { $0.address >= a && $0.address < a + UInt64(n) << 12 }.count }
        #expect(d.migrateToDevice(a, pages: n).collected == n)
        #expect(cpages() == n)
        #expect(try f.mismatches(a, pages: n / 2, seed: 10) == [])  // the CPU faults the first half back
        let r = d.migrateToDevice(a, pages: n)
        #expect(r.errno == 0 && r.collected == n / 2, "only the half in system memory is collected")
        #expect(cpages() == n, "as the kernel asserts: cpages == npages")
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .devicePrivate })
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: n, seed: 10) == [])
        f.finish(devices: [d])
    }

    @Test("migrate_multiple: ten round trips, to the device and back by CPU faults")
    func migrate_multiple() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 64
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        for round in 0..<10 {
            try f.fill(a, pages: n, seed: UInt64(100 + round))
            #expect(d.migrateToDevice(a, pages: n).migrated == n)
            f.check(devices: [d])
            #expect(try f.mismatches(a, pages: n, seed: UInt64(100 + round)) == [])
        }
        f.finish(devices: [d])
    }

    @Test("migrate_release: release evicts the device's pages back to system memory")
    func migrate_release() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = Self.npages
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 11)
        #expect(d.migrateToDevice(a, pages: n).migrated == n)
        #expect(d.release() == n)
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .write || $0 == .read })
        #expect(f.mm.counters.faults(.devicePrivate) == 0)
        #expect(try f.mismatches(a, pages: n, seed: 11) == [])
        f.finish(devices: [d])
    }

    @Test("migrate_shared: shared anonymous memory does not migrate (-ENOENT)")
    func migrate_shared() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let a = try f.mm.mmap(length: 16 * 4096, protection: .readWrite, flags: .shared)
        try f.fill(a, pages: 16, seed: 12)
        #expect(d.migrateToDevice(a, pages: 16).errno == Errno.ENOENT)
        #expect(f.mm.snapshot(a, pages: 16).allSatisfy { $0 == .write })
        f.finish(devices: [d])
    }

    @Test(
        "migrate_on_fault (the RFC's test): a filled buffer, 64-page hmm_range_fault(REQ_FAULT|REQ_MIGRATE) windows; cpages == npages and the device reads the data"
    )
    func migrate_on_fault_rfc() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 1024  // HMM_BUFFER_SIZE
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 64)
        let r = d.migrateOnFault(a, pages: n, window: 64)  // PFNS_ARRAY_SIZE
        #expect(r.errno == 0 && r.migrated == n)
        #expect(r.walks == n / 64, "one hmm_range_fault per 64-page window")
        #expect(
            d.deviceMappings().filter { $0.address >= a && $0.address < a + UInt64(n) << 12 }.count == n,
            "cpages == npages")
        let (bytes, _) = try d.read(a, pages: n)
        for k in 0..<n {
            #expect(Array(bytes[k * 4096..<(k + 1) * 4096]) == MMFixture.pattern(seed: 64, page: k), "page \(k)")
        }
        f.check(devices: [d])
        f.finish(devices: [d])
    }

    @Test("lab: migrate_on_fault on untouched pages: one walk per window faults them in and migrates them")
    func migrate_on_fault() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 1024
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        let r = d.migrateOnFault(a, pages: n)
        #expect(r.errno == 0 && r.collected == n && r.migrated == n)
        #expect(r.walks == 2 && r.selfInvalidationRetries == 0, "one hmm_range_fault per 512-page window")
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .devicePrivate })
        f.check(devices: [d])
        #expect(try d.read(a, pages: n).bytes.allSatisfy { $0 == 0 })
        f.finish(devices: [d])
    }
}
