import Glibc
import Synchronization

/// The lab's physical memory: a system pool and a device pool of real frames numbered by pfn, a
/// page-descriptor array (`vmemmap`), the shared zero page and the huge zero folio.
///
/// pfn layout: the first 2 MiB block (pfns 0–511) is never backed, so a zero pfn is always a bug;
/// the system pool follows; a one-block gap; then the device pool; with several devices, each
/// further device pool after another one-block gap (each device's `dev_pagemap` covers its own pfn
/// range, as `memremap_pages` gives each its own). Descriptors cover every pfn below the last
/// pool's end, 32 bytes each, in their own ``Region`` on the system node.
///
/// Allocation (``allocate(_:order:)``) models `alloc_pages()` plus `prep_new_page()`/`prep_compound_page()`:
/// the frame allocator hands out a naturally aligned block and the descriptors of its frames are set up
/// (refcount 1 on the head, `PG_head` and the order on the head of a 2 MiB folio, tails marked,
/// `zone_device` on device frames). Freeing models `folio_put()` reaching zero and `free_pages_prepare()`:
/// the descriptors must show no mapping and no lock.
///
/// On a machine with one NUMA node both pools are on node 0: ``notes`` says so once, and the run records it.
public final class PhysicalMemory: @unchecked Sendable {
    /// What to build.
    public struct Configuration: Sendable, Equatable {
        public var systemBytes: Int
        public var deviceBytes: Int
        public var systemNode: Int
        public var deviceNode: Int
        /// The nodes of the device pools after the first (one per further device), in device order.
        var moreDeviceNodes: [Int] = []
        public var backing: BackingRequest
        /// The per-page costs every address space and device on this memory pays for real.
        public var costs: Costs

        /// - Parameters: sizes are rounded up to 2 MiB (`deviceBytes` per device pool); nodes must have memory.
        public init(
            systemBytes: Int, deviceBytes: Int, systemNode: Int = 0, deviceNode: Int? = nil,
            backing: BackingRequest = .auto, costs: Costs = .all,
            moreDeviceNodes: [Int] = []
        ) {
            self.moreDeviceNodes = moreDeviceNodes
            self.costs = costs
            self.systemBytes = systemBytes
            self.deviceBytes = deviceBytes
            self.systemNode = systemNode
            self.deviceNode = deviceNode ?? PhysicalMemory.defaultDeviceNode(systemNode: systemNode)
            self.backing = backing
        }
    }

    /// The system pool.
    public let system: MemoryPool
    /// The device pool (the first device's, with several).
    public let device: MemoryPool
    /// Every device pool, ``device`` first: one per device (`--devices`), each its own pfn range.
    public let devicePools: [MemoryPool]
    /// The descriptor array's memory.
    let descriptorRegion: Region
    /// The descriptors, indexed by pfn.
    public let descriptors: UnsafeMutablePointer<PageDescriptor>
    /// The shared zero page (`ZERO_PAGE(0)`): reserved, never freed, always zero.
    public let zeroPage: Pfn
    /// The huge zero folio (`huge_zero_folio`, mm/huge_memory.c): a 2 MiB, 2 MiB-aligned block of the
    /// system pool, reserved, never freed, always zero; nil when the pool had no free 2 MiB block at
    /// startup (`THP_ZERO_PAGE_ALLOC_FAILED`: read faults in THP ranges then fall back to 4 KiB).
    ///
    /// Modelled as 7.2's `CONFIG_PERSISTENT_HUGE_ZERO_FOLIO`: allocated once when the memory is made
    /// (`huge_zero_init`), and `mm_get_huge_zero_folio` takes no reference. Without that option the
    /// kernel counts one reference per mm that used it (`MMF_HUGE_ZERO_FOLIO`) and a shrinker frees it
    /// when the count drops to one; neither is modelled. Its mappings take no reference and no mapcount
    /// (the PMD is `pmd_mkspecial`, the folio not rmappable), as in the kernel.
    let hugeZeroFolio: Folio?
    /// `huge_zero_pfn`: the huge zero folio's first pfn, or pfn 0 (never backed, so never a mapped
    /// pfn: `HUGE_ZERO_UNSET_PFN`'s part) when there is none.
    public let hugeZeroPfn: Pfn
    /// One past the highest pfn.
    public let endPfn: Pfn
    /// Facts the run should state once (e.g. that the device pool shares the system node).
    public let notes: [String]
    /// The configuration it was built from.
    public let configuration: Configuration
    /// The per-page costs paid for real (``Configuration/costs``).
    public let costs: Costs
    /// The per-CPU LRU add batches and the lruvec locks (``LRUBatches``), used with the `lru` cost.
    public let lru = LRUBatches()

