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
    public var memorySummary: String

    /// Measures on fresh pools of `frames` 4 KiB frames each.
    public static func measure(frames: Int = 16384, repetitions: Int = 5, backing: BackingRequest = .auto) throws(RegionError) -> Calibration {
        let memory = try PhysicalMemory(.init(systemBytes: frames * PageSize.bytes, deviceBytes: frames * PageSize.bytes, backing: backing))
        // Leave room for the zero page.
        let n = (frames - FrameAllocator.blockFrames) / FrameAllocator.blockFrames * FrameAllocator.blockFrames
        var figures: [Figure] = []
        let pfns = UnsafeMutablePointer<Pfn>.allocate(capacity: n)
        defer { pfns.deallocate() }
        let indices = UnsafeMutablePointer<Int>.allocate(capacity: n)
        defer { indices.deallocate() }

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

        // Raw allocator, order 0.
        let allocator = memory.device.allocator
        var allocNs = [UInt64]()
        let rawFree = median {
            var a: UInt64 = 0
            let f = time {
                a = time { for i in 0..<n { if case .success(let x) = allocator.allocate(order: 0) { indices[i] = x } } }
                for i in 0..<n { allocator.free(indices[i], order: 0) }
            }
            allocNs.append(a)
            return f - a
        }
        allocNs.sort()
        figures.append(Figure(name: "frame_alloc_order0", value: Double(allocNs[allocNs.count / 2]) / Double(n), unit: "ns/frame", detail: "FrameAllocator.allocate(order: 0), one lock per frame"))
        figures.append(Figure(name: "frame_free_order0", value: rawFree / Double(n), unit: "ns/frame", detail: "FrameAllocator.free(order: 0), with buddy merge"))

        // Bulk allocation.
        let bulk = median {
            let t = time {
                var got = 0
                while got < n { got += allocator.allocateBulk(order: 0, count: min(512, n - got), into: indices + got) }
            }
            allocator.freeBulk(UnsafeBufferPointer(start: indices, count: n), order: 0)
            return t
        }
        figures.append(Figure(name: "frame_alloc_bulk_order0", value: bulk / Double(n), unit: "ns/frame", detail: "allocateBulk, 512 frames per lock"))

        // Folio allocation with descriptor preparation, and folio_put.
        var folioAlloc = [UInt64]()
        let folioPut = median {
            var a: UInt64 = 0
            let total = time {
                a = time { for i in 0..<n { if case .success(let f) = memory.allocate(.device, order: 0) { pfns[i] = f.pfn } } }
                for i in 0..<n { memory.put(Folio(pfn: pfns[i], order: 0)) }
            }
            folioAlloc.append(a)
            return total - a
        }
        folioAlloc.sort()
        figures.append(Figure(name: "folio_alloc_order0", value: Double(folioAlloc[folioAlloc.count / 2]) / Double(n), unit: "ns/folio", detail: "PhysicalMemory.allocate: allocator + prep_new_page"))
        figures.append(Figure(name: "folio_put_order0", value: folioPut / Double(n), unit: "ns/folio", detail: "folio_put to zero + free"))

        let blocks = n / FrameAllocator.blockFrames
        let large = median {
            time {
                for i in 0..<blocks { if case .success(let f) = memory.allocate(.device, order: 9) { pfns[i] = f.pfn } }
                for i in 0..<blocks { memory.put(Folio(pfn: pfns[i], order: 9)) }
            }
        }
        figures.append(Figure(name: "folio_alloc_put_order9", value: large / Double(blocks), unit: "ns/folio", detail: "2 MiB folio: allocate (512 descriptors) + put"))

        // Descriptor atomics.
        let head = memory.page(memory.zeroPage)
        let atomics = median {
            time { for _ in 0..<n { head.pointee.get(); _ = head.pointee.putTestZero() } }
        }
        figures.append(Figure(name: "descriptor_get_put", value: atomics / Double(n), unit: "ns/pair", detail: "folio_get + folio_put_testzero, uncontended"))
        let locks = median {
            time { for _ in 0..<n { if head.pointee.tryLock() { head.pointee.unlock() } } }
        }
        figures.append(Figure(name: "descriptor_trylock_unlock", value: locks / Double(n), unit: "ns/pair", detail: "folio_trylock + folio_unlock, uncontended"))

        // Copies between the pools.
        let half = n / 2
        let src = memory.system.region.base
        let dst = memory.device.region.base
        let copy4k = median { time { for i in 0..<half { memcpy(dst + i * 4096, src + i * 4096, 4096) } } }
        figures.append(Figure(name: "copy_4k", value: Double(half * 4096) / copy4k, unit: "GB/s", detail: "memcpy per 4 KiB page, system -> device pool"))
        let chunks = half / 512
        let copy2m = median { time { for i in 0..<chunks { memcpy(dst + i * (2 << 20), src + i * (2 << 20), 2 << 20) } } }
        figures.append(Figure(name: "copy_2m", value: Double(chunks * (2 << 20)) / copy2m, unit: "GB/s", detail: "memcpy per 2 MiB folio, system -> device pool"))

        // The lightest walk: a snapshot over present 4 KiB PTEs, against the kernel's mincore() over the
        // same number of present 4 KiB pages, in the same process run.
        do {
            let pages = half
            let mm = try AddressSpace(memory: memory)
            let start = try mm.mmap(length: pages * PageSize.bytes, protection: .readWrite)
            for k in 0..<pages { try mm.store(UInt8(1), at: start + UInt64(k) << 12) }
            let states = UnsafeMutablePointer<UInt8>.allocate(capacity: pages)
            defer { states.deallocate() }
            let walkNs = median {
                time {
                    var ops = SnapshotWalk(into: states, start: start, zeroPage: memory.zeroPage)
                    mm.mmapLock.withReadLock { _ = mm.walkPageRange(start, start + UInt64(pages) << 12, &ops) }
                }
            }
            let host = try Region(name: "mincore", length: pages * PageSize.bytes, backing: .small, node: memory.configuration.systemNode)
            let vec = UnsafeMutablePointer<UInt8>.allocate(capacity: pages)
            defer { vec.deallocate() }
            let mincoreNs = median { time { _ = mincore(host.base, pages * PageSize.bytes, vec) } }
            figures.append(Figure(name: "walk_snapshot_4k", value: walkNs / Double(pages), unit: "ns/page", detail: "walk_page_range snapshot of \(pages) present PTEs"))
            figures.append(Figure(name: "mincore_4k", value: mincoreNs / Double(pages), unit: "ns/page", detail: "kernel mincore() over \(pages) present 4 KiB pages"))
            figures.append(Figure(name: "walk_vs_mincore", value: walkNs / mincoreNs, unit: "ratio", detail: "target: at most 2"))
            let tableBytes = mm.pageTable.tableCount * PageSize.bytes
            figures.append(
                Figure(
                    name: "model_overhead", value: (Double(memory.descriptorBytes) / Double(memory.modelledBytes) + Double(tableBytes) / Double(pages * PageSize.bytes)) * 100,
                    unit: "%", detail: "descriptors per frame modelled + \(mm.pageTable.tableCount) page-table pages per page mapped"))
        } catch {
            figures.append(Figure(name: "walk_snapshot_4k", value: .nan, unit: "ns/page", detail: "could not build the address space: \(error)"))
        }

        return Calibration(figures: figures, memorySummary: memory.summary)
    }
}
