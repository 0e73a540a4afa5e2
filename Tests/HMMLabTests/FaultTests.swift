import Dispatch
import Glibc
import Synchronization
import Testing

@testable import HMMLab

@Suite("Faults: handle_mm_fault for anonymous memory")
struct FaultTests {
    @Test("a read fault maps the zero page; a write fault a new zeroed page; a write on the zero page replaces it")
    func zeroAndAnonymous() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 4 * 4096, protection: .readWrite)
        #expect(try f.mm.load(UInt64.self, from: a) == 0)
        #expect(f.mm.snapshot(a, pages: 2) == [.zero, .none])
        #expect(f.mm.counters.faults(.zeroPage) == 1)
        try f.mm.store(UInt64(0xDEAD_BEEF), at: a + 4096 + 8)
        #expect(f.mm.counters.faults(.anonymous) == 1)
        #expect(try f.mm.load(UInt64.self, from: a + 4096 + 8) == 0xDEAD_BEEF)
        #expect(try f.mm.load(UInt64.self, from: a + 4096) == 0, "the rest of the new page is zero")
        try f.mm.store(UInt8(7), at: a + 100)
        #expect(f.mm.counters.faults(.anonymous) == 2, "write on the zero page")
        #expect(f.mm.snapshot(a, pages: 3) == [.write, .write, .none])
        let page = try #require(f.mm.pageTable.pteSlot(a)).load()
        let head = FolioRef(head: f.memory.page(page.pfn))
        #expect(holds(head.test([.anon, .anonExclusive])))
        #expect(holds(head.mapCount == 1 && head.refCount == 2), "the mapping's and the LRU add batch's")
        f.memory.drainLRUBatches()
        #expect(holds(head.mapCount == 1 && head.refCount == 1))
        f.finish()
    }

    @Test("a write fault in an aligned THP range maps a 2 MiB folio; a failed 2 MiB allocation falls back to 4 KiB")
    func hugeFault() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 4 << 20, protection: .readWrite, flags: .hugepage)
        try f.mm.store(UInt32(42), at: a + 12345)
        #expect(f.mm.counters.faults(.anonymousHuge) == 1)
        let pmd = try #require(f.mm.pageTable.pmdSlot(a, allocate: false)).load()
        #expect(pmd.isHuge && pmd.isWritable && pmd.pfn.rawValue % 512 == 0)
        #expect(f.mm.snapshot(a, pages: 512).allSatisfy { $0 == .write })
        #expect(try f.mm.load(UInt32.self, from: a + 12345) == 42)
        f.memory.system.allocator.setFailureInjection(FailureInjection(order9: 1))
        try f.mm.store(UInt32(43), at: a + (2 << 20) + 8)
        #expect(f.mm.counters.faults(.anonymous) == 1, "fell back to a 4 KiB page")
        #expect(f.mm.snapshot(a + (2 << 20), pages: 2) == [.write, .none])
        f.memory.system.allocator.setFailureInjection(.none)
        f.finish()
    }

    @Test("PROT_NONE and no VMA are errors; a write to a read-only mapping is an error")
    func accessErrors() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 4096, protection: .none)
        #expect(throws: FaultError.accessError(a, write: false)) { _ = try f.mm.load(UInt8.self, from: a) }
        #expect(throws: FaultError.noVMA(0x1000)) { _ = try f.mm.load(UInt8.self, from: 0x1000) }
        let r = try f.mm.mmap(length: 4096, protection: .read)
        #expect(try f.mm.load(UInt8.self, from: r) == 0)
        #expect(throws: FaultError.accessError(r, write: true)) { try f.mm.store(UInt8(1), at: r) }
        f.finish()
    }

    @Test("mprotect to read-only makes a write fault an error; PROT_NONE keeps the data; restoring works")
    func mprotect() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 8 * 4096, protection: .readWrite)
        try f.fill(a, pages: 8, seed: 1)
        try f.mm.mprotect(a + 4096, length: 2 * 4096, protection: .read)
        #expect(f.mm.vmas.count == 3, "split into three VMAs")
        #expect(throws: FaultError.accessError(a + 4096, write: true)) { try f.mm.store(UInt8(1), at: a + 4096) }
        try f.mm.store(UInt8(1), at: a)  // still writable around it
        try f.mm.mprotect(a, length: 8 * 4096, protection: .none)
        #expect(f.mm.snapshot(a, pages: 8).allSatisfy { $0 == .protNone })
        #expect(throws: FaultError.accessError(a + 3 * 4096, write: false)) {
            _ = try f.mm.load(UInt8.self, from: a + 3 * 4096)
        }
        try f.mm.mprotect(a, length: 8 * 4096, protection: .readWrite)
        #expect(f.mm.vmas.count == 1, "merged back")
        try f.mm.store(UInt8(0x5A), at: a + 2 * 4096)
        #expect(f.mm.counters.faults(.copyOnWrite) == 0, "exclusive pages are made writable, not copied")
        var expected = MMFixture.pattern(seed: 1, page: 2)
        expected[0] = 0x5A
        #expect(try f.mm.loadBytes(4096, from: a + 2 * 4096) == expected)
        #expect(try f.mismatches(a, pages: 8, seed: 1) == [0, 2], "only the two pages stored to differ")
        #expect(throws: MMError.noMemory("mprotect range 0x\(String(a + 8 * 4096, radix: 16)) is not mapped")) {
            try f.mm.mprotect(a, length: 9 * 4096, protection: .read)
        }
        f.finish()
    }

    @Test("a store to a page under migration waits and lands in the new page")
    func migrationEntryWait() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 4096, protection: .readWrite)
        try f.fill(a, pages: 1, seed: 3)
        let slot = try #require(f.mm.pageTable.pteSlot(a))
        let old = slot.load()
        let oldFolio = Folio(pfn: old.pfn, order: 0)
        // Start a migration by hand: lock the folio, install a writable migration entry.
        #expect(holds(f.memory.folioRef(oldFolio).tryLock()))
        slot.store(.migration(old.pfn, mode: .write, young: true, dirty: true))
        f.mm.removeRmap(oldFolio)
        guard case .success(let new) = f.memory.allocate(.system, order: 0) else { Issue.record("no frame"); return }
        let mover = SendableBox((f, slot, oldFolio, new, a))
        let done = Flag()
        // Its own thread, not a Dispatch worker: the store below waits on the migration entry, and a
        // test run can hold every worker of a 2-CPU machine's pool with spinning tests.
        let moving = try PosixThread.start {
            let (f, slot, oldFolio, new, a) = mover.value
            usleep(200_000)  // long enough for the store below to meet the migration entry even on a loaded machine
            memcpy(f.memory.address(of: new.pfn), f.memory.address(of: oldFolio.pfn), 4096)
            let vma = f.mm.vmas[0]
            f.mm.addNewAnonRmap(new, vma: vma, address: a)
            // Marked done before the entry is replaced and the lock that ends the wait is dropped: set
            // after them, a store arriving late (a slow or loaded machine: the thread-sanitizer build in
            // CI) could complete first and see it unset.
            done.value.store(true, ordering: .releasing)
            slot.store(.present(new.pfn, writable: true, dirty: true))
            f.memory.folioRef(oldFolio).unlock()
            f.memory.put(oldFolio)
        }
        try f.mm.store(UInt64(0x1122_3344), at: a + 64)
        moving.join()
        #expect(holds(done.value.load(ordering: .acquiring)), "the store waited for the migration")
        #expect(f.mm.counters.faults(.migrationWait) >= 1)
        #expect(slot.load().pfn == new.pfn)
        var expected = MMFixture.pattern(seed: 3, page: 0)
        withUnsafeBytes(of: UInt64(0x1122_3344)) { for i in 0..<8 { expected[64 + i] = $0[i] } }
        #expect(try f.mm.loadBytes(4096, from: a) == expected)
        f.finish()
    }

    @Test("a CPU access to a device-exclusive entry restores the PTE")
    func deviceExclusive() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 4096, protection: .readWrite)
        try f.fill(a, pages: 1, seed: 4)
        let slot = try #require(f.mm.pageTable.pteSlot(a))
        let pfn = slot.load().pfn
        let made = try f.mm.mmapLock.withReadLock { () throws(MMError) in try f.mm.makeDeviceExclusive(a, owner: 0) }
        f.mm.endDeviceExclusive(made.folio)
        #expect(made.page == pfn && slot.load() == .deviceExclusive(pfn))
        #expect(f.mm.snapshot(a, pages: 1) == [.deviceExclusive])
        try f.mm.store(UInt8(0xAB), at: a + 1)
        #expect(f.mm.counters.faults(.deviceExclusive) == 1)
        #expect(
            slot.load().mapsSame(as: .present(pfn, writable: true, dirty: true)), "same page, given back to the CPU")
        #expect(slot.load().isDirty, "dirty: the folio was, and the store made it so")
        var expected = MMFixture.pattern(seed: 4, page: 0)
        expected[1] = 0xAB
        #expect(try f.mm.loadBytes(4096, from: a) == expected)
        f.finish()
    }

    @Test("a device-private entry faults through the owner's migrate_to_ram")
    func devicePrivate() throws {
        let f = try MMFixture()
        let pagemap = TestPagemap(owner: 0xD1, memory: f.memory)
        f.memory.register(pagemap)
        defer { f.memory.unregister(owner: 0xD1) }
        let a = try f.mm.mmap(length: 2 * 4096, protection: .readWrite)
        try f.fill(a, pages: 2, seed: 9)
        try pagemap.moveToDevice(f.mm, address: a)
        #expect(f.mm.snapshot(a, pages: 2) == [.devicePrivate, .write])
        #expect(try f.mismatches(a, pages: 2, seed: 9) == [])
        #expect(f.mm.counters.faults(.devicePrivate) == 1)
        #expect(holds(pagemap.migrations.load(ordering: .relaxed) == 1))
        #expect(f.mm.snapshot(a, pages: 2) == [.write, .write])
        f.finish()
    }
}