    /// Registered device pagemaps, by owner token.
    private let pagemaps = LabMutex<[UInt64: any DevicePagemap]>([:])

    /// Registers a device's pagemap (`memremap_pages`); its pages carry `pagemap.owner` in `private`.
    func register(_ pagemap: any DevicePagemap) {
        pagemaps.withLock { $0[pagemap.owner] = pagemap }
    }

    /// Removes a device's pagemap (`memunmap_pages`).
    func unregister(owner: UInt64) {
        pagemaps.withLock { _ = $0.removeValue(forKey: owner) }
    }

    /// The pagemap of a device-private frame (`page_pgmap(page)`), through the owner in its descriptor.
    func pagemap(of pfn: Pfn) -> (any DevicePagemap)? {
        let owner = folioRef(containing: pfn).deviceOwner
        return pagemaps.withLock { $0[owner] }
    }

    /// Bytes per descriptor.
    public static let descriptorSize = MemoryLayout<PageDescriptor>.stride

    /// The device node a run uses by default: the node with memory farthest from the system node by
    /// the distance table (``NodeTable/farthestNodeWithMemory(from:)``), else the system node itself.
    static func defaultDeviceNode(systemNode: Int) -> Int {
        NodeTable.read().farthestNodeWithMemory(from: systemNode)
    }

    /// Maps, binds and pre-faults both pools and the descriptor array.
    public init(_ configuration: Configuration) throws(RegionError) {
        self.configuration = configuration
        costs = configuration.costs
        let systemRegion = try Region(
            name: "system", length: configuration.systemBytes, backing: configuration.backing,
            node: configuration.systemNode)
        let block = FrameAllocator.blockFrames
        let systemFirst = Pfn(block)
        let systemFrames = systemRegion.length / PageSize.bytes
        system = MemoryPool(kind: .system, region: systemRegion, firstPfn: systemFirst)
        var pools: [MemoryPool] = []
        var next = systemFirst + systemFrames + block
        for (i, node) in ([configuration.deviceNode] + configuration.moreDeviceNodes).enumerated() {
            let region = try Region(
                name: i == 0 ? "device" : "device\(i)", length: configuration.deviceBytes,
                backing: configuration.backing, node: node)
            pools.append(MemoryPool(kind: .device, region: region, firstPfn: next))
            next = next + region.length / PageSize.bytes + block
        }
        devicePools = pools
        device = pools[0]
        endPfn = pools[pools.count - 1].endPfn

        // Descriptors: hugetlb pages go to the pools first; the array takes THP or 4 KiB pages.
        let descriptorBytes = endPfn.index * Self.descriptorSize
        let descriptorBacking: BackingRequest = configuration.backing == .small ? .small : .thp
        do {
            descriptorRegion = try Region(
                name: "vmemmap", length: descriptorBytes, backing: descriptorBacking, node: configuration.systemNode)
        } catch .backingUnavailable where descriptorBacking == .thp {
            descriptorRegion = try Region(
                name: "vmemmap", length: descriptorBytes, backing: .small, node: configuration.systemNode)
        }
        descriptors = descriptorRegion.base.bindMemory(to: PageDescriptor.self, capacity: endPfn.index)
        for i in 0..<endPfn.index { (descriptors + i).initialize(to: PageDescriptor()) }

        // The zero page: the system pool's first frame, reserved.
        guard case .success(let index) = system.allocator.allocate(order: 0) else {
            preconditionFailure("a fresh system pool has no free frame")
        }
        zeroPage = systemFirst + index
        RawBytes.zero(system.address(of: zeroPage), count: PageSize.bytes)
        let zero = PageRef(descriptors + zeroPage.index)
        zero.storeFlags(PageFlags.reserved.union(.zeroPage).rawValue, ordering: .releasing)
        zero.setRefCount(1)
        hugeZeroFolio = Self.allocateHugeZeroFolio(system: system, descriptors: descriptors)
        hugeZeroPfn = hugeZeroFolio?.pfn ?? Pfn(rawValue: 0)

        var notes: [String] = []
        let deviceNodes = [configuration.deviceNode] + configuration.moreDeviceNodes
        if deviceNodes.contains(configuration.systemNode) {
            let which =
                deviceNodes.count == 1
                ? "device memory shares"
                : "\(deviceNodes.filter { $0 == configuration.systemNode }.count) of the \(deviceNodes.count) device pools share"
            notes.append(
                "\(which) NUMA node \(configuration.systemNode) with system memory (\(NUMA.nodesWithMemory().count == 1 ? "this machine has one node with memory" : "as asked"))"
            )
        }
        for region in [systemRegion] + pools.map(\.region) where region.requested == .auto && region.backing != .hugetlb
        {
            notes.append(
                "\(region.name) pool fell back to \(region.backing): \(region.verification.fallbacks.joined(separator: "; "))"
            )
        }
        self.notes = notes
    }

