import CLinux
import Dispatch
import Glibc

/// The machine's floors: what the substrate's basic operations cost here, measured in one process run
/// so their ratios can be compared across machines. `bench calibrate` prints them.
///
/// Each figure is the median over `repetitions` of a timed loop over `frames` operations, after one
/// untimed warm-up pass.
public struct Calibration: Sendable {
    /// One measured floor.
    public struct Figure: Sendable {
        public var name: String
        public var value: Double
        public var unit: String
        public var detail: String
    }

    public var figures: [Figure]
    /// The pools the figures were measured on.
    var memorySummary: String

    /// Groups of figures `bench calibrate --only` can choose.
    public enum Group: String, CaseIterable, Sendable {
        case allocation, copy, walk, unified, tlb
    }

    /// The pools' sizes for `frames` frames each (the system pool has one more block, for the huge zero
    /// folio) on these nodes.
    public static func configuration(
        frames: Int, backing: BackingRequest, systemNode: Int = 0, deviceNode: Int? = nil
    ) -> PhysicalMemory.Configuration {
        .init(
            systemBytes: frames * PageSize.bytes + PageSize.pmdBytes, deviceBytes: frames * PageSize.bytes,
            systemNode: systemNode,
            deviceNode: deviceNode, backing: backing)
    }

    /// Measures on fresh pools of `frames` 4 KiB frames each, on `systemNode` and `deviceNode` (nil:
    /// the default by distance).
    public static func measure(
        frames: Int = 16384, repetitions: Int = 5, backing: BackingRequest = .auto,
        groups: Set<Group> = Set(Group.allCases),
        systemNode: Int = 0, deviceNode: Int? = nil
    ) throws(RegionError) -> Calibration {
        let memory = try PhysicalMemory(
            configuration(frames: frames, backing: backing, systemNode: systemNode, deviceNode: deviceNode))
        // Leave room for the zero page.
        let n = (frames - FrameAllocator.blockFrames) / FrameAllocator.blockFrames * FrameAllocator.blockFrames
        let half = n / 2
        let timer = Timer(repetitions: repetitions)
        var figures: [Figure] = []
        if groups.contains(.allocation) { figures += measureAllocation(memory: memory, n: n, timer) }
        if groups.contains(.copy) {
            figures += measureCopies(memory: memory, half: half, timer)
            figures += measureCopyEngine(memory: memory, pages: half, timer)
        }
        if groups.contains(.walk) { figures += measureWalk(memory: memory, pages: half, timer) }
        if groups.contains(.tlb) { figures += measureTLB(n: 2000, timer) }
        if groups.contains(.unified) {
            do {
                figures += try measureUnified(pages: half, repetitions: repetitions, prototype: memory.configuration)
            } catch {
                figures.append(
                    Figure(
                        name: "lab_unified_overhead_ns_per_page", value: .nan, unit: "ns/page",
                        detail: "could not run: \(error)"))
            }
        }
        return Calibration(figures: figures, memorySummary: memory.summary)
    }

    /// Times a body: the median of `repetitions` runs after one warm-up run.
    struct Timer {
        let repetitions: Int
        func median(_ body: () -> UInt64) -> Double {
            _ = body()
            var samples = (0..<repetitions).map { _ in body() }
            samples.sort()
            return Double(samples[samples.count / 2])
        }
        func time(_ body: () -> Void) -> UInt64 {
            let start = monotonicNanoseconds()
            body()
            return monotonicNanoseconds() - start
        }
    }

    /// Plain `memcpy` bandwidth from the system pool to the device pool in 2 MiB pieces over `bytes`
    /// (at most the smaller pool), GB/s: the median of `repetitions` after a warm-up. The pools' frames
    /// must be free (their bytes are overwritten).
    public static func memcpyGBps(memory: PhysicalMemory, bytes: Int, repetitions: Int = 3) -> Double {
        let chunk = PageSize.pmdBytes
        let n = max(1, min(bytes, memory.system.region.length, memory.device.region.length) / chunk)
        let src = memory.system.region.base
        let dst = memory.device.region.base
        let ns = Timer(repetitions: repetitions).median {
            let t = monotonicNanoseconds()
            for i in 0..<n { memcpy(dst + i * chunk, src + i * chunk, chunk) }
            return monotonicNanoseconds() - t
        }
        return Double(n * chunk) / ns
    }