/// A minimal device pagemap for the fault-path tests: moves one page to device memory by hand and back
/// in `migrateToRAM`. The HMM layer's Device does this through migrate_vma.
final class TestPagemap: DevicePagemap, @unchecked Sendable {
    let owner: UInt64
    let memory: PhysicalMemory
    let migrations = Atomic<Int>(0)

    init(owner: UInt64, memory: PhysicalMemory) {
        self.owner = owner
        self.memory = memory
    }

    func moveToDevice(_ mm: AddressSpace, address: UInt64) throws {
        guard case .success(let device) = memory.allocate(.device, order: 0) else {
            throw FaultError.outOfMemory(address)
        }
        memory.page(device.pfn).setPrivate(owner, ordering: .releasing)
        try mm.mmapLock.withReadLock { () throws in
            let slot = try #require(mm.pageTable.pteSlot(address))
            let lock = mm.pageTable.lock(tableOf: slot)
            let old = slot.load()
            memcpy(memory.address(of: device.pfn), memory.address(of: old.pfn), 4096)
            let vma = try #require(mm.vma(containing: address))
            mm.addNewAnonRmap(device, vma: vma, address: address)
            slot.store(.devicePrivate(device.pfn, writable: true))
            lock.unlock()
            let folio = Folio(pfn: old.pfn, order: 0)
            mm.removeRmap(folio)
            memory.put(folio)
        }
    }

    func migrateToRAM(_ mm: AddressSpace, address: UInt64, faultPage pfn: Pfn, throughPTE: Bool) throws(FaultError) {
        guard case .success(let folio) = memory.allocate(.system, order: 0) else { throw .outOfMemory(address) }
        guard let slot = mm.pageTable.pteSlot(address), let vma = mm.vma(containing: address) else {
            throw .sigbus(address, "gone")
        }
        let lock = mm.pageTable.lock(tableOf: slot)
        let old = slot.load()
        guard old.isDevicePrivate, old.pfn == pfn else {
            lock.unlock()
            memory.put(folio)
            return
        }
        memcpy(memory.address(of: folio.pfn), memory.address(of: pfn), 4096)
        mm.addNewAnonRmap(folio, vma: vma, address: address)
        slot.store(.present(folio.pfn, writable: old.isWritableDevicePrivate, dirty: true))
        lock.unlock()
        let device = Folio(pfn: pfn, order: 0)
        mm.removeRmap(device)
        memory.put(device)
        migrations.wrappingAdd(1, ordering: .relaxed)
    }
}

struct SendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

final class Flag: Sendable {
    let value = Atomic<Bool>(false)
}
