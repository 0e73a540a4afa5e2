/// The table of hmm-tests' `benchmark_thp_migration` (tools/testing/selftests/mm/hmm-tests.c, Balbir
/// Singh's series): for each buffer size, the buffer is mapped with `MADV_HUGEPAGE` and with
/// `MADV_NOHUGEPAGE`, written, migrated to the device and back once as a warm-up, then
/// `iterations` times `HMM_DMIRROR_MIGRATE_TO_DEV` and `HMM_DMIRROR_MIGRATE_TO_SYS` are timed apart
/// (explicit migration both ways, no CPU faults). Times are averages in ms; throughput is
/// `size / 2^30 / seconds` as the test computes it (so "GB/s" is GiB/s). The series' claim to check:
/// 350% more throughput and 80% less latency with THP.
public struct ThpTable: Sendable {
    public struct Row: Sendable {
        public var bytes: Int
        var thpToDeviceMs: Double
        var thpToSystemMs: Double
        var smallToDeviceMs: Double
        var smallToSystemMs: Double
        /// 2 MiB folios that went to the device whole per iteration with THP (0 when the size is below 2 MiB).
        var thpFolios: Int
        /// Half the range of the iterations' times, in % of their mean: with THP and without, each way.
        var thpSpread = Spread()
        var smallSpread = Spread()

        struct Spread: Sendable {
            var toDevice = 0.0
            var toSystem = 0.0
            public init(toDevice: Double = 0, toSystem: Double = 0) {
                self.toDevice = toDevice
                self.toSystem = toSystem
            }
        }

        static func gibps(_ bytes: Int, _ ms: Double) -> Double { Double(bytes) / Double(1 << 30) / (ms / 1000) }
        var thpToDeviceGiBps: Double { Self.gibps(bytes, thpToDeviceMs) }
        var thpToSystemGiBps: Double { Self.gibps(bytes, thpToSystemMs) }
        var smallToDeviceGiBps: Double { Self.gibps(bytes, smallToDeviceMs) }
        var smallToSystemGiBps: Double { Self.gibps(bytes, smallToSystemMs) }
        /// Latency improvement in % (time saved) and throughput improvement in %.
        var toDeviceLatencyGain: Double { (smallToDeviceMs - thpToDeviceMs) / smallToDeviceMs * 100 }
        var toSystemLatencyGain: Double { (smallToSystemMs - thpToSystemMs) / smallToSystemMs * 100 }
        var toDeviceThroughputGain: Double { (thpToDeviceGiBps / smallToDeviceGiBps - 1) * 100 }
        var toSystemThroughputGain: Double { (thpToSystemGiBps / smallToSystemGiBps - 1) * 100 }
    }

    /// thp/4, thp/2, thp, 2×, 4×, 8×, 128× (the test's sizes).
    public static let sizes = [512 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20, 256 << 20]

    public var rows: [Row]
    /// The backing the pools got and the THP mode, when the model measured them.
    public var backing = ""
    public var thpMode = ""

    /// Why a size could not be measured.
    public struct MeasureError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Measures every size, THP and not, on pools sized for the largest.
    public static func measure(
        sizes: [Int] = sizes, iterations: Int = 5, backing: BackingRequest = .auto, threads: Int = 1,
        progress: (Int, Bool) -> Void = { _, _ in }
    ) throws(MeasureError) -> ThpTable {
        let largest = sizes.max() ?? 0
        let memory: PhysicalMemory
        do {
            memory = try PhysicalMemory(
                .init(
                    systemBytes: 3 * largest + 21 * PageSize.pmdBytes, deviceBytes: largest + 4 * PageSize.pmdBytes,
                    backing: backing))
        } catch {
            throw MeasureError(description: "memory for the table: \(error)")
        }
        var rows: [Row] = []
        for size in sizes {
            progress(size, true)
            let thp = try time(memory: memory, bytes: size, hugepage: true, iterations: iterations, threads: threads)
            progress(size, false)
            let small = try time(memory: memory, bytes: size, hugepage: false, iterations: iterations, threads: threads)
            rows.append(
                Row(
                    bytes: size, thpToDeviceMs: thp.toDevice, thpToSystemMs: thp.toSystem,
                    smallToDeviceMs: small.toDevice, smallToSystemMs: small.toSystem,
                    thpFolios: thp.folios, thpSpread: thp.spread, smallSpread: small.spread))
        }
        return ThpTable(
            rows: rows, backing: memory.system.region.backing.rawValue, thpMode: ThpSettings.enabled ?? "unsupported")
    }

    /// Half the range of `samples` (ns) in % of their mean.
    static func spread(_ samples: [UInt64]) -> Double {
        guard let lo = samples.min(), let hi = samples.max(), !samples.isEmpty else { return 0 }
        let mean = Double(samples.reduce(0, +)) / Double(samples.count)
        return mean > 0 ? Double(hi - lo) / 2 / mean * 100 : 0
    }

