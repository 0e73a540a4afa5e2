import Testing

@testable import HMMLab

/// The driver cost (`--costs driver`): test_hmm's backing system page per device page
/// (`dmirror_devmem_alloc_page`, `dmirror_devmem_free`) and its xarray page table (`xa_store`, `xa_erase`).
@Suite("driver cost: dmirror's backing pages and xarray page table")
struct DriverCostTests {

    /// The counters the driver cost moves.
    struct Counts: Equatable {
        var backingAllocated = 0, backingFreed = 0, stores = 0, erases = 0
        init(_ d: Device) {
            backingAllocated = d.stats.backingPagesAllocated.load(ordering: .relaxed)
            backingFreed = d.stats.backingPagesFreed.load(ordering: .relaxed)
            stores = d.stats.xarrayStores.load(ordering: .relaxed)
            erases = d.stats.xarrayErases.load(ordering: .relaxed)
        }
        init(_ a: Int, _ f: Int, _ s: Int, _ e: Int) { (backingAllocated, backingFreed, stores, erases) = (a, f, s, e) }
    }

    @Test("dmirror_devmem_alloc_page: each device page has a backing system page, freed with the device page")
    func backingPages() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = HMMTests.npages
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 21)
        let free = f.memory.system.allocator.freeFrames
        #expect(d.migrateToDevice(a, pages: n).migrated == n)
        #expect(Counts(d) == Counts(n, 0, n, 0), "a backing page and an xa_store per page")
        #expect(f.memory.system.allocator.freeFrames == free, "the sources went back, the backing pages came out")
        for m in d.deviceMappings() {
            let data = f.memory.page(m.pfn).zoneDeviceData
            let backing = try #require(data)
            #expect(f.memory.system.contains(backing) && f.memory.page(backing).refCount == 1)
        }
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: n / 2, seed: 21) == [], "CPU faults bring half back")
        #expect(Counts(d).backingFreed == n / 2, "each freed device page freed its backing page")
        #expect(f.memory.system.allocator.freeFrames == free, "new system pages for the data, the backing pages back")
        f.check(devices: [d])
        #expect(try f.mismatches(a, pages: n, seed: 21) == [])
        #expect(Counts(d).backingFreed == n)
        f.finish(devices: [d])
    }

    @Test("xa_store per migrated page, xa_erase per page moved back, xa_erase per entry on invalidation")
    func xarrayStoresAndErases() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = HMMTests.npages
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 22)
        #expect(d.migrateToDevice(a, pages: n).migrated == n)
        #expect(d.migrateToSystem(a, pages: n / 2).migrated == n / 2)
        #expect(Counts(d) == Counts(n, n / 2, n, n / 2), "dmirror_devmem_fault_alloc_and_copy erases each page")
        #expect(d.deviceMappings().count == n / 2)
        try f.mm.munmap(a + UInt64(n / 2) << 12, length: n / 4 * 4096)
        #expect(Counts(d).erases == n / 2 + n / 4, "dmirror_do_update erases each entry the unmap covers")
        #expect(Counts(d).backingFreed == n / 2 + n / 4)
        #expect(d.deviceMappings().count == n / 4)
        #expect(try f.mismatches(a, pages: n / 2, seed: 22) == [])
        f.finish(devices: [d])
    }

    @Test("a 2 MiB migration: one 2 MiB backing folio, 512 xa_store; back: 512 xa_erase, the folio freed")
    func hugeMigration() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let a = try f.mm.mmap(length: 2 << 20, protection: .readWrite, flags: .hugepage)
        try f.fill(a, pages: 512, seed: 23)
        let r = d.migrateToDevice(a, pages: 512)
        #expect(r.collected == 1 && r.migrated == 512)
        #expect(Counts(d) == Counts(512, 0, 512, 0))
        let head = try #require(d.deviceMappings().first).pfn
        let data = f.memory.page(head).zoneDeviceData
        let backing = try #require(data)
        #expect(f.memory.page(backing).order == PageSize.pmdOrder)
        f.check(devices: [d])
        #expect(d.migrateToSystem(a, pages: 512).migrated == 512)
        #expect(Counts(d) == Counts(512, 512, 512, 512))
        #expect(try f.mismatches(a, pages: 512, seed: 23) == [])
        f.finish(devices: [d])
    }

    @Test("without the driver cost: no backing page, no xarray, same data and mappings")
    func costOff() throws {
        let f = try MMFixture(costs: [.flush, .lru])
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = HMMTests.npages
        let a = try f.mm.mmap(length: n * 4096, protection: .readWrite)
        try f.fill(a, pages: n, seed: 24)
        let free = f.memory.system.allocator.freeFrames
        #expect(d.migrateToDevice(a, pages: n).migrated == n)
        #expect(f.memory.system.allocator.freeFrames == free + n)
        #expect(d.deviceMappings().count == n)
        #expect(d.deviceMappings().allSatisfy { f.memory.page($0.pfn).zoneDeviceData == nil })
        f.check(devices: [d])
        #expect(d.migrateToSystem(a, pages: n / 2).migrated == n / 2)
        #expect(try f.mismatches(a, pages: n, seed: 24) == [])
        #expect(Counts(d) == Counts(0, 0, 0, 0))
        f.finish(devices: [d])
    }

    @Test("XArray: loads, stores, erases and finds agree with a dictionary; emptied, it frees every node")
    func xarrayModel() {
        let xa = XArray(stats: DeviceStatistics(), capacity: 2)
        var model: [UInt64: UInt64] = [:]
        var rng = SplitMix64(seed: 5)
        for step in 0..<20_000 {
            let index = (1 << 24) + rng.next() % 5000 + (step % 7 == 0 ? rng.next() % (1 << 30) : 0)
            if rng.next() % 3 == 0 {
                xa.erase(index)
                model[index] = nil
            } else {
                let entry = rng.next() | 1
                xa.store(index, entry)
                model[index] = entry
            }
            if step % 1000 == 0 {
                let lo = (1 << 24) + rng.next() % 5000
                let expected = model.keys.filter { $0 >= lo && $0 <= lo + 300 }.min()
                #expect(xa.find(from: lo, last: lo + 300) == expected)
            }
        }
        for (index, entry) in model { #expect(xa.load(index) == entry) }
        var found: [UInt64] = []
        var i: UInt64 = 0
        while let k = xa.find(from: i, last: .max >> 12) {
            found.append(k)
            i = k + 1
        }
        #expect(found == model.keys.sorted())
        for index in found { xa.erase(index) }
        #expect(xa.nodesInUse == 0 && xa.find(from: 0, last: .max >> 12) == nil)
    }
}