    deinit {
        descriptors.deinitialize(count: endPfn.index)
    }

    /// `alloc_huge_zero_folio()` at startup (`huge_zero_init` with a persistent huge zero folio): a zeroed
    /// order-9 block of the system pool whose descriptors say reserved, zero page, head (tails marked),
    /// refcount 1 that is never dropped. Nil when no 2 MiB block is free.
    private static func allocateHugeZeroFolio(
        system: MemoryPool, descriptors: UnsafeMutablePointer<PageDescriptor>
    ) -> Folio? {
        guard case .success(let index) = system.allocator.allocate(order: PageSize.pmdOrder) else { return nil }
        let folio = Folio(pfn: system.firstPfn + index, order: PageSize.pmdOrder)
        RawBytes.zero(system.address(of: folio.pfn), count: folio.byteCount)
        let head = PageRef(descriptors + folio.pfn.index)
        for i in 1..<folio.pageCount { (head + i).storeFlags(PageFlags.tail.rawValue) }
        let flags = PageFlags.reserved.union([.zeroPage, .head]).rawValue | UInt64(folio.order) << PageFlags.orderShift
        head.storeFlags(flags)
        head.setRefCount(1)
        return folio
    }

    // MARK: - Lookup

    /// The pool that holds `pfn`, or nil for a pfn outside both.
    @inlinable public func pool(of pfn: Pfn) -> MemoryPool? {
        system.contains(pfn) ? system : device.contains(pfn) ? device : devicePools.first { $0.contains(pfn) }
    }

    /// Whether `pfn` is a frame of any device pool.
    @inlinable func isDeviceFrame(_ pfn: Pfn) -> Bool {
        device.contains(pfn) || (devicePools.count > 1 && devicePools.contains { $0.contains(pfn) })
    }

    /// `is_huge_zero_pfn()`: whether `pfn` is a page of the huge zero folio.
    @inlinable @inline(__always) func isHugeZero(_ pfn: Pfn) -> Bool {
        pfn.aligned(toOrder: PageSize.pmdOrder) == hugeZeroPfn
    }

    /// `is_huge_zero_pmd()`: a present (or protnone) huge PMD that maps the huge zero folio.
    @inlinable @inline(__always) func isHugeZeroPMD(_ entry: PTE) -> Bool {
        entry.isHuge && isHugeZero(entry.pfn)
    }

    /// Whether a present entry maps a zero page, the 4 KiB one or a page of the huge zero folio (these
    /// hold no reference and no mapcount, and are never written through).
    @inlinable @inline(__always) func isZero(_ pfn: Pfn) -> Bool {
        pfn == zeroPage || isHugeZero(pfn)
    }

    /// The pool of a kind.
    @inlinable public func pool(_ kind: PoolKind) -> MemoryPool { kind == .system ? system : device }

    /// The descriptor of a frame (`pfn_to_page`).
    @inlinable @inline(__always) public func page(_ pfn: Pfn) -> PageRef {
        PageRef(descriptors + pfn.index)
    }

    /// The handle of a folio whose head is known (its `struct folio *`).
    @inlinable @inline(__always) func folioRef(_ folio: Folio) -> FolioRef {
        FolioRef(descriptors + folio.pfn.index)
    }

    /// `pfn_folio()`: the handle of the folio that holds `pfn`, a tail page's head being the 2 MiB-aligned
    /// pfn (one load of the page's flags, as ``folio(containing:)``).
    @inlinable @inline(__always) func folioRef(containing pfn: Pfn) -> FolioRef {
        let head = descriptors[pfn.index].test(.tail) ? pfn.aligned(toOrder: PageSize.pmdOrder) : pfn
        return FolioRef(descriptors + head.index)
    }

