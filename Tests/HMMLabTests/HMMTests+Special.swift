import Testing

@testable import HMMLab

/// hmm-tests.c cases on pins, special and hugetlb mappings and MADV_FREE.
extension HMMTests {
    @Test(
        "hmm_gup_test: get_user_pages and FOLL_LONGTERM pins of device pages bring them back to system memory, intact")
    func hmm_gup_test() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 4
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 31)
        let r = d.migrateToDevice(a, pages: n)
        #expect(r.errno == 0 && r.collected == n && r.migrated == n)
        let (bytes, _) = try d.read(a, pages: n)
        for k in 0..<n { #expect(Array(bytes[k * 4096..<(k + 1) * 4096]) == MMFixture.pattern(seed: 31, page: k)) }
        // GUP_BASIC_TEST and GUP_FAST_BENCHMARK (FOLL_WRITE), PIN_FAST_BENCHMARK and
        // PIN_LONGTERM_BENCHMARK (FOLL_WRITE | FOLL_LONGTERM), one page each.
        let pages = [
            try f.mm.getUserPage(a, write: true), try f.mm.getUserPage(a + 4096, write: true),
            try f.mm.pinUserPage(a + 2 * 4096, longterm: true), try f.mm.pinUserPage(a + 3 * 4096, longterm: true),
        ]
        #expect(pages.allSatisfy { !f.memory.page($0).test(.zoneDevice) }, "every page is in system memory")
        pages.forEach(f.mm.unpinUserPage)
        #expect(f.mm.counters.faults(.devicePrivate) == n)
        #expect(try d.snapshot(a, pages: n) == Array(repeating: MirrorProt.write, count: n))
        #expect(try f.mismatches(a, pages: n, seed: 31) == [])
        f.finish(devices: [d])
    }

    @Test(
        "mixedmap: the dmirror file's VM_MIXEDMAP page is walked and reported read-only; a VM_PFNMAP range is HMM_PFN_ERROR; migrate_vma_setup refuses both"
    )
    func mixedmap() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let a = try d.mmapFile(pages: 1)
        #expect(try d.snapshot(a, pages: 1) == [MirrorProt.read])
        // Beyond the kernel's test: hmm_vma_walk_test refuses VM_PFNMAP (error without a fault,
        // -EFAULT with one), and migrate_vma_setup refuses VM_SPECIAL.
        let p = try f.mm.mmapSpecial(length: 4096, protection: .readWrite, flags: .pfnMap)
        #expect(try d.snapshot(p, pages: 1) == [MirrorProt.error])
        #expect(throws: MirrorError.errno(Errno.EFAULT)) { _ = try d.read(p, pages: 1) }
        #expect(d.migrateToDevice(a, pages: 1).errno == Errno.EINVAL)
        f.finish(devices: [d])
    }

    @Test(
        "migrate_anon_huge_free: MADV_FREE on a THP migrated to the device succeeds and leaves the device-private PMD")
    func migrate_anon_huge_free() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = PageSize.pmdPages
        let buffer = try f.mm.mmap(length: 2 * PageSize.pmdBytes, protection: .readWrite)
        let map = (buffer + UInt64(PageSize.pmdBytes - 1)) & ~UInt64(PageSize.pmdBytes - 1)
        try f.mm.madvise(map, length: PageSize.pmdBytes, hugepage: true)
        try f.fill(map, pages: n, seed: 32)
        let r = d.migrateToDevice(map, pages: n)
        #expect(r.errno == 0 && r.migrated == n)
        let (bytes, _) = try d.read(map, pages: n)
        for k in 0..<n { #expect(Array(bytes[k * 4096..<(k + 1) * 4096]) == MMFixture.pattern(seed: 32, page: k)) }
        try f.mm.madviseFree(map, length: PageSize.pmdBytes)
        // Beyond the kernel's test: madvise_free_huge_pmd skips a device-private PMD.
        #expect(try #require(f.mm.pageTable.pmdSlot(map, allocate: false)).load().isDevicePrivate)
        #expect(
            try d.snapshot(map, pages: n).allSatisfy {
                $0 == MirrorProt.devicePrivateLocal | MirrorProt.write | MirrorProt.pmd
            })
        f.check(devices: [d])
        try f.mm.munmap(buffer, length: 2 * PageSize.pmdBytes)
        f.finish(devices: [d])
    }

    @Test(
        "anon_write_hugetlbfs: the device writes a MAP_HUGETLB page in one fault and the CPU reads it; migrate_vma_setup refuses hugetlb"
    )
    func anon_write_hugetlbfs() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let n = PageSize.pmdPages
        let a = try f.mm.mmapHugetlb(length: PageSize.pmdBytes, protection: .readWrite)
        var data: [UInt8] = []
        for k in 0..<n { data += MMFixture.pattern(seed: 33, page: k) }
        #expect(try d.write(a, bytes: data) == 1)
        #expect(try f.mismatches(a, pages: n, seed: 33) == [])
        // Beyond the kernel's test: one huge PMD, and migrate_vma_setup's is_vm_hugetlb_page check.
        #expect(try #require(f.mm.pageTable.pmdSlot(a, allocate: false)).load().isHuge)
        #expect(d.migrateToDevice(a, pages: n).errno == Errno.EINVAL)
        try f.mm.munmap(a, length: PageSize.pmdBytes)
        f.finish(devices: [d])
    }

    @Test("compound: a hugetlb page snapshots as WRITE|PMD on every page, READ|PMD after mprotect(PROT_READ)")
    func compound() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let n = PageSize.pmdPages
        let a = try f.mm.mmapHugetlb(length: PageSize.pmdBytes, protection: .readWrite)
        try f.fill(a, pages: n, seed: 34)
        #expect(try d.snapshot(a, pages: n) == Array(repeating: MirrorProt.write | MirrorProt.pmd, count: n))
        // Beyond the kernel's test: a hugetlb page is never split (hugetlb_vm_op_may_split: -EINVAL).
        #expect(throws: MMError.self) { try f.mm.mprotect(a + 4096, length: 4096, protection: .read) }
        #expect(throws: MMError.self) { try f.mm.munmap(a, length: 4096) }
        try f.mm.mprotect(a, length: PageSize.pmdBytes, protection: .read)
        #expect(try d.snapshot(a, pages: n) == Array(repeating: MirrorProt.read | MirrorProt.pmd, count: n))
        f.check(devices: [d])
        try f.mm.munmap(a, length: PageSize.pmdBytes)
        f.finish(devices: [d])
    }

    @Test(
        "MADV_FREE on system memory: exclusive pages and a whole THP get clean entries and lose swapBacked; a swap entry is dropped with its slot"
    )
    func madviseFreeSystemMemory() throws {
        let f = try MMFixture()
        let small = try f.mm.mmap(length: 4 * 4096, protection: .readWrite)
        try f.fill(small, pages: 4, seed: 35)
        #expect(try f.mm.swapOut(small + 3 * 4096, pages: 1).swapped == 1)
        let buffer = try f.mm.mmap(length: 2 * PageSize.pmdBytes, protection: .readWrite)
        let map = (buffer + UInt64(PageSize.pmdBytes - 1)) & ~UInt64(PageSize.pmdBytes - 1)
        try f.mm.madvise(map, length: PageSize.pmdBytes, hugepage: true)
        try f.fill(map, pages: PageSize.pmdPages, seed: 36)
        try f.mm.madviseFree(small, length: 4 * 4096)
        try f.mm.madviseFree(map, length: PageSize.pmdBytes)
        for k in 0..<3 {
            let pte = try #require(f.mm.pageTable.pteSlot(small + UInt64(k) << 12)).load()
            #expect(pte.isPresent && !pte.isDirty)
            let swapBacked = f.memory.page(pte.pfn).test(.swapBacked)
            #expect(!swapBacked)
        }
        #expect(try #require(f.mm.pageTable.pteSlot(small + 3 * 4096)).load().isNone)
        #expect(f.swap.usedSlots == 0)
        let pmd = try #require(f.mm.pageTable.pmdSlot(map, allocate: false)).load()
        let hugeSwapBacked = f.memory.page(pmd.pfn).test(.swapBacked)
        #expect(pmd.isHuge && !pmd.isDirty && !hugeSwapBacked)
        #expect(throws: MMError.self) {
            try f.mm.madviseFree(
                try f.mm.mmapHugetlb(length: PageSize.pmdBytes, protection: .readWrite), length: PageSize.pmdBytes)
        }
        #expect(Invariants.check([f.mm], devices: []).isEmpty)
        f.finish()
    }
}
