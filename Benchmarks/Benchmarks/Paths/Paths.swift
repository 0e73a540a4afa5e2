import Benchmark
import HMMLab

/// The device-memory paths: the walker per PTE, a fault per page by kind, the copy per 4 KiB page and
/// per 2 MiB folio, and one whole op per strategy on a present window and on a window with swap
/// entries. Besides time, each records exact counts (walks, restarts, faults, PTEs visited) as custom
/// metrics; the committed thresholds (Thresholds/) are on those counts only, so the check is not
/// flaky on a shared machine. Names have no spaces: the plugin's threshold files are named after them.
let benchmarks: @Sendable () -> Void = {
    let exact = BenchmarkThresholds(absolute: [.p90: 0])
    func counted(_ names: [String]) -> Benchmark.Configuration {
        var thresholds: [BenchmarkMetric: BenchmarkThresholds] = [:]
        for n in names { thresholds[.custom(n)] = exact }
        return .init(
            metrics: [.wallClock] + names.map { .custom($0) } + [.custom("op_ns")],
            maxDuration: .seconds(1), maxIterations: 500, thresholds: thresholds)
    }
    func record(_ benchmark: Benchmark, _ name: String, _ value: Int) {
        benchmark.measurement(.custom(name), value)
    }
    let pages = 512

    final class Lab: @unchecked Sendable {
        let memory: PhysicalMemory
        let swap: SwapArea
        let mm: AddressSpace
        init() throws {
            memory = try PhysicalMemory(.init(systemBytes: 32 << 20, deviceBytes: 8 << 20, backing: .small))
            swap = try SwapArea(bytes: 8 << 20, backing: .small)
            mm = try AddressSpace(memory: memory, swap: swap)
        }
    }

    Benchmark("walk-snapshot-512-present-ptes", configuration: counted(["walks", "ptes"])) { benchmark, lab in
        let a = try lab.mm.mmap(length: pages * 4096, protection: .readWrite)
        for k in 0..<pages { try lab.mm.store(UInt8(1), at: a + UInt64(k) << 12) }
        for _ in benchmark.scaledIterations {
            let w0 = lab.mm.counters.walks.load(ordering: .relaxed)
            let p0 = lab.mm.counters.entriesVisited.load(ordering: .relaxed)
            let t = monotonicNanoseconds()
            blackHole(lab.mm.snapshot(a, pages: pages))
            record(benchmark, "op_ns", Int(monotonicNanoseconds() - t))
            record(benchmark, "walks", lab.mm.counters.walks.load(ordering: .relaxed) - w0)
            record(benchmark, "ptes", lab.mm.counters.entriesVisited.load(ordering: .relaxed) - p0)
        }
        try lab.mm.munmap(a, length: pages * 4096)
    } setup: {
        try Lab()
    }

    for kind in ["anonymous", "zero-page", "swap-in"] {
        Benchmark("fault-512-\(kind)", configuration: counted(["faults"])) { benchmark, lab in
            for _ in benchmark.scaledIterations {
                let a = try lab.mm.mmap(length: pages * 4096, protection: .readWrite)
                if kind == "swap-in" {
                    for k in 0..<pages { try lab.mm.store(UInt8(1), at: a + UInt64(k) << 12) }
                    _ = try lab.mm.swapOut(a, pages: pages)
                }
                let f0 = lab.mm.counters.totalFaults
                let t = monotonicNanoseconds()
                for k in 0..<pages { _ = try lab.mm.handleFault(at: a + UInt64(k) << 12, write: kind != "zero-page") }
                record(benchmark, "op_ns", Int(monotonicNanoseconds() - t) / pages)
                record(benchmark, "faults", lab.mm.counters.totalFaults - f0)
                try lab.mm.munmap(a, length: pages * 4096)
            }
        } setup: {
            try Lab()
        }
    }

    for (label, bytes, count) in [("512-pages-of-4KiB", 4096, 512), ("one-2MiB-folio", 2 << 20, 1)] {
        Benchmark("copy-\(label)", configuration: counted(["bytes"])) { benchmark, memory in
            let engine = CopyEngine(workers: 1)
            let src = memory.system.region.base
            let dst = memory.device.region.base
            for _ in benchmark.scaledIterations {
                let t = monotonicNanoseconds()
                for i in 0..<count { engine.copy(from: src + i * bytes, to: dst + i * bytes, bytes: bytes) }
                engine.run()
                record(benchmark, "op_ns", Int(monotonicNanoseconds() - t))
                record(benchmark, "bytes", engine.takeTotals().copied)
            }
        } setup: {
            try PhysicalMemory(.init(systemBytes: 4 << 20, deviceBytes: 4 << 20, backing: .auto))
        }
    }

    for strategy in Strategy.allCases {
        for swapped in [0, 64] {
            let window = swapped == 0 ? "present-window" : "window-with-64-swap-entries"
            Benchmark("op-\(strategy)-\(window)", configuration: counted(["walks", "restarts", "faults", "migrated"])) {
                benchmark, lab in
                let device = Device(memory: lab.memory, mm: lab.mm)
                defer { device.close() }
                for _ in benchmark.scaledIterations {
                    let a = try lab.mm.mmap(length: pages * 4096, protection: .readWrite)
                    for k in 0..<pages { try lab.mm.store(UInt64(k), at: a + UInt64(k) << 12) }
                    if swapped > 0 { _ = try lab.mm.swapOut(a + 100 * 4096, pages: swapped) }
                    let t = monotonicNanoseconds()
                    let r = device.makeResident(a, pages: pages, strategy: strategy)
                    record(benchmark, "op_ns", Int(monotonicNanoseconds() - t))
                    record(benchmark, "walks", r.walks)
                    record(benchmark, "restarts", r.restarts)
                    record(benchmark, "faults", r.faults)
                    record(benchmark, "migrated", r.migrated)
                    try lab.mm.munmap(a, length: pages * 4096)
                }
            } setup: {
                try Lab()
            }
        }
    }
}
