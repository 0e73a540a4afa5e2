/// The device's own page table (dmirror's `xarray pt`): virtual page → the frame the device uses
/// (a system frame it mirrors, or a device frame after migration), with a write tag
/// (`DPT_XA_TAG_WRITE`). Stored as 4 KiB leaves of 512 entries per 2 MiB of address space, allocated
/// on first use and kept; lookups and updates allocate nothing. Guarded by the device's lock.
struct DevicePageTable: ~Copyable {
    static let present: UInt64 = 1 << 62
    static let write: UInt64 = 1 << 63
    private var leaves: [UInt64: UnsafeMutablePointer<UInt64>] = [:]
    /// The leaf used last and its key (`address >> 21`): a window's pages share one leaf, so most
    /// lookups and updates cost one compare instead of a hash lookup.
    private var lastKey: UInt64 = .max
    private var lastLeaf: UnsafeMutablePointer<UInt64>?

    init() {}

    deinit {
        for leaf in leaves.values { leaf.deallocate() }
    }

    /// The entry for `address`: 0 when unmapped, else `pfn | present [| write]`.
    func lookup(_ address: UInt64) -> UInt64 {
        if address >> 21 == lastKey, let lastLeaf { return lastLeaf[Int((address >> 12) & 511)] }
        guard let leaf = leaves[address >> 21] else { return 0 }
        return leaf[Int((address >> 12) & 511)]
    }

    mutating func set(_ address: UInt64, pfn: Pfn, writable: Bool) {
        leaf(for: address)[Int((address >> 12) & 511)] = Self.entry(pfn, writable: writable)
    }

    /// The entry ``set(_:pfn:writable:)`` stores.
    @inline(__always) static func entry(_ pfn: Pfn, writable: Bool) -> UInt64 {
        pfn.rawValue | present | (writable ? write : 0)
    }

    /// The leaf of 512 entries that holds `address` (index `(address >> 12) & 511`), allocated on first
    /// use: for a caller that sets a window's entries in one loop.
    mutating func leaf(for address: UInt64) -> UnsafeMutablePointer<UInt64> {
        let key = address >> 21
        if key == lastKey, let lastLeaf { return lastLeaf }
        let leaf: UnsafeMutablePointer<UInt64>
        if let existing = leaves[key] {
            leaf = existing
        } else {
            leaf = .allocate(capacity: 512)
            leaf.initialize(repeating: 0, count: 512)
            leaves[key] = leaf
        }
        lastKey = key
        lastLeaf = leaf
        return leaf
    }

    mutating func erase(_ start: UInt64, _ end: UInt64) {
        if (end - start) >> 21 > UInt64(leaves.count) {
            // A range wider than what is mapped (munmap of everything, exit): visit the leaves instead.
            for (key, leaf) in leaves where key << 21 < end && (key + 1) << 21 > start {
                for i in 0..<512 {
                    let a = key << 21 | UInt64(i) << 12
                    if a >= start && a < end { leaf[i] = 0 }
                }
            }
            return
        }
        var a = start & ~4095
        while a < end {
            let next = min(end, (a | ((1 << 21) - 1)) + 1)
            if let leaf = leaves[a >> 21] {
                for i in Int((a >> 12) & 511)..<Int((a >> 12) & 511) + Int((next - a + 4095) >> 12) { leaf[i] = 0 }
            }
            a = next
        }
    }

    mutating func eraseAll() {
        for leaf in leaves.values { leaf.update(repeating: 0, count: 512) }
    }

    /// Mapped entries (for tests and the invariant check).
    func entries() -> [(address: UInt64, entry: UInt64)] {
        var out: [(UInt64, UInt64)] = []
        for (key, leaf) in leaves {
            for i in 0..<512 where leaf[i] != 0 { out.append(((key << 21) | UInt64(i) << 12, leaf[i])) }
        }
        return out.sorted { $0.0 < $1.0 }.map { (address: $0.0, entry: $0.1) }
    }
}
