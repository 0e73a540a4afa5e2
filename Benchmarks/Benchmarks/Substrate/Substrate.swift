import Benchmark
import HMMLab

/// The substrate's floors: frame allocation, folio preparation and descriptor atomics.
/// Each iteration works on 512 frames (one 2 MiB block's worth), so wall-clock / 512 is the cost per frame.
let benchmarks: @Sendable () -> Void = {
    let frames = 512
    let configuration = Benchmark.Configuration(
        metrics: [.wallClock, .mallocCountTotal, .custom("frames", useScalingFactor: false)],
        maxDuration: .seconds(1), maxIterations: 2_000)

    Benchmark("FrameAllocator order-0 allocate+free, 512 frames", configuration: configuration) {
        benchmark, allocator in
        var indices = [Int](repeating: 0, count: frames)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            for i in 0..<frames {
                if case .success(let index) = allocator.allocate(order: 0) { indices[i] = index }
            }
            for i in 0..<frames { allocator.free(indices[i], order: 0) }
        }
        benchmark.stopMeasurement()
        benchmark.measurement(.custom("frames", useScalingFactor: false), frames)
        blackHole(indices)
    } setup: {
        FrameAllocator(frames: 16 * 512)
    }

    Benchmark("PhysicalMemory order-0 folio allocate+put, 512 folios", configuration: configuration) {
        benchmark, memory in
        var pfns = [Pfn](repeating: Pfn(0), count: frames)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            for i in 0..<frames {
                if case .success(let folio) = memory.allocate(.device, order: 0) { pfns[i] = folio.pfn }
            }
            for i in 0..<frames { memory.put(Folio(pfn: pfns[i], order: 0)) }
        }
        benchmark.stopMeasurement()
        benchmark.measurement(.custom("frames", useScalingFactor: false), frames)
        blackHole(pfns)
    } setup: {
        try PhysicalMemory(.init(systemBytes: 4 << 20, deviceBytes: 8 << 20, backing: .small))
    }

    Benchmark("PhysicalMemory order-9 folio allocate+put", configuration: configuration) { benchmark, memory in
        for _ in benchmark.scaledIterations {
            if case .success(let folio) = memory.allocate(.device, order: 9) { memory.put(folio) }
        }
        benchmark.measurement(.custom("frames", useScalingFactor: false), 512)
    } setup: {
        try PhysicalMemory(.init(systemBytes: 4 << 20, deviceBytes: 8 << 20, backing: .small))
    }
}