    /// ``memcpyGBps(memory:bytes:repetitions:)`` with `threads` threads at once (each copying every
    /// `threads`-th 2 MiB piece, `DispatchQueue.concurrentPerform` as the copy engine runs its
    /// workers), GB/s over all of them: the floor the copy engine's `--threads` is measured against
    /// (the multi-threaded `folio_mc_copy` comparison). `hook` runs first on each copying thread.
    public static func memcpyGBps(
        memory: PhysicalMemory, bytes: Int, threads: Int, repetitions: Int = 3, hook: (@Sendable () -> Void)? = nil
    ) -> Double {
        guard threads > 1 else { return memcpyGBps(memory: memory, bytes: bytes, repetitions: repetitions) }
        let chunk = PageSize.pmdBytes
        let n = max(1, min(bytes, memory.system.region.length, memory.device.region.length) / chunk)
        let src = UnsafeSendable(UnsafeRawPointer(memory.system.region.base))
        let dst = UnsafeSendable(memory.device.region.base)
        let ns = Timer(repetitions: repetitions).median {
            let t = monotonicNanoseconds()
            DispatchQueue.concurrentPerform(iterations: threads) { lane in
                hook?()
                var i = lane
                while i < n {
                    memcpy(dst.value + i * chunk, src.value + i * chunk, chunk)
                    i += threads
                }
            }
            return monotonicNanoseconds() - t
        }
        return Double(n * chunk) / ns
    }

    /// The kernel's `mincore()` over `pages` present 4 KiB pages of a fresh Region on `node`, ns per
    /// page: the median of `repetitions` after a warm-up.
    static func kernelMincoreNs(pages: Int, node: Int, repetitions: Int = 5) throws(RegionError) -> Double {
        let host = try Region(name: "mincore", length: pages * PageSize.bytes, backing: .small, node: node)
        let vec = UnsafeMutablePointer<UInt8>.allocate(capacity: pages)
        defer { vec.deallocate() }
        let ns = Timer(repetitions: repetitions).median {
            let t = monotonicNanoseconds()
            _ = mincore(host.base, pages * PageSize.bytes, vec)
            return monotonicNanoseconds() - t
        }
        return ns / Double(pages)
    }

    /// The kernel's `/proc/self/pagemap` (one `pread` of 8 bytes per page) over `pages` present 4 KiB
    /// pages of a fresh Region on `node`, ns per page.
    static func kernelPagemapNs(pages: Int, node: Int, repetitions: Int = 5) throws(RegionError) -> Double {
        let host = try Region(name: "pagemap", length: pages * PageSize.bytes, backing: .small, node: node)
        let fd = open("/proc/self/pagemap", O_RDONLY)
        guard fd >= 0 else { return .nan }
        defer { close(fd) }
        let buffer = UnsafeMutablePointer<UInt64>.allocate(capacity: pages)
        defer { buffer.deallocate() }
        let offset = off_t(UInt(bitPattern: host.base) / UInt(PageSize.bytes) * 8)
        let ns = Timer(repetitions: repetitions).median {
            let t = monotonicNanoseconds()
            _ = pread(fd, buffer, pages * 8, offset)
            return monotonicNanoseconds() - t
        }
        return ns / Double(pages)
    }

    /// Frame allocation, folio preparation and descriptor atomics.
    static func measureAllocation(memory: PhysicalMemory, n: Int, _ timer: Timer) -> [Figure] {
        measureFrameAllocator(memory.device.allocator, n: n, timer) + measureFolios(memory: memory, n: n, timer)
            + measureDescriptorAtomics(memory: memory, n: n, timer)
    }

