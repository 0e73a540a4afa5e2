import Glibc
import Synchronization

/// A swap slot range: the first slot and the order of the folio stored there (a 2 MiB folio takes an
/// aligned cluster of 512 slots, as THP swap-out does with `SWAPFILE_CLUSTER`).
///
/// The page-table layer encodes it in a swap entry (`swp_entry(type, offset)`); offset 0 is never
/// handed out (it holds the swap header in the kernel).
public struct SwapEntry: Hashable, Sendable, CustomStringConvertible {
    /// The first slot (`swp_offset`).
    var slot: UInt32
    /// The order of the stored folio: 0 or 9.
    public var order: Int

    public init(slot: UInt32, order: Int) {
        self.slot = slot
        self.order = order
    }

    public var description: String { "swap slot \(slot)" + (order > 0 ? " (order \(order))" : "") }
}

/// Why a swap operation failed.
public enum SwapError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No free slot (or no free aligned cluster for a 2 MiB folio).
    case full(order: Int)
    /// The folio still has references or mappings besides the caller's: it cannot be freed.
    case folioBusy(Folio, refcount: Int32, mapcount: Int32)
    /// No frame could be allocated to swap the folio back in.
    case noMemory(order: Int, AllocationFailure)

    public var description: String {
        switch self {
        case .full(let order): "swap area full: no free \(order == 0 ? "slot" : "aligned 512-slot cluster")"
        case .folioBusy(let folio, let refs, let maps):
            "\(folio) is busy (refcount \(refs), mapcount \(maps)): only an unmapped folio with one reference can be swapped out"
        case .noMemory(let order, let why): "no order-\(order) system frame to swap in (\(why))"
        }
    }
}

/// A Region that stands in for a swap device: swap-out copies a folio's bytes into slots and frees the
/// frame; swap-in allocates a frame, copies the bytes back and frees the slots.
///
/// Models the data movement of `swap_writepage()` and `swap_read_folio()` over a swap device of
/// 4 KiB slots, with the slot allocation of `folio_alloc_swap()` / `swap_free()`. Departures from the
/// kernel: there is no swap cache (a folio is freed at swap-out and the slots at swap-in, where the
/// kernel keeps both until reclaim); I/O is a `memcpy`, so "device" latency is memory bandwidth.
///
/// A slot is marked ``writing`` (the kernel's `SWAP_HAS_CACHE`) from its allocation until its data
/// is written. Swap-out replaces the page-table entries before it writes the data, as the kernel
/// does (`try_to_unmap`, then `pageout`); where the kernel's fault then finds the folio in the swap
/// cache, the lab's ``read(_:into:of:)`` waits for the write to finish, so a fault never reads a slot
/// before its data is there; and a fault pins the slot with a reference (``duplicate(_:)``) while it
/// reads it, so that no other swap-in frees it for reuse meanwhile.
public final class SwapArea: @unchecked Sendable {
    /// The slots' memory.
    public let region: Region
    /// Allocates slots: index = slot number.
    let slots: FrameAllocator
    /// References to each slot (`swap_map`): one per swap PTE; fork duplicates (`swap_duplicate`);
    /// plus ``writing`` while the slot's data is not written yet.
    private let counts: LabMutex<[UInt16]>
    /// The `swap_map` bit for "data not written yet" (`SWAP_HAS_CACHE`'s role here).
    static let writing: UInt16 = 0x8000

    /// A swap area of `bytes` (rounded up to 2 MiB), bound to `node`.
    public init(bytes: Int, node: Int = 0, backing: BackingRequest = .auto) throws(RegionError) {
        region = try Region(name: "swap", length: bytes, backing: backing, node: node)
        slots = FrameAllocator(frames: region.length / PageSize.bytes)
        counts = LabMutex(Array(repeating: 0, count: region.length / PageSize.bytes))
        // Slot 0 is the swap header: never handed out.
        guard case .success(0) = slots.allocate(order: 0) else {
            preconditionFailure("a fresh swap area has no slot 0")
        }
    }

    /// Slots in the area, including the reserved header slot.
    var slotCount: Int { slots.frameCount }

    /// Slots in use, not counting the header.
    var usedSlots: Int { slots.frameCount - slots.freeFrames - 1 }

    /// The address of a slot.
    @inlinable public func address(of slot: UInt32) -> UnsafeMutableRawPointer {
        region.base + Int(slot) << PageSize.shift
    }

    /// Allocates slots for a folio of `order`, with one reference each, marked ``writing`` until
    /// ``writeData(_:to:from:)`` (`folio_alloc_swap()`).
    public func allocate(order: Int) throws(SwapError) -> SwapEntry {
        guard case .success(let slot) = slots.allocate(order: order) else { throw .full(order: order) }
        counts.withLock { for i in 0..<(1 << order) { $0[slot + i] = 1 | Self.writing } }
        return SwapEntry(slot: UInt32(slot), order: order)
    }

