/// Where each memory area of a run will live and what will back it, decided from a ``NodeTable``
/// before anything is allocated.
///
/// The areas are taken in the order the run maps them (system pool, device pool, descriptors, swap
/// area), and each gets what ``Region`` would give it: hugetlb 2 MiB pages when its request allows
/// them and its node still has enough free after the areas before it, else THP unless THP is
/// disabled, else 4 KiB pages. ``shortfall()`` then compares, node by node, the regular memory the
/// non-hugetlb areas need with what the node has available. Every area is bound to its node with
/// `MPOL_BIND`, so an area that does not fit its node is not served from another one: the kernel
/// reclaims and then OOM-kills (`constraint=CONSTRAINT_MEMORY_POLICY`), possibly another process.
/// A plan with a shortfall is refused instead, with one line naming the node and the sizes.
public struct PoolPlan: Sendable {
    /// One memory area.
    public struct Area: Sendable {
        public var name: String
        public var node: Int
        public var bytes: Int
        /// The backings it may take, best first (``BackingRequest/candidates``).
        public var candidates: [Backing]
        /// What it will get; nil when no candidate can be had (hugetlb only without the pages, THP
        /// only with THP disabled).
        var predicted: Backing?
        /// Why better candidates are passed over, one entry each.
        public var fallbacks: [String]

        /// 2 MiB pages it takes as hugetlb (Regions are whole 2 MiB extents).
        var hugePages: Int { (bytes + HugetlbPool.pageSize - 1) / HugetlbPool.pageSize }
    }

    public private(set) var areas: [Area] = []
    public let table: NodeTable

    /// Plans `areas` (name, node, bytes, candidates) in order on `table`, with THP in mode `thpEnabled`
    /// (`never` or nil: no THP).
    public init(
        _ requests: [(name: String, node: Int, bytes: Int, candidates: [Backing])], table: NodeTable,
        thpEnabled: String? = ThpSettings.enabled
    ) {
        self.table = table
        var hugetlbLeft = Dictionary(uniqueKeysWithValues: table.nodes.map { ($0.id, $0.hugetlbFree) })
        for r in requests {
            var area = Area(
                name: r.name, node: r.node, bytes: r.bytes, candidates: r.candidates, predicted: nil, fallbacks: [])
            for candidate in r.candidates {
                if let reason = Self.unavailable(
                    candidate, area: area, hugetlbLeft: hugetlbLeft[r.node] ?? 0, thpEnabled: thpEnabled)
                {
                    area.fallbacks.append("\(candidate): \(reason)")
                    continue
                }
                area.predicted = candidate
                if candidate == .hugetlb { hugetlbLeft[r.node, default: 0] -= area.hugePages }
                break
            }
            areas.append(area)
        }
    }

    /// Why `backing` cannot be had for `area`, or nil when it can.
    private static func unavailable(_ backing: Backing, area: Area, hugetlbLeft: Int, thpEnabled: String?) -> String? {
        switch backing {
        case .hugetlb:
            hugetlbLeft >= area.hugePages
                ? nil : "\(max(hugetlbLeft, 0)) free 2 MiB hugetlb pages on node \(area.node), \(area.hugePages) needed"
        case .thp:
            thpEnabled == nil || thpEnabled == "never"
                ? "THP is disabled (transparent_hugepage/enabled is \(thpEnabled ?? "absent"))" : nil
        case .small:
            nil
        }
    }

    /// The plan of a run: its system pool and its device pools (one per device) on their nodes with `--backing`, the descriptor array (THP,
    /// or 4 KiB with `--backing 4k`) and the swap area (`auto` when the pools ask for hugetlb) on the
    /// system node, as ``Runner/init(config:)`` maps them.
    public init(config: RunConfig, table: NodeTable, thpEnabled: String? = ThpSettings.enabled) {
        let need = config.memoryNeeded
        let deviceNodes = config.resolvedDeviceNodes(table: table)
        let descriptors =
            (need.system + need.device * deviceNodes.count) / PageSize.bytes * PhysicalMemory.descriptorSize
        let backing = config.backing
        let pools = deviceNodes.enumerated().map { i, node in
            (
                name: deviceNodes.count == 1 ? "device pool" : "device pool \(i)", node: node, bytes: need.device,
                candidates: backing.candidates
            )
        }
        self.init(
            [("system pool", config.systemNode, need.system, backing.candidates)] + pools + [
                ("descriptors", config.systemNode, descriptors, backing == .small ? [.small] : [.thp, .small]),
                (
                    "swap area", config.systemNode, need.swap,
                    (backing == .hugetlb ? BackingRequest.auto : backing).candidates
                ),
            ], table: table, thpEnabled: thpEnabled)
    }

    /// Regular (not hugetlb) memory each node must give, bytes.
    var regularBytesPerNode: [Int: Int] {
        var bytes: [Int: Int] = [:]
        for area in areas where area.predicted != .hugetlb { bytes[area.node, default: 0] += area.bytes }
        return bytes
    }

    /// Why the plan cannot run, in one line (without the option that sized it), or nil when every
    /// area has a backing and every node has the memory.
    func shortfall() -> String? {
        if let area = areas.first(where: { $0.predicted == nil }) {
            let what = "the \(area.name) (\(Region.formatBytes(area.bytes)) on node \(area.node))"
            if area.candidates.count == 1, let reason = area.fallbacks.first {
                return "\(what) cannot have \(area.candidates[0]) pages: "
                    + reason.dropFirst("\(area.candidates[0]): ".count)
            }
            return "\(what) can have none of " + area.candidates.map(\.rawValue).joined(separator: ", ") + ": "
                + area.fallbacks.joined(separator: "; ")
        }
        for (node, bytes) in regularBytesPerNode.sorted(by: { $0.key < $1.key }) {
            let available = table.node(node)?.memAvailableBytes ?? 0
            guard bytes > available else { continue }
            let parts = areas.filter { $0.node == node && $0.predicted != .hugetlb }
                .map { "\($0.name) \(Region.formatBytes($0.bytes)) \($0.predicted!)" }.joined(separator: ", ")
            return "needs \(Region.formatBytes(bytes)) of memory on node \(node) (\(parts)) but node \(node) has "
                + "\(Region.formatBytes(available)) available"
        }
        return nil
    }

    /// The one line a command refuses the plan with, or nil when it fits: `sizedBy` is the option
    /// that sized it (`--pages 16384`), `unit` what to ask fewer of; the hint names the hugetlb knob of
    /// the node when a hugetlb-only area lacks pages.
    public func refusal(sizedBy option: String, unit: String) -> String? {
        guard let problem = shortfall() else { return nil }
        var hint = "use fewer \(unit), or nodes with more free memory (--system-node, --device-node)"
        if let area = areas.first(where: { $0.predicted == nil }), area.candidates == [.hugetlb] {
            let knob = "/sys/devices/system/node/node\(area.node)/hugepages/hugepages-2048kB/nr_hugepages"
            hint = "reserve more (echo N > \(knob)), use fewer \(unit), or --backing auto"
        }
        return "\(option): \(problem); \(hint)"
    }

    /// Each area's predicted backing and node, e.g. `system pool hugetlb on node 0`.
    public var description: String {
        areas.map { "\($0.name) \($0.predicted?.rawValue ?? "none") on node \($0.node)" }.joined(separator: ", ")
    }
}