    /// The frame allocator on its own: order 0 one lock per frame, freeing, and bulk.
    static func measureFrameAllocator(_ allocator: FrameAllocator, n: Int, _ timer: Timer) -> [Figure] {
        let indices = UnsafeMutablePointer<Int>.allocate(capacity: n)
        defer { indices.deallocate() }
        let time = timer.time
        var allocNs = [UInt64]()
        let rawFree = timer.median {
            var a: UInt64 = 0
            let f = time {
                a = time {
                    for i in 0..<n { if case .success(let x) = allocator.allocate(order: 0) { indices[i] = x } }
                }
                for i in 0..<n { allocator.free(indices[i], order: 0) }
            }
            allocNs.append(a)
            return f - a
        }
        allocNs.sort()
        let bulk = timer.median {
            let t = time {
                var got = 0
                while got < n { got += allocator.allocateBulk(order: 0, count: min(512, n - got), into: indices + got) }
            }
            allocator.freeBulk(UnsafeBufferPointer(start: indices, count: n), order: 0)
            return t
        }
        return [
            Figure(
                name: "frame_alloc_order0", value: Double(allocNs[allocNs.count / 2]) / Double(n), unit: "ns/frame",
                detail: "FrameAllocator.allocate(order: 0), one lock per frame"),
            Figure(
                name: "frame_free_order0", value: rawFree / Double(n), unit: "ns/frame",
                detail: "FrameAllocator.free(order: 0), with buddy merge"),
            Figure(
                name: "frame_alloc_bulk_order0", value: bulk / Double(n), unit: "ns/frame",
                detail: "allocateBulk, 512 frames per lock"),
        ]
    }

    /// Folio allocation with descriptor preparation, and folio_put, at order 0 and 9.
    static func measureFolios(memory: PhysicalMemory, n: Int, _ timer: Timer) -> [Figure] {
        let pfns = UnsafeMutablePointer<Pfn>.allocate(capacity: n)
        defer { pfns.deallocate() }
        let time = timer.time
        var folioAlloc = [UInt64]()
        let folioPut = timer.median {
            var a: UInt64 = 0
            let total = time {
                a = time {
                    for i in 0..<n { if case .success(let f) = memory.allocate(.device, order: 0) { pfns[i] = f.pfn } }
                }
                for i in 0..<n { memory.put(Folio(pfn: pfns[i], order: 0)) }
            }
            folioAlloc.append(a)
            return total - a
        }
        folioAlloc.sort()
        let blocks = n / FrameAllocator.blockFrames
        let large = timer.median {
            time {
                for i in 0..<blocks { if case .success(let f) = memory.allocate(.device, order: 9) { pfns[i] = f.pfn } }
                for i in 0..<blocks { memory.put(Folio(pfn: pfns[i], order: 9)) }
            }
        }
        return [
            Figure(
                name: "folio_alloc_order0", value: Double(folioAlloc[folioAlloc.count / 2]) / Double(n),
                unit: "ns/folio", detail: "PhysicalMemory.allocate: allocator + prep_new_page"),
            Figure(
                name: "folio_put_order0", value: folioPut / Double(n), unit: "ns/folio",
                detail: "folio_put to zero + free"),
            Figure(
                name: "folio_alloc_put_order9", value: large / Double(blocks), unit: "ns/folio",
                detail: "2 MiB folio: allocate (512 descriptors) + put"),
        ]
    }

    /// Descriptor atomics, uncontended, on the zero page's descriptor.
    static func measureDescriptorAtomics(memory: PhysicalMemory, n: Int, _ timer: Timer) -> [Figure] {
        let head = FolioRef(head: memory.page(memory.zeroPage))
        let atomics = timer.median { timer.time { for _ in 0..<n { head.get(); _ = head.putTestZero() } } }
        let locks = timer.median { timer.time { for _ in 0..<n { if head.tryLock() { head.unlock() } } } }
        return [
            Figure(
                name: "descriptor_get_put", value: atomics / Double(n), unit: "ns/pair",
                detail: "folio_get + folio_put_testzero, uncontended"),
            Figure(
                name: "descriptor_trylock_unlock", value: locks / Double(n), unit: "ns/pair",
                detail: "folio_trylock + folio_unlock, uncontended"),
        ]
    }

