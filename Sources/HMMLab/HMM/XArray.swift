import Synchronization

/// dmirror's device page table as the kernel keeps it: an xarray (`struct xarray`, include/linux/xarray.h,
/// lib/xarray.c) indexed by virtual page number, one 64-bit entry per page. ``DevicePageTable`` uses it
/// when the driver cost is paid (``Costs/driver``).
///
/// A radix tree of 64-slot nodes (`XA_CHUNK_SHIFT` 6): the root's shift is the smallest multiple of 6
/// that covers the highest index stored (`xas_expand` grows the tree upwards, `xas_shrink` lowers it),
/// so the lab's user addresses (from 64 GiB, index 2^24) give a tree of five levels. Every store and
/// erase walks from the root under the array's own spinlock (`xa_lock`, taken by `xa_store` and
/// `xa_erase` inside the driver's mutex); a store creates missing nodes on the way down (`xas_create`),
/// an erase frees a node whose last slot it empties and every ancestor that empties with it
/// (`xas_delete_node`). A load walks without the lock (`xa_load` under RCU).
///
/// Departures from the kernel: nodes come from a pool of this array (a free list, grown by doubling
/// when empty, so no Swift allocation per page) where the kernel allocates them from the `radix_tree_node`
/// slab (`GFP_ATOMIC` under the lock) and frees them after an RCU grace period; an entry is the lab's
/// page-table word, not a tagged pointer; no marks, multi-index entries or value entries; an index-0
/// entry is not kept in `xa_head` (the lab never maps page 0).
final class XArray: @unchecked Sendable {
    static let chunkShift: UInt64 = 6
    static let chunkSize = 64
    static let chunkMask: UInt64 = 63

    /// The nodes' slots, 64 per node: in a leaf node (shift 0) entries, above it child node indices + 1
    /// (0 = empty).
    private var slots: UnsafeMutablePointer<UInt64>
    /// Per node: `xa_node.count` (non-empty slots), `.shift`, `.offset` in the parent, and the parent
    /// (-1 for the root; the next free node while on the free list).
    private var counts: UnsafeMutablePointer<UInt8>
    private var shifts: UnsafeMutablePointer<UInt8>
    private var offsets: UnsafeMutablePointer<UInt8>
    private var parents: UnsafeMutablePointer<Int32>
    private var capacity: Int
    private var freeNodes: Int32 = -1
    /// `xa_head`: the root node, or -1 when the array is empty.
    private var root: Int32 = -1
    /// Nodes in the tree.
    private(set) var nodesInUse = 0
    /// `xa_lock`: a spinlock, as the kernel's.
    private let lockWord = Atomic<UInt32>(0)
    private let stats: DeviceStatistics

    init(stats: DeviceStatistics, capacity: Int = 64) {
        self.stats = stats
        self.capacity = 0
        slots = .allocate(capacity: 0)
        counts = .allocate(capacity: 0)
        shifts = .allocate(capacity: 0)
        offsets = .allocate(capacity: 0)
        parents = .allocate(capacity: 0)
        grow(to: capacity)
    }

    deinit {
        slots.deallocate()
        counts.deallocate()
        shifts.deallocate()
        offsets.deallocate()
        parents.deallocate()
    }

    // MARK: Operations

    /// `xa_load()`: the entry at `index`, 0 when none.
    func load(_ index: UInt64) -> UInt64 {
        guard root >= 0, index >> (UInt64(shifts[Int(root)]) &+ Self.chunkShift) == 0 else { return 0 }
        var node = Int(root)
        while true {
            let shift = UInt64(shifts[node])
            let v = slots[node &* Self.chunkSize &+ Int((index >> shift) & Self.chunkMask)]
            if shift == 0 || v == 0 { return v }
            node = Int(v &- 1)
        }
    }

    /// `xa_store()` of a non-zero entry: `xa_lock`, `xas_create` (expand the tree upwards if `index` is
    /// beyond it, then walk down from the root creating missing nodes), store, `xa_unlock`.
    func store(_ index: UInt64, _ entry: UInt64) {
        precondition(entry != 0, "xa_store of an empty entry; erase it")
        lock()
        expand(toCover: index)
        var node = Int(root)
        while shifts[node] > 0 {
            let offset = Int((index >> UInt64(shifts[node])) & Self.chunkMask)
            let slot = node &* Self.chunkSize &+ offset
            if slots[slot] == 0 {
                // The pool may move while allocating: index the slots after.
                let child = allocateNode(shift: shifts[node] &- UInt8(Self.chunkShift), parent: node, offset: offset)
                slots[slot] = UInt64(child) &+ 1
                counts[node] &+= 1
            }
            node = Int(slots[slot] &- 1)
        }
        let slot = node &* Self.chunkSize &+ Int(index & Self.chunkMask)
        if slots[slot] == 0 { counts[node] &+= 1 }
        slots[slot] = entry
        unlock()
        stats.xarrayStores.wrappingAdd(1, ordering: .relaxed)
    }

    /// `xa_erase()`: `xa_lock`, walk from the root, clear the entry, free the nodes it leaves empty
    /// (`xas_delete_node`) and lower the tree while its root holds only slot 0 (`xas_shrink`), `xa_unlock`.
    /// An index with no entry costs the walk only.
    func erase(_ index: UInt64) {
        lock()
        defer { unlock() }
        stats.xarrayErases.wrappingAdd(1, ordering: .relaxed)
        guard root >= 0, index >> (UInt64(shifts[Int(root)]) &+ Self.chunkShift) == 0 else { return }
        var node = Int(root)
        while shifts[node] > 0 {
            let v = slots[node &* Self.chunkSize &+ Int((index >> UInt64(shifts[node])) & Self.chunkMask)]
            if v == 0 { return }
            node = Int(v &- 1)
        }
        let slot = node &* Self.chunkSize &+ Int(index & Self.chunkMask)
        guard slots[slot] != 0 else { return }
        slots[slot] = 0
        counts[node] &-= 1
        deleteEmpty(from: node)
        shrink()
    }

