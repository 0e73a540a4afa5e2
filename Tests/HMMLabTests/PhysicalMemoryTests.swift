import Dispatch
import Glibc
import Testing

@testable import HMMLab

@Suite("PhysicalMemory: pools, pfns, folios, the zero page")
struct PhysicalMemoryTests {
    @Test("pools are numbered by pfn, 2 MiB-aligned, with descriptors prepared on allocation")
    func layout() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 8 << 20, deviceBytes: 4 << 20, backing: .small))
        #expect(memory.system.firstPfn.rawValue % 512 == 0 && memory.device.firstPfn.rawValue % 512 == 0)
        #expect(memory.system.endPfn < memory.device.firstPfn, "a gap between the pools")
        #expect(memory.system.frameCount == 2048 && memory.device.frameCount == 1024)
        #expect(memory.system.node == memory.configuration.systemNode)
        #expect(memory.device.node == memory.configuration.deviceNode)

        guard case .success(let large) = memory.allocate(.device, order: 9) else {
            Issue.record("no device folio"); return
        }
        #expect(large.pfn.rawValue % 512 == 0)
        #expect(memory.pool(of: large.pfn)?.kind == .device)
        let head = memory.folioRef(large)
        #expect(head.flags == [.head, .zoneDevice])
        #expect(head.refCount == 1 && head.mapCount == 0)
        #expect(memory.page(large.pfn + 7).flags == [.tail, .zoneDevice])
        #expect(memory.folio(containing: large.pfn + 300) == large)

        guard case .success(let small) = memory.allocate(.system, order: 0) else {
            Issue.record("no system folio"); return
        }
        #expect(memory.page(small.pfn).flags == [])
        #expect(memory.folio(containing: small.pfn) == small)
        #expect(memory.pool(of: small.pfn)?.kind == .system)
        #expect(memory.pool(of: Pfn(3)) == nil)

        // Frames are real memory at distinct addresses.
        memset(memory.address(of: small.pfn), 0x5A, 4096)
        memset(memory.address(of: large.pfn), 0xC3, large.byteCount)
        #expect(memory.address(of: small.pfn).load(fromByteOffset: 4095, as: UInt8.self) == 0x5A)
        #expect(memory.bytes(of: large).allSatisfy { $0 == 0xC3 })

        let freeBefore = memory.device.allocator.freeFrames
        memory.folioRef(large).get()
        #expect(!memory.put(large), "one reference left")
        #expect(memory.put(large), "last reference frees")
        #expect(memory.device.allocator.freeFrames == freeBefore + 512)
        #expect(memory.page(large.pfn + 7).flags == [], "descriptors cleared on free")
        memory.put(small)
    }

    @Test("the zero page is reserved, zero-filled and never handed out")
    func zeroPage() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 2 << 20, deviceBytes: 2 << 20, backing: .small))
        let zero = memory.page(memory.zeroPage)
        #expect(holds(zero.test([.reserved, .zeroPage])))
        #expect(UnsafeRawBufferPointer(start: memory.address(of: memory.zeroPage), count: 4096).allSatisfy { $0 == 0 })
        var seen = 0
        while case .success(let f) = memory.allocate(.system, order: 0) {
            #expect(f.pfn != memory.zeroPage)
            seen += 1
        }
        #expect(seen == 511, "the zero page takes one frame of the first block")
    }

    @Test("bulk allocation fills order-0 frames under one lock")
    func bulk() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 2 << 20, deviceBytes: 4 << 20, backing: .small))
        var pfns = [Pfn](repeating: Pfn(0), count: 2000)
        let got = pfns.withUnsafeMutableBufferPointer {
            memory.allocateBulk(.device, count: 2000, into: $0.baseAddress!)
        }
        #expect(got == 1024, "the device pool has 1024 frames")
        #expect(Set(pfns.prefix(got)).count == got)
        #expect(pfns.prefix(got).allSatisfy { memory.page($0).refCount == 1 })
        for pfn in pfns.prefix(got) { memory.put(Folio(pfn: pfn, order: 0)) }
        #expect(memory.device.allocator.freeBlocks == 2)
    }

    @Test("descriptor overhead stays under 2% of the memory modelled")
    func overhead() throws {
        let memory = try PhysicalMemory(.configurationForDefaultRun)
        let fraction = Double(memory.descriptorBytes) / Double(memory.modelledBytes)
        #expect(fraction < 0.02, "descriptors take \(fraction * 100)%")
        // Page tables add 8 bytes per mapped 4 KiB page plus upper levels: 0.2% more at most.
        #expect(fraction + 8.0 / 4096 * 1.01 < 0.02)
    }

    @Test(
        "a one-node machine says once that device memory shares the node",
        .enabled(if: NUMA.nodesWithMemory().count == 1))
    func oneNodeNote() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 2 << 20, deviceBytes: 2 << 20, backing: .small))
        #expect(memory.configuration.deviceNode == memory.configuration.systemNode)
        #expect(memory.notes.filter { $0.contains("shares NUMA node") }.count == 1)
    }

    @Test("the default run's pools fit the hugetlb pages scripts/setup reserves")
    func setupReservation() throws {
        #expect(PhysicalMemory.Configuration.forRun(pages: 16384).hugePagesNeeded <= 160)
    }
}

extension PhysicalMemory.Configuration {
    static var configurationForDefaultRun: Self { .forRun(pages: 16384, backing: .small) }
}

@Suite("Pre-faulting keeps host page faults out of the model")
struct PrefaultTests {
    @Test("allocating frames and writing every byte of them takes no host page fault")
    func noHostFaults() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 8 << 20, deviceBytes: 2 << 20, backing: .small))
        let event = try PerfEvent(PerfEvents.resolve("page-faults"))
        var pfns = [Pfn](repeating: Pfn(0), count: 1024)
        var got = 0
        event.start()
        pfns.withUnsafeMutableBufferPointer { buffer in
            got = memory.allocateBulk(.system, count: 1024, into: buffer.baseAddress!)
            for pfn in buffer.prefix(got) { memset(memory.address(of: pfn), 0x77, PageSize.bytes) }
        }
        event.stop()
        let value = event.read()
        let faults = try #require(value)
        #expect(got == 1024)
        #expect(faults < 4, "\(faults) host page faults while writing 1024 pre-faulted frames")
        for pfn in pfns { memory.put(Folio(pfn: pfn, order: 0)) }
    }
}