    /// memcpy between the pools.
    static func measureCopies(memory: PhysicalMemory, half: Int, _ timer: Timer) -> [Figure] {
        var figures: [Figure] = []
        let median = timer.median
        let time = timer.time
        // Copies between the pools.
        let src = memory.system.region.base
        let dst = memory.device.region.base
        let copy4k = median {
            time { for i in 0..<half { memcpy(dst + i * PageSize.bytes, src + i * PageSize.bytes, PageSize.bytes) } }
        }
        figures.append(
            Figure(
                name: "memcpy_4k_gbps", value: Double(half * PageSize.bytes) / copy4k, unit: "GB/s",
                detail: "memcpy per 4 KiB page, system -> device pool"))
        let copy2m = memcpyGBps(memory: memory, bytes: half * PageSize.bytes, repetitions: timer.repetitions)
        figures.append(
            Figure(
                name: "memcpy_2m_gbps", value: copy2m, unit: "GB/s",
                detail: "memcpy per 2 MiB folio, system -> device pool"))
        return figures
    }

    /// The lightest walk against mincore(), and the model's memory overhead.
    static func measureWalk(memory: PhysicalMemory, pages half: Int, _ timer: Timer) -> [Figure] {
        var figures: [Figure] = []
        let median = timer.median
        let time = timer.time
        // The lightest walk: a snapshot over present 4 KiB PTEs, against the kernel's mincore() over the
        // same number of present 4 KiB pages, in the same process run.
        do {
            let pages = half
            let mm = try AddressSpace(memory: memory)
            let faultNs = try medianFaultNs(mm, pages: pages, repetitions: timer.repetitions)
            let start = try mm.mmap(length: pages * PageSize.bytes, protection: .readWrite)
            for k in 0..<pages { try mm.store(UInt8(1), at: pageAddress(start, k)) }
            let states = UnsafeMutablePointer<UInt8>.allocate(capacity: pages)
            defer { states.deallocate() }
            let walkNs = median {
                time {
                    var ops = SnapshotWalk(
                        into: states, start: start, zeroPage: memory.zeroPage, hugeZeroPage: memory.hugeZeroPfn)
                    mm.mmapLock.withReadLock { _ = mm.walkPageRange(start, pageAddress(start, pages), &ops) }
                }
            }
            let mincoreNs =
                try kernelMincoreNs(pages: pages, node: memory.configuration.systemNode, repetitions: timer.repetitions)
                * Double(pages)
            figures.append(
                Figure(
                    name: "lab_walk_ns_per_pte", value: walkNs / Double(pages), unit: "ns/page",
                    detail: "walk_page_range snapshot of \(pages) present PTEs"))
            figures.append(
                Figure(
                    name: "kernel_mincore_ns_per_page", value: mincoreNs / Double(pages), unit: "ns/page",
                    detail: "kernel mincore() over \(pages) present 4 KiB pages"))
            figures.append(
                Figure(name: "walk_vs_mincore", value: walkNs / mincoreNs, unit: "ratio", detail: "target: at most 2"))
            if let pagemapNs = try? kernelPagemapNs(
                pages: pages, node: memory.configuration.systemNode, repetitions: timer.repetitions)
            {
                figures.append(
                    Figure(
                        name: "kernel_pagemap_ns_per_page", value: pagemapNs, unit: "ns/page",
                        detail: "kernel /proc/self/pagemap read over \(pages) present 4 KiB pages"))
            }
            figures.append(
                Figure(
                    name: "lab_fault_ns_per_page", value: Double(faultNs) / Double(pages), unit: "ns/page",
                    detail: "anonymous write fault (handle_mm_fault: allocate, clear, map), \(pages) per range"))
            figures.append(modelOverhead(memory, mm, pages: pages))
        } catch {
            figures.append(
                Figure(
                    name: "lab_walk_ns_per_pte", value: .nan, unit: "ns/page",
                    detail: "could not build the address space: \(error)"))
        }
        return figures
    }

    /// Anonymous write faults (`handle_mm_fault` → `do_anonymous_page`) over `pages` pages, each
    /// repetition on a fresh range: the median time of a range, the first (warm-up) left out.
    static func medianFaultNs(_ mm: AddressSpace, pages: Int, repetitions: Int) throws -> UInt64 {
        var samples: [UInt64] = []
        for _ in 0...repetitions {
            let a = try mm.mmap(length: pages * PageSize.bytes, protection: .readWrite)
            let t = monotonicNanoseconds()
            for k in 0..<pages { _ = try mm.handleFault(at: pageAddress(a, k), write: true) }
            samples.append(monotonicNanoseconds() - t)
            try mm.munmap(a, length: pages * PageSize.bytes)
        }
        samples.removeFirst()
        samples.sort()
        return samples[samples.count / 2]
    }

