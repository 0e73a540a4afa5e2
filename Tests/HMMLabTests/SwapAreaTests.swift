import Dispatch
import Glibc
import Testing

@testable import HMMLab

@Suite("SwapArea: swap-out and swap-in preserve every byte")
struct SwapAreaTests {
    static func fill(_ bytes: UnsafeMutableRawBufferPointer, seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let words = bytes.bindMemory(to: UInt64.self)
        for i in words.indices { words[i] = rng.next() }
    }

    @Test("round trip of 4 KiB and 2 MiB folios", arguments: [0, 9])
    func roundTrip(order: Int) throws {
        // Three 2 MiB folios, beside the zero page's block and the huge zero folio's.
        let memory = try PhysicalMemory(.init(systemBytes: 10 << 20, deviceBytes: 2 << 20, backing: .small))
        let swap = try SwapArea(bytes: 8 << 20, backing: .small)
        var folios: [Folio] = []
        for _ in 0..<3 {
            guard case .success(let f) = memory.allocate(.system, order: order) else {
                Issue.record("no folio"); return
            }
            folios.append(f)
        }
        for (k, f) in folios.enumerated() { Self.fill(memory.bytes(of: f), seed: UInt64(k + 1)) }
        let freeBefore = memory.system.allocator.freeFrames
        var entries: [SwapEntry] = []
        for f in folios { entries.append(try swap.swapOut(f, from: memory)) }
        #expect(memory.system.allocator.freeFrames == freeBefore + 3 << order, "frames freed at swap-out")
        #expect(swap.usedSlots == 3 << order)
        if order == 9 { #expect(entries.allSatisfy { $0.slot % 512 == 0 }, "a 2 MiB folio takes an aligned cluster") }
        #expect(!entries.contains { $0.slot == 0 }, "slot 0 is the header")

        // Scribble over the freed frames so a stale read would show.
        for f in folios { memory.bytes(of: f).initializeMemory(as: UInt8.self, repeating: 0xEE) }
        for (k, entry) in entries.enumerated() {
            let back = try swap.swapIn(entry, to: memory)
            #expect(back.order == order)
            let expected = UnsafeMutableRawBufferPointer.allocate(byteCount: back.byteCount, alignment: 8)
            defer { expected.deallocate() }
            Self.fill(expected, seed: UInt64(k + 1))
            #expect(memory.bytes(of: back).elementsEqual(expected), "every byte of folio \(k) survives")
            #expect(holds(memory.page(back.pfn).test([.uptodate, .swapBacked])))
            memory.put(back)
        }
        #expect(swap.usedSlots == 0, "slots freed at swap-in")
    }

    @Test("a folio with other references or mappings is refused")
    func busyFolio() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 2 << 20, deviceBytes: 2 << 20, backing: .small))
        let swap = try SwapArea(bytes: 2 << 20, backing: .small)
        guard case .success(let f) = memory.allocate(.system, order: 0) else { Issue.record("no folio"); return }
        memory.folioRef(f).get()
        #expect(throws: SwapError.folioBusy(f, refcount: 2, mapcount: 0)) { _ = try swap.swapOut(f, from: memory) }
        #expect(swap.usedSlots == 0, "no slot leaked by the refusal")
        memory.put(f)
        memory.put(f)
    }

    @Test("a full swap area is reported, for single slots and for 2 MiB clusters")
    func full() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 8 << 20, deviceBytes: 2 << 20, backing: .small))
        let swap = try SwapArea(bytes: 2 << 20, backing: .small)
        guard case .success(let large) = memory.allocate(.system, order: 9) else { Issue.record("no folio"); return }
        #expect(throws: SwapError.full(order: 9)) { _ = try swap.write(large, from: memory) }
        var entries: [SwapEntry] = []
        while let e = try? swap.write(Folio(pfn: large.pfn, order: 0), from: memory) { entries.append(e) }
        #expect(entries.count == 511, "512 slots less the header")
        for e in entries { swap.free(e) }
        #expect(swap.usedSlots == 0)
        memory.put(large)
    }

    @Test(
        "a read of a slot still being written waits for the data; references dropped during the write free the slot after it"
    )
    func readWaitsForWrite() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 4 << 20, deviceBytes: 2 << 20, backing: .small))
        let swap = try SwapArea(bytes: 2 << 20, backing: .small)
        guard case .success(let source) = memory.allocate(.system, order: 0),
            case .success(let target) = memory.allocate(.system, order: 0)
        else { Issue.record("no folio"); return }
        Self.fill(memory.bytes(of: source), seed: 7)
        // Swap-out as AddressSpace.swapOut does it: the entry exists (and is in the page tables)
        // before the data is written.
        let entry = try swap.allocate(order: 0)
        memory.bytes(of: target).initializeMemory(as: UInt8.self, repeating: 0xEE)
        let reader = SendableBox((swap, memory, entry, target))
        let done = Flag()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            let (swap, memory, entry, target) = reader.value
            swap.read(entry, into: target, of: memory)
            done.value.store(true, ordering: .releasing)
        }
        usleep(50_000)
        #expect(holds(!done.value.load(ordering: .acquiring)), "the read waits while the slot is being written")
        swap.writeData(source, to: entry, from: memory)
        group.wait()
        #expect(memory.bytes(of: target).elementsEqual(memory.bytes(of: source)), "the read got the written data")
        swap.free(entry)
        #expect(swap.usedSlots == 0)

        // Every reference dropped while the data is written (the swap PTEs zapped): the slot stays
        // allocated until the write ends, then is freed.
        let zapped = try swap.allocate(order: 0)
        swap.free(zapped)
        #expect(swap.usedSlots == 1, "not freed under the write")
        swap.writeData(source, to: zapped, from: memory)
        #expect(swap.usedSlots == 0, "freed when the write ends")
        memory.put(source)
        memory.put(target)
    }
}