    static func time(
        memory: PhysicalMemory, bytes: Int, hugepage: Bool, iterations: Int, threads: Int
    ) throws(MeasureError) -> (toDevice: Double, toSystem: Double, folios: Int, spread: Row.Spread) {
        do {
            let mm = try AddressSpace(memory: memory)
            defer { mm.teardown() }
            let pages = bytes / PageSize.bytes
            let a = try mm.mmap(length: bytes, protection: .readWrite)
            defer { try? mm.munmap(a, length: bytes) }
            try mm.madvise(a, length: bytes, hugepage: hugepage)
            for k in 0..<pages { try mm.store(UInt64(k), at: pageAddress(a, k)) }
            let device = Device(memory: memory, mm: mm, copyWorkers: threads)
            defer { device.close() }
            var toDevice: [UInt64] = []
            var toSystem: [UInt64] = []
            var folios = 0
            for i in 0...iterations {
                let h0 = device.stats.hugeToDevice.load(ordering: .relaxed)
                let t0 = monotonicNanoseconds()
                let r = device.migrateToDevice(a, pages: pages)
                let t1 = monotonicNanoseconds()
                let back = device.migrateToSystem(a, pages: pages)
                let t2 = monotonicNanoseconds()
                guard r.errno == 0, r.migrated == pages, back.errno == 0, back.migrated == pages else {
                    throw MeasureError(
                        description:
                            "\(Region.formatBytes(bytes)) \(hugepage ? "THP" : "4 KiB"): migrated \(r.migrated) of \(pages) pages to the device "
                            + "(\(Errno.name(r.errno))) and \(back.migrated) back (\(Errno.name(back.errno)))")
                }
                if i == 0 { continue }  // the warm-up round trip
                toDevice.append(t1 - t0)
                toSystem.append(t2 - t1)
                folios = device.stats.hugeToDevice.load(ordering: .relaxed) - h0
            }
            let n = Double(iterations) * 1e6
            return (
                Double(toDevice.reduce(0, +)) / n, Double(toSystem.reduce(0, +)) / n, folios,
                Row.Spread(toDevice: spread(toDevice), toSystem: spread(toSystem))
            )
        } catch let error as MeasureError {
            throw error
        } catch {
            throw MeasureError(description: "\(Region.formatBytes(bytes)) \(hugepage ? "THP" : "4 KiB"): \(error)")
        }
    }

    /// The test's layout: per size, with THP, without, and the improvement.
    public var text: String {
        var out = ""
        for r in rows {
            out +=
                "\nBuffer size: \(Region.formatBytes(r.bytes))\(r.thpFolios > 0 ? " (\(r.thpFolios) THP folio\(r.thpFolios == 1 ? "" : "s"))" : " (below 2 MiB: no THP)")\n"
            out += "                         With THP        Without THP    Improvement\n"
            func line(
                _ name: String, _ a: Double, _ b: Double, _ unit: String, _ gain: Double, _ spread: (Double, Double)?
            ) -> String {
                func cell(_ v: Double, _ s: Double?) -> String {
                    (Summary.fixed(v, 3) + " " + unit + (s.map { " ±" + Summary.fixed($0, 0) + "%" } ?? "     "))
                        .leftPad(17)
                }
                return name.padding(16) + cell(a, spread?.0) + "  " + cell(b, spread?.1)
                    + (Summary.fixed(gain, 1) + "%").leftPad(13) + "\n"
            }
            out += line(
                "Sys->Dev time", r.thpToDeviceMs, r.smallToDeviceMs, "ms", r.toDeviceLatencyGain,
                (r.thpSpread.toDevice, r.smallSpread.toDevice))
            out += line(
                "Dev->Sys time", r.thpToSystemMs, r.smallToSystemMs, "ms", r.toSystemLatencyGain,
                (r.thpSpread.toSystem, r.smallSpread.toSystem))
            out += line(
                "S->D throughput", r.thpToDeviceGiBps, r.smallToDeviceGiBps, "GB/s", r.toDeviceThroughputGain, nil)
            out += line(
                "D->S throughput", r.thpToSystemGiBps, r.smallToSystemGiBps, "GB/s", r.toSystemThroughputGain, nil)
        }
        return out
    }

    /// One record per size and THP setting.
    public var csv: String {
        var out = CSV.line([
            "size_bytes", "thp", "to_device_ms", "to_system_ms", "to_device_gibps", "to_system_gibps", "thp_folios",
            "to_device_spread_percent",
            "to_system_spread_percent", "backing", "thp_mode",
        ])
        for r in rows {
            out += CSV.line([
                String(r.bytes), "1", ResultRow.number(r.thpToDeviceMs), ResultRow.number(r.thpToSystemMs),
                ResultRow.number(r.thpToDeviceGiBps),
                ResultRow.number(r.thpToSystemGiBps), String(r.thpFolios), ResultRow.number(r.thpSpread.toDevice),
                ResultRow.number(r.thpSpread.toSystem), backing, thpMode,
            ])
            out += CSV.line([
                String(r.bytes), "0", ResultRow.number(r.smallToDeviceMs), ResultRow.number(r.smallToSystemMs),
                ResultRow.number(r.smallToDeviceGiBps),
                ResultRow.number(r.smallToSystemGiBps), "0", ResultRow.number(r.smallSpread.toDevice),
                ResultRow.number(r.smallSpread.toSystem), backing, thpMode,
            ])
        }
        return out
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