    /// The address of a frame's first byte (`page_address`).
    @inlinable @inline(__always) public func address(of pfn: Pfn) -> UnsafeMutableRawPointer {
        if system.contains(pfn) { return system.address(of: pfn) }
        if !device.contains(pfn) { return addressInFurtherPool(pfn) }
        return device.address(of: pfn)
    }

    /// ``address(of:)`` for a frame of a device pool after the first, kept out of line so that with
    /// one device the hot path pays one branch; a pfn outside every pool is a precondition failure.
    @usableFromInline @inline(never)
    func addressInFurtherPool(_ pfn: Pfn) -> UnsafeMutableRawPointer {
        for pool in devicePools.dropFirst() where pool.contains(pfn) { return pool.address(of: pfn) }
        preconditionFailure("\(pfn) is outside every pool")
    }

    /// The bytes of a folio.
    @inlinable public func bytes(of folio: Folio) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: address(of: folio.pfn), count: folio.byteCount)
    }

    /// The folio that holds `pfn` (`page_folio`): a tail page's head is the 2 MiB-aligned pfn.
    /// One load of the page's flags tells a tail from a head and gives a head's order.
    @inlinable @inline(__always) public func folio(containing pfn: Pfn) -> Folio {
        let flags = descriptors[pfn.index].flags.load(ordering: .acquiring)
        if flags & PageFlags.tail.rawValue != 0 {
            let head = pfn.aligned(toOrder: PageSize.pmdOrder)
            return Folio(pfn: head, order: descriptors[head.index].order)
        }
        return Folio(pfn: pfn, order: Int((flags & PageFlags.orderMask) >> PageFlags.orderShift))
    }

    // MARK: - Allocation

    /// Allocates a folio of order 0 or 9 from a pool, with its descriptors prepared and one reference held
    /// by the caller. Models `folio_alloc()` (system) and a driver's device-page allocation (device:
    /// the first device pool; ``allocate(from:order:)`` for another).
    ///
    /// The frame's bytes are whatever the last owner left; callers that need zeroes clear them
    /// (`__GFP_ZERO` / `clear_highpage`), so the cost is visible where the kernel pays it.
    public func allocate(_ kind: PoolKind, order: Int) -> Result<Folio, AllocationFailure> {
        // Direct stored-property access: no retain of the pool on the hot path.
        let result = kind == .system ? system.allocator.allocate(order: order) : device.allocator.allocate(order: order)
        switch result {
        case .failure(let f): return .failure(f)
        case .success(let index):
            let folio = Folio(pfn: (kind == .system ? system.firstPfn : device.firstPfn) + index, order: order)
            prepare(folio, device: kind == .device)
            return .success(folio)
        }
    }

    /// ``allocate(_:order:)`` from a given pool (a device's own, with several devices).
    public func allocate(from pool: MemoryPool, order: Int) -> Result<Folio, AllocationFailure> {
        switch pool.allocator.allocate(order: order) {
        case .failure(let f): return .failure(f)
        case .success(let index):
            let folio = Folio(pfn: pool.firstPfn + index, order: order)
            prepare(folio, device: pool.kind == .device)
            return .success(folio)
        }
    }

    /// Allocates up to `count` order-0 frames from a pool under one allocator lock (`alloc_pages_bulk`)
    /// and writes them to `out`; returns how many it got.
    func allocateBulk(_ kind: PoolKind, count: Int, into out: UnsafeMutablePointer<Pfn>) -> Int {
        allocateBulk(from: pool(kind), count: count, into: out)
    }

    /// ``allocateBulk(_:count:into:)`` from a given pool.
    func allocateBulk(from pool: MemoryPool, count: Int, into out: UnsafeMutablePointer<Pfn>) -> Int {
        withUnsafeTemporaryAllocation(of: Int.self, capacity: count) { indices in
            let got = pool.allocator.allocateBulk(order: 0, count: count, into: indices.baseAddress!)
            for i in 0..<got {
                let pfn = pool.firstPfn + indices[i]
                prepare(Folio(pfn: pfn, order: 0), device: pool.kind == .device)
                out[i] = pfn
            }
            return got
        }
    }

    /// `prep_new_page()` / `prep_compound_page()`.
    @inline(__always)
    private func prepare(_ folio: Folio, device: Bool) {
        let zone: UInt64 = device ? PageFlags.zoneDevice.rawValue : 0
        let head = folioRef(folio).page
        var headFlags = zone
        if folio.order > 0 {
            headFlags |= PageFlags.head.rawValue | UInt64(folio.order) << PageFlags.orderShift
            let tailFlags = zone | PageFlags.tail.rawValue
            for i in 1..<folio.pageCount {
                let tail = head + i
                tail.storeFlags(tailFlags)
                tail.setPrivate(0)
                tail.setMapping(0)
            }
        }
        head.setPrivate(0)
        head.setMapping(0)
        head.setMapcount(0)
        head.storeFlags(headFlags)
        head.setRefCount(1)
    }

    /// Drops one reference (`folio_put`); frees the folio when it was the last.
    /// - Returns: whether the folio was freed.
    @discardableResult
    public func put(_ folio: Folio) -> Bool {
        let head = folioRef(folio)
        precondition(!head.test(.reserved), "folio_put on a reserved page (\(folio.pfn))")
        guard head.putTestZero() else { return false }
        release(folio)
        return true
    }

    /// `folio_put` for a caller that frees in batches: when this was the last reference, the folio is
    /// prepared for freeing and, if it is a single page, added to `batch` rather than returned to the
    /// allocator at once (a 2 MiB folio goes back directly). ``FreeBatch/flush(_:)`` returns the batch.
    /// - Returns: whether the folio was freed.
    @discardableResult @inline(__always)
    public func put(_ folio: Folio, freeingInto batch: inout FreeBatch) -> Bool {
        let head = folioRef(folio)
        precondition(!head.test(.reserved), "folio_put on a reserved page (\(folio.pfn))")
        guard head.putTestZero() else { return false }
        guard folio.order == 0 else {
            release(folio)
            return true
        }
        let backing = freePrepare(folio)
        if batch.count == FreeBatch.capacity { batch.flush(self) }
        batch.add(folio.pfn)
        if let backing { put(backing, freeingInto: &batch) }
        return true
    }

    /// `free_pages_prepare()`: checks and clears the descriptors of a folio whose refcount reached zero.
    /// For a device folio with a backing folio, `page_free` (``takeBacking(of:)``): returns the backing
    /// folio, for the caller to put once the device frame is freed.
    @inline(__always)
    private func freePrepare(_ folio: Folio) -> Folio? {
        pageCacheRelease(folio)
        let head = folioRef(folio)
        let mapped = head.mapCount
        precondition(mapped == 0, "freeing \(folio) that is still mapped \(mapped) times")
        precondition(!head.isLocked, "freeing \(folio) while it is locked")
        let backing = head.test(.zoneDevice) ? takeBacking(of: folio) : nil
        for i in 0..<folio.pageCount {
            head.page(i).storeFlags(0)
        }
        return backing
    }

    /// `free_zone_device_folio()` → `pgmap->ops->page_free` for a device folio with a backing folio:
    /// its pagemap is told (``DevicePagemap/pageFree(_:backing:)``), the field is cleared, and the
    /// backing folio is returned for the caller to free (`dmirror_devmem_free`'s `__free_pages(rpage)`),
    /// even when its device was closed first. The lab finds the pagemap through its registry (one lock),
    /// where the kernel follows `page->pgmap`. Nil for a device folio without one.
    @inline(__always)
    func takeBacking(of folio: Folio) -> Folio? {
        guard let backing = folioRef(folio).zoneDeviceData else { return nil }
        pageFree(folio, backing: backing)
        return Folio(pfn: backing, order: folio.order)
    }

    @inline(never)
    private func pageFree(_ folio: Folio, backing: Pfn) {
        let head = folioRef(folio)
        let owner = head.deviceOwner
        head.setPrivate(owner)
        pagemaps.withLock { $0[owner] }?.pageFree(folio, backing: backing)
    }

    /// The backing folio of a 2 MiB device folio being split becomes 512 single pages with one reference
    /// each, as `dmirror_devmem_folio_split` splits it (`folio_reset_order`, `folio_set_count`); each new
    /// device page takes its own (``PageDescriptor/splitPrivateStep``). Nothing to do for a system folio
    /// or a device folio without one.
    func splitBacking(of folio: Folio) {
        let head = folioRef(folio)
        guard head.test(.zoneDevice), let backing = head.zoneDeviceData else { return }
        let b = folioRef(Folio(pfn: backing, order: folio.order))
        precondition(b.order == folio.order, "backing folio of \(folio) has order \(b.order)")
        system.allocator.splitAllocated(backing.index - system.firstPfn.index)
        for i in 0..<folio.pageCount {
            let page = b.page(i)
            page.storeFlags(0)
            page.setMapcount(0)
            page.setRefCount(1)
        }
    }

    /// Returns order-0 frames to their pools' allocators, one lock acquisition per pool.
    func freeBulk(_ pfns: UnsafeBufferPointer<Pfn>) {
        withUnsafeTemporaryAllocation(of: Int.self, capacity: pfns.count) { indices in
            func free(to pool: MemoryPool) {
                var n = 0
                for pfn in pfns where pool.contains(pfn) {
                    indices[n] = pfn.index - pool.firstPfn.index
                    n += 1
                }
                if n > 0 { pool.allocator.freeBulk(UnsafeBufferPointer(rebasing: indices[0..<n]), order: 0) }
            }
            free(to: system)
            for pool in devicePools { free(to: pool) }
        }
    }

    /// `free_pages_prepare()` and the return to the allocator, for a folio whose refcount reached zero.
    func release(_ folio: Folio) {
        let backing = freePrepare(folio)
        defer { if let backing { put(backing) } }
        if system.contains(folio.pfn) {
            system.allocator.free(folio.pfn.index - system.firstPfn.index, order: folio.order)
        } else if device.contains(folio.pfn) {
            device.allocator.free(folio.pfn.index - device.firstPfn.index, order: folio.order)
        } else {
            guard let pool = devicePools.first(where: { $0.contains(folio.pfn) }) else {
                preconditionFailure("\(folio) is outside every pool")
            }
            pool.allocator.free(folio.pfn.index - pool.firstPfn.index, order: folio.order)
        }
    }

    // MARK: - Accounting

    /// Free frames over every device pool.
    var deviceFreeFrames: Int { devicePools.reduce(0) { $0 + $1.allocator.freeFrames } }

    /// Bytes of frames modelled (every pool).
    var modelledBytes: Int { system.region.length + devicePools.reduce(0) { $0 + $1.region.length } }

    /// Bytes the model spends to describe them: the descriptor array (page tables add theirs, counted
    /// by the page-table layer).
    var descriptorBytes: Int { endPfn.index * Self.descriptorSize }

    /// A multi-line description of the pools.
    public var summary: String {
        var lines =
            [
                system.region.summary + ", pfns \(system.firstPfn.rawValue)..<\(system.endPfn.rawValue)"
            ] + devicePools.map { $0.region.summary + ", pfns \($0.firstPfn.rawValue)..<\($0.endPfn.rawValue)" } + [
                "descriptors: \(Region.formatBytes(descriptorBytes)) (\(Self.descriptorSize) B per 4 KiB frame, "
                    + "\(String(format2: Double(descriptorBytes) / Double(modelledBytes) * 100))% of the memory modelled)"
            ]
        lines.append(contentsOf: notes)
        return lines.joined(separator: "\n")
    }
}

