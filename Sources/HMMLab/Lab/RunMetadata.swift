import Glibc

/// What machine and build produced a run: the self-describing part of every CSV row.
public struct RunMetadata: Sendable {
    /// The lab's version, written into every row.
    public static let toolVersion = "0.6.0"

    public var runId: String
    public var toolVersion = RunMetadata.toolVersion
    public var host: String
    public var kernel: String
    public var cpuModel: String
    public var cpus: Int
    public var numaNodes: Int
    public var systemNode: Int
    public var deviceNode: Int
    /// Every device pool's node, as placed and read back, in device order (`1,2`); one node with one device.
    public var deviceNodes = ""
    /// The backing the system pool really got (hugetlb, thp or 4k), after fallbacks: the one backing
    /// of the first result files, kept beside the per-pool columns.
    public var backing: String
    /// The backing each pool really got; they differ when one pool's node could not give the other's
    /// (`device-private` for the kernel engine's device pages).
    public var systemBacking = ""
    public var deviceBacking = ""
    /// The CPUs every thread of the run was pinned to (`0-1`), empty when threads were not pinned.
    var pinnedCPUs = ""
    /// `/sys/kernel/mm/transparent_hugepage/enabled`, the selected mode.
    public var thpMode: String
    /// Plain memcpy bandwidth between the two pools, GB/s (measured at start).
    public var memcpyGBps: Double
    /// The same with `--threads` threads copying at once, GB/s (measured at start; equal to
    /// ``memcpyGBps`` with one thread).
    var memcpyThreadsGBps: Double = .nan
    /// The kernel's `mincore()` cost per present 4 KiB page, ns (measured at start).
    public var kernelWalkNs: Double
    /// How modelled TLB flushes were paid: `membarrier` or `mprotect` (``TLBShootdown/Mechanism``), or
    /// `none` when they were counted only.
    var tlbShootdown = "none"

    /// No machine: empty names, zero counts, floors not measured (for a row built only for its
    /// configuration columns).
    static let unknown = RunMetadata(
        runId: "", host: "", kernel: "", cpuModel: "", cpus: 0, numaNodes: 0, systemNode: 0, deviceNode: 0, backing: "",
        thpMode: "", memcpyGBps: .nan,
        kernelWalkNs: .nan)

    /// Reads the machine; the two floors are filled in by the runner's start-up calibration.
    public static func read(systemNode: Int, deviceNode: Int, backing: String) -> RunMetadata {
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count)
        let host = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let cpuinfo = Sysfs.read("/proc/cpuinfo") ?? ""
        let model =
            cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }.map { line in
                line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingWhitespace() } ?? ""
            } ?? "unknown"
        return RunMetadata(
            runId: Self.newRunId(), host: host, kernel: Sysfs.kernelRelease, cpuModel: model,
            cpus: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
            numaNodes: NUMA.onlineNodes().count, systemNode: systemNode, deviceNode: deviceNode, backing: backing,
            systemBacking: backing,
            thpMode: ThpSettings.enabled ?? "unsupported", memcpyGBps: .nan, kernelWalkNs: .nan)
    }

    /// `20261122T041530Z-3fa2`: the UTC start time and 16 random bits.
    static func newRunId() -> String {
        var rng = SystemRandomNumberGenerator()
        let r = UInt16.random(in: 0...UInt16.max, using: &rng)
        let hex = String(r, radix: 16)
        return UTCTime.now().compact + "-" + String(repeating: "0", count: 4 - hex.count) + hex
    }
}

/// Wall-clock UTC time for file names and row timestamps.
struct UTCTime: Sendable {
    var year, month, day, hour, minute, second: Int

    public static func now() -> UTCTime {
        var t = time(nil)
        var out = tm()
        gmtime_r(&t, &out)
        return UTCTime(
            year: Int(out.tm_year) + 1900, month: Int(out.tm_mon) + 1, day: Int(out.tm_mday), hour: Int(out.tm_hour),
            minute: Int(out.tm_min),
            second: Int(out.tm_sec))
    }

    private func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

    /// `2026-11-22T04:15:30Z`.
    var iso8601: String { "\(year)-\(two(month))-\(two(day))T\(two(hour)):\(two(minute)):\(two(second))Z" }

    /// `20261122T041530Z`.
    var compact: String { "\(year)\(two(month))\(two(day))T\(two(hour))\(two(minute))\(two(second))Z" }
}
