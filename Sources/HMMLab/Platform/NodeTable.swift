import Glibc

/// The machine's NUMA nodes as the lab's placement decisions need them: CPUs, the memory an
/// allocation bound to the node can still get, 2 MiB hugetlb pages and the distance table.
///
/// Read from /sys and /proc by ``read()``, or built by hand (tests give a fake topology), so every
/// decision below is a function of this value alone: the default device node
/// (``farthestNodeWithMemory(from:)``), where threads run (``nearestNodeWithCPUs(to:)``), and the
/// memory check of ``PoolPlan``.
public struct NodeTable: Sendable, Equatable {
    /// One NUMA node.
    public struct Node: Sendable, Equatable {
        var id: Int
        /// Its CPUs (`nodeN/cpulist`); empty for a memory-only node (CXL, HBM, a guest's CPU-less node).
        public var cpus: [Int]
        /// Whether the node is in `has_memory` (a CPU-only node is not).
        var hasMemory: Bool
        var memTotalBytes: Int
        var memFreeBytes: Int
        /// What an allocation bound to this node can get without swapping: ``availableBytes(free:fileLRU:reclaimableSlab:lowWatermark:highWatermark:)``.
        var memAvailableBytes: Int
        var hugetlbFree: Int
        var hugetlbTotal: Int
        /// SLIT distance to each node by id (`nodeN/distance`: 10 to itself, 20 for one hop on most
        /// machines).
        var distances: [Int: Int]

        public init(
            id: Int, cpus: [Int], hasMemory: Bool = true, memTotalBytes: Int, memFreeBytes: Int, memAvailableBytes: Int,
            hugetlbFree: Int = 0, hugetlbTotal: Int = 0, distances: [Int: Int] = [:]
        ) {
            self.id = id
            self.cpus = cpus
            self.hasMemory = hasMemory
            self.memTotalBytes = memTotalBytes
            self.memFreeBytes = memFreeBytes
            self.memAvailableBytes = memAvailableBytes
            self.hugetlbFree = hugetlbFree
            self.hugetlbTotal = hugetlbTotal
            self.distances = distances
        }
    }

    public var nodes: [Node]

    public init(nodes: [Node]) { self.nodes = nodes.sorted { $0.id < $1.id } }

    public func node(_ id: Int) -> Node? { nodes.first { $0.id == id } }

    public var nodesWithMemory: [Int] { nodes.filter(\.hasMemory).map(\.id) }

    /// The distance from `a` to `b`: the table's, else 10 to itself and 20 to any other node (the
    /// kernel's `LOCAL_DISTANCE` and `REMOTE_DISTANCE` when firmware gives no SLIT).
    func distance(_ a: Int, _ b: Int) -> Int {
        node(a)?.distances[b] ?? (a == b ? 10 : 20)
    }

    /// The default device node for `systemNode`: the node with memory farthest from it by the
    /// distance table (the lowest id among equals), so "device memory" is as far away as this machine
    /// has, not merely the next node number (on SNC/NPS machines that is often the same socket).
    /// `systemNode` itself when no other node has memory.
    public func farthestNodeWithMemory(from systemNode: Int) -> Int {
        let others = nodesWithMemory.filter { $0 != systemNode }
        guard let first = others.first else { return systemNode }
        return others.reduce(first) { best, n in distance(systemNode, n) > distance(systemNode, best) ? n : best }
    }

    /// The nodes of `count` devices for `systemNode`: round-robin over the other nodes with memory,
    /// farthest first by the distance table (the lowest id among equals), so each device is as far
    /// from the system node as the machine allows before two share a node; every device on
    /// `systemNode` when no other node has memory.
    public func deviceNodes(count: Int, systemNode: Int) -> [Int] {
        let others = nodesWithMemory.filter { $0 != systemNode }
            .sorted { (distance(systemNode, $0), -$0) > (distance(systemNode, $1), -$1) }
        guard !others.isEmpty else { return Array(repeating: systemNode, count: count) }
        return (0..<count).map { others[$0 % others.count] }
    }

    /// The node whose CPUs threads working on `node`'s memory run on: `node` itself when it has CPUs,
    /// else the nearest node that has some (the lowest id among equals); nil when no node lists CPUs.
    func nearestNodeWithCPUs(to node: Int) -> Int? {
        if let n = self.node(node), !n.cpus.isEmpty { return node }
        let candidates = nodes.filter { !$0.cpus.isEmpty }.map(\.id)
        guard let first = candidates.first else { return nil }
        return candidates.reduce(first) { best, n in distance(node, n) < distance(node, best) ? n : best }
    }