    /// The first index in `[from, last]` with an entry (`xa_find()`), walking down from the root.
    func find(from: UInt64, last: UInt64) -> UInt64? {
        var index = from
        while index <= last, root >= 0 {
            let top = UInt64(shifts[Int(root)]) &+ Self.chunkShift
            guard top >= 64 || index >> top == 0 else { return nil }
            var node = Int(root)
            while true {
                let shift = UInt64(shifts[node])
                let first = Int((index >> shift) & Self.chunkMask)
                var offset = first
                while offset < Self.chunkSize && slots[node &* Self.chunkSize &+ offset] == 0 { offset &+= 1 }
                if offset == Self.chunkSize {
                    // Nothing left under this node: continue after it, from the root.
                    let span = shift &+ Self.chunkShift
                    guard span < 64, (index >> span) &+ 1 <= last >> span else { return nil }
                    index = ((index >> span) &+ 1) << span
                    break
                }
                if offset != first {
                    index =
                        (index >> (shift &+ Self.chunkShift)) << (shift &+ Self.chunkShift) | UInt64(offset) << shift
                }
                if shift == 0 { return index <= last ? index : nil }
                node = Int(slots[node &* Self.chunkSize &+ offset] &- 1)
            }
        }
        return nil
    }

    // MARK: Tree shape

    /// `xas_expand()`: a root high enough for `index`, adding levels on top of the current root.
    private func expand(toCover index: UInt64) {
        if root < 0 {
            var shift: UInt64 = 0
            while index >> shift >= UInt64(Self.chunkSize) { shift &+= Self.chunkShift }
            root = allocateNode(shift: UInt8(shift), parent: -1, offset: 0)
            return
        }
        while UInt64(shifts[Int(root)]) &+ Self.chunkShift < 64,
            index >> (UInt64(shifts[Int(root)]) &+ Self.chunkShift) != 0
        {
            let old = Int(root)
            let top = allocateNode(shift: shifts[old] &+ UInt8(Self.chunkShift), parent: -1, offset: 0)  // may move the pool
            slots[Int(top) &* Self.chunkSize] = UInt64(old) &+ 1
            counts[Int(top)] = 1
            parents[old] = top
            offsets[old] = 0
            root = top
        }
    }

    /// `xas_delete_node()`: frees `node` if it is empty, then each ancestor it leaves empty.
    private func deleteEmpty(from start: Int) {
        var node = start
        while counts[node] == 0 {
            let parent = parents[node]
            freeNode(node)
            if parent < 0 {
                root = -1
                return
            }
            slots[Int(parent) &* Self.chunkSize &+ Int(offsets[node])] = 0
            counts[Int(parent)] &-= 1
            node = Int(parent)
        }
    }

    /// `xas_shrink()`: while the root is an interior node whose only entry is slot 0, its child becomes the root.
    private func shrink() {
        while root >= 0 {
            let r = Int(root)
            guard shifts[r] > 0, counts[r] == 1, slots[r &* Self.chunkSize] != 0 else { return }
            let child = Int32(slots[r &* Self.chunkSize] &- 1)
            freeNode(r)
            parents[Int(child)] = -1
            root = child
        }
    }

    // MARK: Node pool

    private func allocateNode(shift: UInt8, parent: Int, offset: Int) -> Int32 {
        if freeNodes < 0 { grow(to: capacity * 2) }
        let node = freeNodes
        freeNodes = parents[Int(node)]
        (slots + Int(node) &* Self.chunkSize).update(repeating: 0, count: Self.chunkSize)
        counts[Int(node)] = 0
        shifts[Int(node)] = shift
        offsets[Int(node)] = UInt8(offset)
        parents[Int(node)] = Int32(parent)
        nodesInUse &+= 1
        return node
    }

    private func freeNode(_ node: Int) {
        parents[node] = freeNodes
        freeNodes = Int32(node)
        nodesInUse &-= 1
    }

    /// Grows the pool to `newCapacity` nodes, the new ones on the free list (off the per-page path: the
    /// pool doubles when empty and keeps what it grew to).
    private func grow(to newCapacity: Int) {
        let old = capacity
        func moved<T>(_ buffer: UnsafeMutablePointer<T>, per node: Int, _ fill: T) -> UnsafeMutablePointer<T> {
            let new = UnsafeMutablePointer<T>.allocate(capacity: newCapacity * node)
            new.moveInitialize(from: buffer, count: old * node)
            (new + old * node).initialize(repeating: fill, count: (newCapacity - old) * node)
            buffer.deallocate()
            return new
        }
        slots = moved(slots, per: Self.chunkSize, 0)
        counts = moved(counts, per: 1, 0)
        shifts = moved(shifts, per: 1, 0)
        offsets = moved(offsets, per: 1, 0)
        parents = moved(parents, per: 1, -1)
        for node in (old..<newCapacity).reversed() {
            parents[node] = freeNodes
            freeNodes = Int32(node)
        }
        capacity = newCapacity
    }

    // MARK: xa_lock

    @inline(__always) private func lock() {
        while !lockWord.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
            while lockWord.load(ordering: .relaxed) != 0 {}
        }
    }

    @inline(__always) private func unlock() { lockWord.store(0, ordering: .releasing) }
}