    /// What the model's own structures add: descriptor bytes per byte modelled, and page-table pages
    /// per page mapped, in percent.
    static func modelOverhead(_ memory: PhysicalMemory, _ mm: AddressSpace, pages: Int) -> Figure {
        let tableBytes = mm.pageTable.tableCount * PageSize.bytes
        let descriptors = Double(memory.descriptorBytes) / Double(memory.modelledBytes)
        return Figure(
            name: "model_overhead", value: (descriptors + Double(tableBytes) / Double(pages * PageSize.bytes)) * 100,
            unit: "%",
            detail: "descriptors per frame modelled + \(mm.pageTable.tableCount) page-table pages per page mapped")
    }

    /// The copy engine against plain `memcpy` over the same bytes, in the same run: 4 KiB pages and
    /// 2 MiB folios, with as many workers as this thread may use CPUs.
    static func measureCopyEngine(memory: PhysicalMemory, pages: Int, _ timer: Timer) -> [Figure] {
        let workers = max(1, Int(clinux_allowed_cpu_count()))
        let engine = CopyEngine(workers: workers, capacity: pages + 16)
        let src = memory.system.region.base
        let dst = memory.device.region.base
        let median = timer.median
        let time = timer.time
        let folios = pages / PageSize.pmdPages
        let plain4k = median {
            time { for i in 0..<pages { memcpy(dst + i * PageSize.bytes, src + i * PageSize.bytes, PageSize.bytes) } }
        }
        let engine4k = median {
            time {
                for i in 0..<pages {
                    engine.copy(from: src + i * PageSize.bytes, to: dst + i * PageSize.bytes, bytes: PageSize.bytes)
                }
                engine.run()
            }
        }
        let plain2m = median {
            time {
                for i in 0..<folios {
                    memcpy(dst + i * PageSize.pmdBytes, src + i * PageSize.pmdBytes, PageSize.pmdBytes)
                }
            }
        }
        let engine2m = median {
            time {
                for i in 0..<folios {
                    engine.copy(
                        from: src + i * PageSize.pmdBytes, to: dst + i * PageSize.pmdBytes, bytes: PageSize.pmdBytes)
                }
                engine.run()
            }
        }
        let bytes = Double(pages * PageSize.bytes)
        return [
            Figure(
                name: "copy_engine_4k_gbps", value: bytes / engine4k, unit: "GB/s",
                detail: "CopyEngine, \(workers) workers, 4 KiB jobs"),
            Figure(
                name: "copy_engine_4k_vs_memcpy", value: plain4k / engine4k, unit: "ratio",
                detail: "engine throughput / plain memcpy per 4 KiB page"),
            Figure(
                name: "copy_engine_2m_gbps", value: Double(folios * PageSize.pmdBytes) / engine2m, unit: "GB/s",
                detail: "CopyEngine, \(workers) workers, 2 MiB folios"),
            Figure(
                name: "copy_engine_2m_vs_memcpy", value: plain2m / engine2m, unit: "ratio",
                detail: "engine throughput / plain memcpy per 2 MiB folio (target at least 0.9)"),
        ]
    }