extension String {
    /// A number with two decimals, without Foundation.
    init(format2 value: Double) {
        let scaled = (value * 100).rounded()
        let whole = Int(scaled / 100)
        let frac = Int(abs(scaled).truncatingRemainder(dividingBy: 100))
        self = "\(value < 0 && whole == 0 ? "-" : "")\(whole).\(frac < 10 ? "0" : "")\(frac)"
    }
}

/// Single pages whose last reference went, waiting to go back to the allocator together: the lab's
/// stand-in for the per-CPU page lists (`free_unref_folio` → `pcp->lists`, flushed to the buddy
/// allocator in batches under one `zone->lock`). Its storage is on the caller's stack
/// (``with(_:_:)``), so batching allocates nothing.
public struct FreeBatch {
    public static let capacity = 512
    private let storage: UnsafeMutablePointer<Pfn>
    public private(set) var count = 0

    private init(storage: UnsafeMutablePointer<Pfn>) { self.storage = storage }

    /// Runs `body` with an empty batch and frees what it collected when `body` returns.
    public static func with<R>(_ memory: PhysicalMemory, _ body: (inout FreeBatch) throws -> R) rethrows -> R {
        try withUnsafeTemporaryAllocation(of: Pfn.self, capacity: capacity) { buffer in
            var batch = FreeBatch(storage: buffer.baseAddress!)
            defer { batch.flush(memory) }
            return try body(&batch)
        }
    }

    mutating func add(_ pfn: Pfn) {
        storage[count] = pfn
        count += 1
    }

    /// Returns every page of the batch to its allocator and empties it.
    public mutating func flush(_ memory: PhysicalMemory) {
        guard count > 0 else { return }
        memory.freeBulk(UnsafeBufferPointer(start: storage, count: count))
        count = 0
    }
}
