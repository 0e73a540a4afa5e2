import Glibc

/// What this machine offers the lab: NUMA nodes, huge pages, THP mode, the backing `auto` really gets,
/// and which perf events open. Everything is read from /sys, /proc and real probes, never assumed.
public struct MachineTopology: Sendable {
    /// What `auto` got for a probe Region, and why it passed over the better backings.
    struct BackingProbe: Sendable {
        public var bytes: Int
        public var backing: Backing?
        public var fallbacks: [String]
        public var error: String?
    }

    public var kernel: String
    var numaAvailable: Bool
    /// The nodes: CPUs, memory, hugetlb pages, distances.
    public var table: NodeTable
    var thpEnabled: String
    var thpDefrag: String
    /// The nodes a run with these options uses, and why the device node is that one.
    public var systemNode: Int
    public var deviceNode: Int
    public var deviceNodeReason: String
    /// Each device's node (`--devices`, `--device-nodes`): one entry, ``deviceNode``, for one device.
    public var deviceNodes: [Int]
    /// Whether the device nodes were given (`--device-node`, `--device-nodes`) rather than chosen.
    var deviceNodesAsked: Bool
    /// Where the run's threads would run.
    public var placement: ThreadPlacement
    /// A 2 MiB Region with `auto` on the system node.
    var smallProbe: BackingProbe
    /// The default run's memory areas (16384 pages, backing `auto`) on these nodes, each with the
    /// backing its own node gives it.
    var defaultRun: PoolPlan
    var perfEvents: [PerfEvents.Probe]
    var perfEventParanoid: Int?

    /// Pages of the default run.
    static let defaultRunPages = RunConfig().pages

    /// Reads the machine for a run on `systemNode` and `deviceNode` (nil: the default by distance).
    public static func read(systemNode: Int = 0, deviceNode: Int? = nil) -> MachineTopology {
        var config = RunConfig()
        config.systemNode = systemNode
        config.deviceNode = deviceNode
        return read(config)
    }

    /// Reads the machine for a run with `config`'s nodes and devices (its other options are the
    /// default run's). Maps (and unmaps) one 2 MiB probe Region and opens each probed perf event once.
    public static func read(_ given: RunConfig) -> MachineTopology {
        let table = NodeTable.read()
        let systemNode = given.systemNode
        let deviceNodes = given.resolvedDeviceNodes(table: table)
        let device = deviceNodes[0]
        var probe = BackingProbe(bytes: Region.extent, backing: nil, fallbacks: [], error: nil)
        do {
            let region = try Region(name: "probe", length: Region.extent, backing: .auto, node: systemNode)
            probe.backing = region.backing
            probe.fallbacks = region.verification.fallbacks
        } catch {
            probe.error = error.description
        }
        var config = RunConfig()
        config.systemNode = systemNode
        config.devices = deviceNodes.count
        config.deviceNodes = deviceNodes
        let asked = given.deviceNode != nil || given.deviceNodes != nil
        return MachineTopology(
            kernel: Sysfs.kernelRelease, numaAvailable: NUMA.isAvailable, table: table,
            thpEnabled: ThpSettings.enabled ?? "unsupported",
            thpDefrag: ThpSettings.defrag ?? "unsupported", systemNode: systemNode, deviceNode: device,
            deviceNodeReason: Self.deviceNodeReason(
                table: table, systemNode: systemNode, deviceNode: device, asked: asked),
            deviceNodes: deviceNodes, deviceNodesAsked: asked,
            placement: ThreadPlacement(systemNode: systemNode, table: table), smallProbe: probe,
            defaultRun: PoolPlan(config: config, table: table), perfEvents: PerfEvents.probe(),
            perfEventParanoid: Sysfs.readInt("/proc/sys/kernel/perf_event_paranoid"))
    }

    /// Where each device's pool goes and why, one line per device (one line in all for one device).
    var deviceLines: [String] {
        if deviceNodes.count == 1 { return ["device node \(deviceNode): \(deviceNodeReason)"] }
        let how =
            deviceNodesAsked
            ? "on the nodes asked"
            : table.nodesWithMemory.count == 1
                ? "all on the one node with memory (device memory is local)"
                : "round-robin over the other nodes with memory, farthest first"
        var out = ["\(deviceNodes.count) devices, each with its own pool, \(how):"]
        for (i, node) in deviceNodes.enumerated() {
            out.append(
                "  device \(i): node \(node), distance \(table.distance(systemNode, node)) from node \(systemNode)")
        }
        return out
    }

    /// Why the device pool goes on `deviceNode`, in a few words.
    public static func deviceNodeReason(table: NodeTable, systemNode: Int, deviceNode: Int, asked: Bool) -> String {
        if deviceNode == systemNode {
            return table.nodesWithMemory.count == 1
                ? "one node with memory: device memory is local" : "the system node, as asked: device memory is local"
        }
        let distance = "distance \(table.distance(systemNode, deviceNode))"
        if asked { return "as asked, \(distance) from node \(systemNode)" }
        return "the farthest node with memory from node \(systemNode), \(distance)"
    }
}

extension PhysicalMemory.Configuration {
    /// The pools a run over `pages` 4 KiB pages uses (``RunConfig/memoryNeeded``): system memory for
    /// twice the range (the range, copy-on-write copies, pages coming back from the device) and its page
    /// tables, and device memory for the range plus slack.
    static func forRun(pages: Int, systemNode: Int = 0, deviceNode: Int? = nil, backing: BackingRequest = .auto) -> Self
    {
        var config = RunConfig()
        config.pages = pages
        let need = config.memoryNeeded
        return Self(
            systemBytes: need.system, deviceBytes: need.device, systemNode: systemNode, deviceNode: deviceNode,
            backing: backing)
    }

    /// 2 MiB hugetlb pages the two pools take.
    var hugePagesNeeded: Int {
        let round = { (b: Int) in (b + Region.extent - 1) / Region.extent }
        return round(systemBytes) + round(deviceBytes)
    }
}
