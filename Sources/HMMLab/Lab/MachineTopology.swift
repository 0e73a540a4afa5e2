import Glibc

/// What this machine offers the lab: NUMA nodes, huge pages, THP mode, the backing `auto` really gets,
/// and which perf events open. Everything is read from /sys, /proc and real probes, never assumed.
public struct MachineTopology: Sendable {
    /// One NUMA node.
    public struct Node: Sendable {
        public var id: Int
        public var cpus: [Int]
        public var memTotalBytes: Int
        public var memFreeBytes: Int
        public var hugetlbFree: Int
        public var hugetlbTotal: Int
    }

    /// What `auto` got for a probe Region, and why it passed over the better backings.
    public struct BackingProbe: Sendable {
        public var bytes: Int
        public var backing: Backing?
        public var fallbacks: [String]
        public var error: String?
    }

    public var kernel: String
    public var numaAvailable: Bool
    public var nodes: [Node]
    public var thpEnabled: String
    public var thpDefrag: String
    /// A 2 MiB Region with `auto`.
    public var smallProbe: BackingProbe
    /// Whether the default run's pools fit in the free hugetlb pages.
    public var defaultRunHugePagesNeeded: Int
    public var perfEvents: [PerfEvents.Probe]
    public var perfEventParanoid: Int?

    /// Reads the machine. Maps (and unmaps) one 2 MiB probe Region and opens each probed perf event once.
    public static func read(probeNode: Int = 0) -> MachineTopology {
        let kernel = Sysfs.kernelRelease

        var nodes: [Node] = []
        for id in NUMA.onlineNodes() {
            let dir = "/sys/devices/system/node/node\(id)"
            let meminfo = Sysfs.read("\(dir)/meminfo") ?? (NUMA.onlineNodes().count == 1 ? Sysfs.read("/proc/meminfo") : nil) ?? ""
            let cpus = Sysfs.read("\(dir)/cpulist").map(Sysfs.parseList) ?? Array(0..<Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
            nodes.append(
                Node(
                    id: id, cpus: cpus, memTotalBytes: Sysfs.kilobyteField("MemTotal", in: meminfo[...]) ?? 0,
                    memFreeBytes: Sysfs.kilobyteField("MemFree", in: meminfo[...]) ?? 0,
                    hugetlbFree: HugetlbPool.freePages(node: id) ?? 0, hugetlbTotal: HugetlbPool.totalPages(node: id) ?? 0))
        }

        var probe = BackingProbe(bytes: Region.extent, backing: nil, fallbacks: [], error: nil)
        do {
            let region = try Region(name: "probe", length: Region.extent, backing: .auto, node: probeNode)
            probe.backing = region.backing
            probe.fallbacks = region.verification.fallbacks
        } catch {
            probe.error = error.description
        }

        return MachineTopology(
            kernel: kernel, numaAvailable: NUMA.isAvailable, nodes: nodes, thpEnabled: ThpSettings.enabled ?? "unsupported",
            thpDefrag: ThpSettings.defrag ?? "unsupported", smallProbe: probe,
            defaultRunHugePagesNeeded: PhysicalMemory.Configuration.forRun(pages: 16384).hugePagesNeeded,
            perfEvents: PerfEvents.probe(), perfEventParanoid: Sysfs.readInt("/proc/sys/kernel/perf_event_paranoid"))
    }

    /// The backing `auto` would give the default run's pools on `node`: hugetlb when the node has the
    /// free pages, else THP unless disabled, else 4 KiB. The 2 MiB probe shows the kernel agrees.
    public func predictedDefaultBacking(node: Int = 0) -> Backing {
        let free = nodes.first { $0.id == node }?.hugetlbFree ?? 0
        if free >= defaultRunHugePagesNeeded { return .hugetlb }
        if thpEnabled != "never", thpEnabled != "unsupported" { return .thp }
        return .small
    }
}

extension PhysicalMemory.Configuration {
    /// The pools a run over `pages` 4 KiB pages uses (``RunConfig/memoryNeeded``): system memory for
    /// twice the range (the range, copy-on-write copies, pages coming back from the device) and its page
    /// tables, and device memory for the range plus slack.
    public static func forRun(pages: Int, systemNode: Int = 0, deviceNode: Int? = nil, backing: BackingRequest = .auto) -> Self {
        var config = RunConfig()
        config.pages = pages
        let need = config.memoryNeeded
        return Self(systemBytes: need.system, deviceBytes: need.device, systemNode: systemNode, deviceNode: deviceNode, backing: backing)
    }

    /// 2 MiB hugetlb pages the two pools take.
    public var hugePagesNeeded: Int {
        let round = { (b: Int) in (b + Region.extent - 1) / Region.extent }
        return round(systemBytes) + round(deviceBytes)
    }
}