    /// A whole unified migration (`hmm_range_fault(REQ_FAULT|REQ_MIGRATE)` → setup → alloc → copy →
    /// pages → finalize, 512-page windows) of present pages, per page, with the copy time taken out:
    /// what the model itself costs.
    ///
    /// The model's own cost is measured without the kernel costs of `--costs` (real shootdowns, LRU
    /// batches, the driver's work): those are the kernel's, not the lab's. `unified_total_with_costs`
    /// is the whole migration with them.
    static func measureUnified(pages: Int, repetitions: Int, prototype: PhysicalMemory.Configuration) throws -> [Figure]
    {
        let (totals, perPage) = try timeUnified(pages: pages, repetitions: repetitions, prototype: prototype, costs: [])
        let (withCosts, _) = try timeUnified(pages: pages, repetitions: repetitions, prototype: prototype, costs: .all)
        let overhead = perPage[perPage.count / 2]
        let floor = measureUnifiedAtomics(pages: pages, repetitions: repetitions)
        return [
            Figure(
                name: "unified_total_per_page", value: totals[totals.count / 2], unit: "ns/page",
                detail: "whole unified migration of \(pages) present pages, copy included, --costs none"),
            Figure(
                name: "lab_unified_overhead_ns_per_page", value: overhead, unit: "ns/page",
                detail: "the same without the copy (target at most 100)"),
            Figure(
                name: "unified_atomics_floor_ns_per_page", value: floor, unit: "ns/page",
                detail: "its 22 atomic read-modify-writes per page alone (the kernel's too)"),
            Figure(
                name: "lab_unified_above_atomics_ns_per_page", value: overhead - floor, unit: "ns/page",
                detail: "the model's cost per page beyond those atomics"),
            Figure(
                name: "unified_total_with_costs", value: withCosts[withCosts.count / 2], unit: "ns/page",
                detail: "the whole migration paying every --costs cost"),
        ]
    }

    /// Sorted per-page times of `repetitions` unified migrations (after a warm-up): whole, and without
    /// the copy; on pools of their own with the nodes and backing of `prototype`.
    static func timeUnified(
        pages: Int, repetitions: Int, prototype: PhysicalMemory.Configuration, costs: Costs
    ) throws -> (totals: [Double], withoutCopy: [Double]) {
        let bytes = pages * PageSize.bytes
        let memory = try PhysicalMemory(
            .init(
                systemBytes: 3 * bytes + 11 * PageSize.pmdBytes, deviceBytes: bytes + 2 * PageSize.pmdBytes,
                systemNode: prototype.systemNode,
                deviceNode: prototype.deviceNode, backing: prototype.backing, costs: costs))
        let mm = try AddressSpace(memory: memory)
        let device = Device(memory: memory, mm: mm, copyWorkers: 1)
        var perPage: [Double] = []
        var totals: [Double] = []
        for rep in 0...repetitions {
            let a = try mm.mmap(length: bytes, protection: .readWrite)
            for k in 0..<pages { try mm.store(UInt8(k & 0xFF), at: pageAddress(a, k)) }
            let copyBefore = device.stats.copyNanoseconds.load(ordering: .relaxed)
            let t = monotonicNanoseconds()
            let r = device.migrateOnFault(a, pages: pages)
            let elapsed = Double(monotonicNanoseconds() - t)
            let copy = Double(device.stats.copyNanoseconds.load(ordering: .relaxed) - copyBefore)
            guard r.errno == 0, r.migrated == pages else {
                throw MMError.invalidArgument(
                    "unified migration moved \(r.migrated) of \(pages) pages (\(Errno.name(r.errno)))")
            }
            try mm.munmap(a, length: bytes)
            if rep > 0 {  // the first is a warm-up
                perPage.append((elapsed - copy) / Double(pages))
                totals.append(elapsed / Double(pages))
            }
        }
        return (totals.sorted(), perPage.sorted())
    }

