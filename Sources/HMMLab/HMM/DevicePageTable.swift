/// The device's own page table (dmirror's `xarray pt`): virtual page → the frame the device uses
/// (a system frame it mirrors, or a device frame after migration), with a write tag
/// (`DPT_XA_TAG_WRITE`) or an atomic tag (`DPT_XA_TAG_ATOMIC`: a page made device-exclusive for the
/// device, which the device may read but, as in dmirror, not write without faulting it again).
/// Guarded by the device's lock (`dmirror->mutex`).
///
/// With the driver cost (``Costs/driver``) it is an ``XArray`` that every store and erase walks from
/// the root under `xa_lock`, as dmirror's `xa_store`/`xa_erase` calls do. Without it, the lab's own
/// cheap table: 4 KiB leaves of 512 entries per 2 MiB of address space, allocated on first use and
/// kept, and reached through a last-leaf cache. Either way lookups and updates allocate nothing per page.
struct DevicePageTable: ~Copyable {
    static let present: UInt64 = 1 << 62
    static let write: UInt64 = 1 << 63
    static let atomic: UInt64 = 1 << 61
    static let tags: UInt64 = present | write | atomic

    /// The frame an entry maps (`xa_untag_pointer`).
    @inline(__always) static func pfn(of entry: UInt64) -> Pfn { Pfn(rawValue: entry & ~tags) }
    /// The xarray, when the driver cost is paid.
    private let xarray: XArray?
    private var leaves: [UInt64: UnsafeMutablePointer<UInt64>] = [:]
    /// The leaf used last and its key (`pmdNumber(address)`): a window's pages share one leaf, so most
    /// lookups and updates cost one compare instead of a hash lookup.
    private var lastKey: UInt64 = .max
    private var lastLeaf: UnsafeMutablePointer<UInt64>?

    init(xarray: XArray? = nil) { self.xarray = xarray }

    deinit {
        for leaf in leaves.values { leaf.deallocate() }
    }

    /// The entry for `address`: 0 when unmapped, else `pfn | present [| write]`.
    func lookup(_ address: UInt64) -> UInt64 {
        if let xarray { return xarray.load(pageNumber(address)) }
        if pmdNumber(address) == lastKey, let lastLeaf { return lastLeaf[pteIndex(address)] }
        guard let leaf = leaves[pmdNumber(address)] else { return 0 }
        return leaf[pteIndex(address)]
    }

    /// `xa_store(&dmirror->pt, pfn, entry, GFP_ATOMIC)` with the driver cost.
    mutating func set(_ address: UInt64, pfn: Pfn, writable: Bool) {
        if let xarray { return xarray.store(pageNumber(address), Self.entry(pfn, writable: writable)) }
        leaf(for: address)[pteIndex(address)] = Self.entry(pfn, writable: writable)
    }

    /// `dmirror_atomic_map()`'s `xa_store` of the page tagged `DPT_XA_TAG_ATOMIC`.
    mutating func setAtomic(_ address: UInt64, pfn: Pfn) {
        let entry = pfn.rawValue | Self.present | Self.atomic
        if let xarray { return xarray.store(pageNumber(address), entry) }
        leaf(for: address)[pteIndex(address)] = entry
    }

    /// The entry ``set(_:pfn:writable:)`` stores.
    @inline(__always) static func entry(_ pfn: Pfn, writable: Bool) -> UInt64 {
        pfn.rawValue | present | (writable ? write : 0)
    }

    /// The leaf of 512 entries that holds `address` (index `pteIndex(address)`), allocated on first
    /// use: for a caller that sets a window's entries in one loop.
    mutating func leaf(for address: UInt64) -> UnsafeMutablePointer<UInt64> {
        precondition(xarray == nil, "the xarray has no leaves to hand out")
        let key = pmdNumber(address)
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

    /// `dmirror_do_update()`: every entry in `[start, end)` removed; with the driver cost
    /// `xa_for_each_range` + `xa_erase`, one find and one erase walk per entry present.
    mutating func erase(_ start: UInt64, _ end: UInt64) {
        if let xarray {
            guard end > start else { return }
            var index = pageNumber(start)
            let last = pageNumber(end - 1)
            while let found = xarray.find(from: index, last: last) {
                xarray.erase(found)
                index = found + 1
            }
            return
        }
        if pmdNumber(end - start) > UInt64(leaves.count) {
            // A range wider than what is mapped (munmap of everything, exit): visit the leaves instead.
            for (key, leaf) in leaves where pmdAddress(key) < end && pmdAddress(key + 1) > start {
                for i in 0..<PageSize.pmdPages {
                    let a = pageAddress(pmdAddress(key), i)
                    if a >= start && a < end { leaf[i] = 0 }
                }
            }
            return
        }
        var a = start & PageSize.mask
        while a < end {
            let next = min(end, (a | ~PageSize.pmdMask) + 1)
            if let leaf = leaves[pmdNumber(a)] {
                for i in pteIndex(a)..<pteIndex(a) + pageCount(a, next + PageSize.size - 1) { leaf[i] = 0 }
            }
            a = next
        }
    }

    /// `xa_erase` of `count` pages from `start`, present or not (`dmirror_devmem_fault_alloc_and_copy`);
    /// without the driver cost, ``erase(_:_:)``.
    mutating func erasePages(_ start: UInt64, count: Int) {
        guard let xarray else { return erase(start, pageAddress(start, count)) }
        for k in 0..<UInt64(count) { xarray.erase(pageNumber(start) + k) }
    }

    mutating func eraseAll() {
        if xarray != nil { return erase(0, 1 << 63) }
        for leaf in leaves.values { leaf.update(repeating: 0, count: PageSize.pmdPages) }
    }

    /// Mapped entries (for tests and the invariant check).
    func entries() -> [(address: UInt64, entry: UInt64)] {
        var out: [(UInt64, UInt64)] = []
        if let xarray {
            var index: UInt64 = 0
            while let found = xarray.find(from: index, last: pageNumber(.max)) {
                out.append((addressOfPage(found), xarray.load(found)))
                index = found + 1
            }
            return out.map { (address: $0.0, entry: $0.1) }
        }
        for (key, leaf) in leaves {
            for i in 0..<PageSize.pmdPages where leaf[i] != 0 { out.append((pageAddress(pmdAddress(key), i), leaf[i])) }
        }
        return out.sorted { $0.0 < $1.0 }.map { (address: $0.0, entry: $0.1) }
    }
}