    /// Copies a folio's bytes into its slots (`swap_writepage()`) and clears ``writing``; frees the
    /// slots if every reference was dropped meanwhile (the entries were zapped during the write).
    func writeData(_ folio: Folio, to entry: SwapEntry, from memory: PhysicalMemory) {
        precondition(
            folio.order == entry.order, "swap-out of an order-\(folio.order) folio into an order-\(entry.order) entry")
        RawBytes.copy(to: address(of: entry.slot), from: memory.address(of: folio.pfn), count: folio.byteCount)
        let unused = counts.withLock { c -> Bool in
            for i in 0..<(1 << entry.order) { c[Int(entry.slot) + i] &= ~Self.writing }
            return c[Int(entry.slot)] == 0
        }
        if unused { slots.free(Int(entry.slot), order: entry.order) }
    }

    /// Writes a folio's bytes to newly allocated slots and returns where they are; the folio is untouched.
    public func write(_ folio: Folio, from memory: PhysicalMemory) throws(SwapError) -> SwapEntry {
        let entry = try allocate(order: folio.order)
        writeData(folio, to: entry, from: memory)
        return entry
    }

    /// Copies the bytes of a swap entry into a folio of the same order. Models `swap_read_folio()`;
    /// first waits while a swap-out is still writing the entry (where the kernel's fault would find the
    /// folio in the swap cache and wait on its lock).
    public func read(_ entry: SwapEntry, into folio: Folio, of memory: PhysicalMemory) {
        precondition(
            folio.order == entry.order, "swap-in of an order-\(entry.order) entry into an order-\(folio.order) folio")
        while counts.withLock({ $0[Int(entry.slot)] & Self.writing != 0 }) { sched_yield() }
        RawBytes.copy(to: memory.address(of: folio.pfn), from: address(of: entry.slot), count: folio.byteCount)
    }

    /// Drops one reference to the slots of an entry and frees them at zero (`swap_free_nr`).
    public func free(_ entry: SwapEntry) {
        precondition(entry.slot != 0, "free of the swap header slot")
        let last = counts.withLock { c -> Bool in
            let s = Int(entry.slot)
            precondition(c[s] & ~Self.writing > 0, "free of unused \(entry)")
            for i in 0..<(1 << entry.order) { c[s + i] -= 1 }
            return c[s] == 0  // still being written: writeData frees it
        }
        if last { slots.free(Int(entry.slot), order: entry.order) }
    }

    /// Takes another reference to a slot (`swap_duplicate`, at fork).
    func duplicate(_ entry: SwapEntry) {
        counts.withLock { c in
            precondition(c[Int(entry.slot)] & ~Self.writing > 0, "duplicate of unused \(entry)")
            for i in 0..<(1 << entry.order) { c[Int(entry.slot) + i] += 1 }
        }
    }

    /// References to a slot (`swap_count`).
    public func references(_ slot: UInt32) -> Int { counts.withLock { Int($0[Int(slot)] & ~Self.writing) } }

    /// Lets the 512 slots of a 2 MiB entry be freed one by one (the swap side of splitting a THP that is
    /// in swap: one PTE swap entry per page).
    public func split(_ entry: SwapEntry) -> [SwapEntry] {
        precondition(entry.order == 9, "split of an order-0 swap entry")
        slots.splitAllocated(Int(entry.slot))
        return (0..<512).map { SwapEntry(slot: entry.slot + UInt32($0), order: 0) }
    }

    /// Swap-out: writes the folio to swap and frees its frame. The caller must hold the only reference
    /// and have unmapped it (the page-table layer replaces its PTEs with swap entries first).
    public func swapOut(_ folio: Folio, from memory: PhysicalMemory) throws(SwapError) -> SwapEntry {
        let head = memory.folioRef(folio)
        let refs = head.refCount
        let maps = head.mapCount
        guard refs == 1, maps == 0 else { throw .folioBusy(folio, refcount: refs, mapcount: maps) }
        let entry = try write(folio, from: memory)
        memory.put(folio)
        return entry
    }

    /// Swap-in: allocates a system folio of the entry's order, reads the bytes back and frees the slots.
    /// The caller gets the folio with one reference, not yet mapped.
    func swapIn(_ entry: SwapEntry, to memory: PhysicalMemory) throws(SwapError) -> Folio {
        let folio: Folio
        switch memory.allocate(.system, order: entry.order) {
        case .success(let f): folio = f
        case .failure(let why): throw .noMemory(order: entry.order, why)
        }
        read(entry, into: folio, of: memory)
        memory.folioRef(folio).set([.uptodate, .swapBacked])
        free(entry)
        return folio
    }
}