    /// The floor under `lab_unified_overhead_ns_per_page`: the 22 atomic read-modify-writes a present
    /// page costs on the unified path, in the kernel as in the lab (counted in the lab's binary: one
    /// lock-prefixed instruction each), and nothing else, on descriptors of their own laid out as the
    /// model's (a source and a destination per page, a table lock per 512 pages, the entry in a field),
    /// in the path's five per-window loops:
    /// - the walk (`hmm_vma_handle_migrate_prepare`): PTE lock, `folio_get`, `folio_trylock`,
    ///   `ptep_get_and_clear`, `ClearPageAnonExclusive`, `folio_mark_dirty`, `folio_remove_rmap_pte`,
    ///   `folio_put` (8);
    /// - unmap: `folio_isolate_lru`'s test-and-clear, get and lruvec lock, the collect reference's put (4);
    /// - allocation: the device page's lock (1); `migrate_vma_pages`: `folio_migrate_flags` (1);
    /// - finalize (`remove_migration_pte` and the unlocks): PTE lock, `SetPageAnonExclusive`,
    ///   `folio_get`, `folio_add_anon_rmap_pte`, source unlock and put, destination unlock and put (8).
    /// The median over `repetitions` of ns per page.
    static func measureUnifiedAtomics(pages: Int, repetitions: Int) -> Double {
        let window = PageSize.pmdPages
        let tables = (pages + window - 1) / window
        let src = UnsafeMutablePointer<PageDescriptor>.allocate(capacity: pages)
        let dst = UnsafeMutablePointer<PageDescriptor>.allocate(capacity: pages)
        let ptl = UnsafeMutablePointer<PageDescriptor>.allocate(capacity: tables + 1)  // and the lruvec lock
        for i in 0..<pages {
            (src + i).initialize(to: PageDescriptor())
            (dst + i).initialize(to: PageDescriptor())
        }
        for t in 0...tables { (ptl + t).initialize(to: PageDescriptor()) }
        let lruLock = TableLock(ptl + tables)
        defer {
            src.deinitialize(count: pages)
            dst.deinitialize(count: pages)
            ptl.deinitialize(count: tables + 1)
            src.deallocate()
            dst.deallocate()
            ptl.deallocate()
        }
        let timer = Timer(repetitions: repetitions)
        let ns = timer.median {
            resetUnifiedDescriptors(src, dst, pages)
            return timer.time {
                var w = 0
                while w < pages {
                    let end = min(pages, w + window)
                    unifiedWindowAtomics(src, dst, w..<end, ptl: TableLock(ptl + w / window), lruLock: lruLock)
                    w = end
                }
            }
        }
        return ns / Double(pages)
    }

    /// The descriptors of ``measureUnifiedAtomics(pages:repetitions:)`` before a repetition: anon
    /// exclusive pages on the LRU, mapped once, and free device pages.
    private static func resetUnifiedDescriptors(
        _ src: UnsafeMutablePointer<PageDescriptor>, _ dst: UnsafeMutablePointer<PageDescriptor>, _ pages: Int
    ) {
        for i in 0..<pages {
            src[i].flags.store(PageFlags([.anon, .anonExclusive, .lru]).rawValue, ordering: .relaxed)
            src[i].refcount.store(1, ordering: .relaxed)
            src[i].mapcount.store(1, ordering: .relaxed)
            src[i].mapping.store(addressOfPage(UInt64(i)) | 0x67, ordering: .relaxed)
            dst[i].flags.store(PageFlags.zoneDevice.rawValue, ordering: .relaxed)
            dst[i].refcount.store(1, ordering: .relaxed)
            dst[i].mapcount.store(0, ordering: .relaxed)
        }
    }

    /// One window's descriptor atomics in the unified path's order: the walk under the PTE lock,
    /// the unmap (LRU isolation), the destination's allocation, `migrate_vma_pages`, the finalize.
    private static func unifiedWindowAtomics(
        _ src: UnsafeMutablePointer<PageDescriptor>, _ dst: UnsafeMutablePointer<PageDescriptor>, _ pages: Range<Int>,
        ptl lock: TableLock, lruLock: TableLock
    ) {
        for i in pages {  // the walk
            let s = src + i
            lock.lock()
            s.pointee.get()
            _ = s.pointee.tryLock()
            _ = s.pointee.mapping.exchange(0, ordering: .relaxed)
            s.pointee.clear(.anonExclusive)
            s.pointee.set(.dirty)
            s.pointee.mapcount.wrappingSubtract(1, ordering: .relaxed)
            _ = s.pointee.putTestZero()
            lock.unlock()
        }
        for i in pages {  // unmap
            _ = src[i].testAndClear(.lru)
            src[i].get()
            lruLock.lock()
            lruLock.unlock()
            _ = src[i].putTestZero()
        }
        for i in pages { _ = dst[i].tryLock() }  // allocation
        for i in pages { dst[i].set(.uptodate) }  // migrate_vma_pages
        for i in pages {  // finalize
            lock.lock()
            dst[i].set(.anonExclusive)
            dst[i].get()
            dst[i].mapcount.wrappingAdd(1, ordering: .relaxed)
            lock.unlock()
            src[i].unlock()
            _ = src[i].putTestZero()
            dst[i].unlock()
            _ = dst[i].putTestZero()
        }
    }
}
