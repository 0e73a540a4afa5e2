import Glibc
import Synchronization
import Testing

@testable import HMMLab

/// hmm-tests cases about the device's life and repeated or huge accesses: open_close,
/// anon_read_multiple, anon_write_huge, anon_teardown.
extension HMMTests {
    @Test("open_close: a device opened on an address space and closed leaves nothing behind")
    func open_close() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        f.finish(devices: [d])
    }

    @Test("anon_read_multiple: ten fresh buffers, each read by the device in one fault batch")
    func anon_read_multiple() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = Self.npages
        for c in 0..<10 {
            let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
            try f.fill(a, pages: n, seed: 100 + UInt64(c))
            let (bytes, faults) = try d.read(a, pages: n)
            #expect(faults == 1)
            for k in 0..<n {
                #expect(Array(bytes[k * 4096..<(k + 1) * 4096]) == MMFixture.pattern(seed: 100 + UInt64(c), page: k))
            }
            try f.mm.munmap(a, length: n * 4096)
        }
        f.finish(devices: [d])
    }

    @Test(
        "anon_write_huge: the device writes a MADV_HUGEPAGE 2 MiB block in one fault; it is a THP and the CPU sees the data"
    )
    func anon_write_huge() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm)
        let n = PageSize.pmdPages
        let buffer = try f.mm.mmap(length: 2 * n * 4096, protection: .readWrite)
        let map = (buffer + UInt64(PageSize.pmdBytes - 1)) & ~UInt64(PageSize.pmdBytes - 1)
        try f.mm.madvise(map, length: n * 4096, hugepage: true)
        var data: [UInt8] = []
        for k in 0..<n { data += MMFixture.pattern(seed: 4, page: k) }
        #expect(try d.write(map, bytes: data) == 1)
        #expect(try f.mismatches(map, pages: n, seed: 4) == [])
        #expect(
            try d.snapshot(map, pages: n).allSatisfy { $0 == MirrorProt.write | MirrorProt.pmd },
            "a PMD-mapped THP, writable")
        f.finish(devices: [d])
    }

    @Test(
        "anon_teardown: the device reads while another thread unmaps half the buffer: the read fails or reads the data; nothing leaks"
    )
    func anon_teardown() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = Self.npages
        var rng = SplitMix64(seed: 42)
        for c in 0..<10 {
            let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
            try f.fill(a, pages: n, seed: 200 + UInt64(c))
            let delay = UInt32(rng.next() % 32)
            let mm = f.mm
            guard
                let unmapper = PosixThread({
                    usleep(delay)
                    try? mm.munmap(a + UInt64(n / 2) << 12, length: n / 2 * 4096)
                })
            else {
                Issue.record("pthread_create failed")
                return
            }
            if let (bytes, faults) = try? d.read(a, pages: n) {
                #expect(faults == 1)
                for k in 0..<n {
                    #expect(
                        Array(bytes[k * 4096..<(k + 1) * 4096]) == MMFixture.pattern(seed: 200 + UInt64(c), page: k))
                }
            }
            unmapper.join()
            try f.mm.munmap(a, length: n / 2 * 4096)
        }
        f.finish(devices: [d])
    }
}

extension HMMTests {
    @Test(
        "benchmark_thp_migration: each size to 16 MiB, with MADV_HUGEPAGE and MADV_NOHUGEPAGE, migrates to the device and back a warm-up and 5 timed times (the kernel asserts each run returns 0), THP sizes whole; the 256 MiB size is bench thp-table's"
    )
    func benchmark_thp_migration() throws {
        let f = try MMFixture(systemMiB: 96, deviceMiB: 40)
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        for size in ThpTable.sizes.dropLast() {
            for thp in [true, false] {
                let pages = size / PageSize.bytes
                let a = try f.mm.mmap(length: size, protection: .readWrite)
                try f.mm.madvise(a, length: size, hugepage: thp)
                try f.fill(a, pages: pages, seed: UInt64(size))
                for _ in 0...5 {
                    let before = d.stats.hugeToDevice.load(ordering: .relaxed)
                    let there = d.migrateToDevice(a, pages: pages)
                    #expect(there.errno == 0 && there.migrated == pages, "\(size) bytes, THP \(thp): \(there)")
                    if thp {
                        #expect(d.stats.hugeToDevice.load(ordering: .relaxed) - before == size / PageSize.pmdBytes)
                    }
                    let back = d.migrateToSystem(a, pages: pages)
                    #expect(back.errno == 0 && back.migrated == pages, "\(size) bytes, THP \(thp): \(back)")
                }
                f.check(devices: [d])
                #expect(try f.mismatches(a, pages: pages, seed: UInt64(size)) == [])
                try f.mm.munmap(a, length: size)
            }
        }
        f.finish(devices: [d])
    }
}