    /// Memory an allocation can get from a node without swapping, as `si_mem_available()`
    /// (mm/show_mem.c) computes MemAvailable, applied to one node's counters: free pages less the
    /// reserve the allocator keeps (`totalreserve_pages`, taken here as the node's high watermarks),
    /// plus the page cache and reclaimable slab beyond what reclaim leaves (half, at most the low
    /// watermark). The kernel has no per-node MemAvailable; this mirrors its formula per node.
    static func availableBytes(
        free: Int, fileLRU: Int, reclaimableSlab: Int, lowWatermark: Int, highWatermark: Int
    ) -> Int {
        var available = free - highWatermark
        available += fileLRU - min(fileLRU / 2, lowWatermark)
        available += reclaimableSlab - min(reclaimableSlab / 2, lowWatermark)
        return max(available, 0)
    }
}

extension NodeTable {
    /// Reads the online nodes from /sys. With a single node (or no node directories) its memory is
    /// /proc/meminfo's, and its available memory the kernel's own MemAvailable.
    public static func read() -> NodeTable {
        let online = NUMA.onlineNodes()
        let withMemory = Set(NUMA.nodesWithMemory())
        let watermarks = Self.watermarks(Sysfs.read("/proc/zoneinfo") ?? "")
        let allCPUs = Array(0..<Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        var nodes: [Node] = []
        for id in online {
            let dir = "/sys/devices/system/node/node\(id)"
            let nodeInfo = Sysfs.read("\(dir)/meminfo")
            // With one node the machine's own counters are the node's (some guests' node meminfo
            // leaves out hot-added memory).
            let meminfo = ((online.count == 1 ? nil : nodeInfo) ?? Sysfs.read("/proc/meminfo") ?? "")[...]
            let field = { (name: String) in Sysfs.kilobyteField(name, in: meminfo) ?? 0 }
            let free = field("MemFree")
            let (low, high) = watermarks[id] ?? (0, 0)
            var available = availableBytes(
                free: free, fileLRU: field("Active(file)") + field("Inactive(file)"),
                reclaimableSlab: field("SReclaimable"),
                lowWatermark: low, highWatermark: high)
            if online.count == 1,
                let global = Sysfs.kilobyteField("MemAvailable", in: (Sysfs.read("/proc/meminfo") ?? "")[...])
            {
                available = global
            }
            nodes.append(
                Node(
                    id: id, cpus: Sysfs.read("\(dir)/cpulist").map(Sysfs.parseList) ?? (nodeInfo == nil ? allCPUs : []),
                    hasMemory: withMemory.contains(id) || nodeInfo == nil, memTotalBytes: field("MemTotal"),
                    memFreeBytes: free,
                    memAvailableBytes: available, hugetlbFree: Self.hugetlbPages(node: id, file: "free_hugepages") ?? 0,
                    hugetlbTotal: Self.hugetlbPages(node: id, file: "nr_hugepages") ?? 0,
                    distances: Self.distances(id, online: online)))
        }
        return NodeTable(nodes: nodes)
    }

    /// 2 MiB hugetlb pages of one node (`nodeN/hugepages/hugepages-2048kB/FILE`: `free_hugepages`,
    /// `nr_hugepages`), or of the machine when there is no node directory; nil without hugetlb.
    static func hugetlbPages(node: Int, file: String) -> Int? {
        Sysfs.readInt("/sys/devices/system/node/node\(node)/hugepages/hugepages-2048kB/\(file)")
            ?? Sysfs.readInt("/sys/kernel/mm/hugepages/hugepages-2048kB/\(file)")
    }

    /// `nodeN/distance`: one distance per online node, in the order of `online`.
    private static func distances(_ node: Int, online: [Int]) -> [Int: Int] {
        guard let text = Sysfs.read("/sys/devices/system/node/node\(node)/distance") else { return [:] }
        let values = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Int($0) }
        guard values.count == online.count else { return [:] }
        return Dictionary(uniqueKeysWithValues: zip(online, values))
    }

    /// The sum of each node's zones' `low` and `high` watermarks from /proc/zoneinfo, in bytes.
    static func watermarks(_ zoneinfo: String) -> [Int: (low: Int, high: Int)] {
        var result: [Int: (low: Int, high: Int)] = [:]
        var node: Int?
        for line in zoneinfo.split(separator: "\n") {
            let words = line.split(separator: " ")
            if words.first == "Node", words.count > 1 {
                node = Int(words[1].filter { $0 != "," })
                continue
            }
            guard let node, words.count == 2, let pages = Int(words[1]) else { continue }
            let bytes = pages * Int(getpagesize())
            if words[0] == "low" { result[node, default: (0, 0)].low += bytes }
            if words[0] == "high" { result[node, default: (0, 0)].high += bytes }
        }
        return result
    }
}
