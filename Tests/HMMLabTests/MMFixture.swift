import Testing

@testable import HMMLab

/// Memory, swap and one address space for a test, with helpers to fill and check pages and a closing
/// check that no migration or device-private entry is left and every frame came back.
final class MMFixture {
    let memory: PhysicalMemory
    let swap: SwapArea
    let mm: AddressSpace
    let systemFreeAtStart: Int
    let deviceFreeAtStart: Int

    init(systemMiB: Int = 64, deviceMiB: Int = 8, swapMiB: Int = 16, costs: Costs = .all) throws {
        memory = try PhysicalMemory(
            .init(systemBytes: systemMiB << 20, deviceBytes: deviceMiB << 20, backing: .small, costs: costs))
        swap = try SwapArea(bytes: swapMiB << 20, backing: .small)
        systemFreeAtStart = memory.system.allocator.freeFrames
        deviceFreeAtStart = memory.device.allocator.freeFrames
        mm = try AddressSpace(memory: memory, swap: swap)
    }

    /// The bytes page `k` of a fill with `seed` holds.
    static func pattern(seed: UInt64, page k: Int) -> [UInt8] {
        var rng = SplitMix64(seed: seed &* 0x9E37_79B9 &+ UInt64(k))
        var bytes = [UInt8](repeating: 0, count: 4096)
        bytes.withUnsafeMutableBytes { b in
            let w = b.bindMemory(to: UInt64.self)
            for i in w.indices { w[i] = rng.next() }
        }
        return bytes
    }

    /// Writes a distinct pattern into every byte of `pages` pages.
    func fill(_ address: UInt64, pages: Int, seed: UInt64, in space: AddressSpace? = nil) throws {
        let target = space ?? mm
        for k in 0..<pages {
            try target.store(Self.pattern(seed: seed, page: k), at: address + UInt64(k) << 12)
        }
    }

    /// A 2 MiB-aligned 2 MiB range inside a fresh 4 MiB read-write mapping, `madvise`d as `hugepage`
    /// says and filled with the pattern of `seed`: a PMD-mapped THP when `hugepage`.
    func filledPMDRange(hugepage: Bool = true, seed: UInt64) throws -> UInt64 {
        let size = UInt64(PageSize.pmdBytes)
        let buffer = try mm.mmap(length: 2 * PageSize.pmdBytes, protection: .readWrite)
        let a = (buffer + size - 1) & ~(size - 1)
        try mm.madvise(a, length: PageSize.pmdBytes, hugepage: hugepage)
        try fill(a, pages: PageSize.pmdPages, seed: seed)
        return a
    }

    /// Pages whose bytes differ from the pattern.
    func mismatches(_ address: UInt64, pages: Int, seed: UInt64, in space: AddressSpace? = nil) throws -> [Int] {
        let target = space ?? mm
        var bad: [Int] = []
        for k in 0..<pages
        where try target.loadBytes(4096, from: address + UInt64(k) << 12) != Self.pattern(seed: seed, page: k) {
            bad.append(k)
        }
        return bad
    }

    /// No migration or device-private entry is left in any of `spaces`; after tearing them down every
    /// system and device frame is free again but the spaces' root tables, and the huge zero folio (never
    /// freed) is allocated still with its one reference.
    func finish(_ others: [AddressSpace] = [], sourceLocation: SourceLocation = #_sourceLocation) {
        for space in [mm] + others {
            let left = space.transientEntries()
            #expect(
                left.isEmpty, "entries left behind: \(left.map { "0x\(String($0.address, radix: 16)): \($0.entry)" })",
                sourceLocation: sourceLocation)
            space.teardown()
        }
        #expect(
            memory.system.allocator.freeFrames == systemFreeAtStart - 1 - others.count, "system frames leaked",
            sourceLocation: sourceLocation)
        #expect(
            memory.device.allocator.freeFrames == deviceFreeAtStart, "device frames leaked",
            sourceLocation: sourceLocation)
        #expect(swap.usedSlots == 0, "swap slots leaked", sourceLocation: sourceLocation)
        if let zero = memory.hugeZeroFolio {
            // Never freed: still allocated, one reference, no mapping (its mappings take none).
            let head = memory.folioRef(zero)
            #expect(
                !memory.system.allocator.isFree(zero.pfn.index - memory.system.firstPfn.index),
                "the huge zero folio was freed", sourceLocation: sourceLocation)
            #expect(
                holds(head.refCount == 1 && head.mapCount == 0), "the huge zero folio's counts moved",
                sourceLocation: sourceLocation)
        }
    }

    /// The invariants of the fixture's space and `others` with `devices` (no migration entry left,
    /// refcounts and mapcounts consistent, device and CPU page tables agreeing), and no copy that
    /// failed its verification.
    func check(devices: [Device], others: [AddressSpace] = [], sourceLocation: SourceLocation = #_sourceLocation) {
        let problems = Invariants.check([mm] + others, devices: devices)
        #expect(problems.isEmpty, "\(problems)", sourceLocation: sourceLocation)
        for d in devices {
            #expect(
                d.stats.verifyFailures.load(ordering: .relaxed) == 0, "copy verification failed",
                sourceLocation: sourceLocation)
        }
    }

    /// ``check(devices:others:sourceLocation:)``, then every device page released and each device
    /// closed (the notifier and the pagemap registry hold a device until it is closed), then
    /// ``finish(_:sourceLocation:)``.
    func finish(devices: [Device], others: [AddressSpace] = [], sourceLocation: SourceLocation = #_sourceLocation) {
        check(devices: devices, others: others, sourceLocation: sourceLocation)
        for d in devices {
            d.release()
            d.close()
        }
        finish(others, sourceLocation: sourceLocation)
    }
}
