import Glibc
import Testing

@testable import HMMLab

/// The placement decisions on fake topologies, so they run on any machine: the default device node
/// by distance, where threads run, each pool's backing from its own node, the per-node memory check.
@Suite("NodeTable and PoolPlan: NUMA decisions on fake topologies")
struct NodeTableTests {
    static let gib = 1 << 30

    /// A node with `cpus`, `available` GiB available and `hugetlb` free 2 MiB pages.
    static func node(
        _ id: Int, cpus: [Int], available: Double = 8, hugetlb: Int = 0, distances: [Int] = []
    ) -> NodeTable.Node {
        let bytes = Int(available * Double(gib))
        return NodeTable.Node(
            id: id, cpus: cpus, memTotalBytes: max(bytes, gib), memFreeBytes: bytes, memAvailableBytes: bytes,
            hugetlbFree: hugetlb,
            hugetlbTotal: hugetlb,
            distances: Dictionary(uniqueKeysWithValues: distances.enumerated().map { ($0.offset, $0.element) }))
    }

    /// Two sockets of two SNC nodes each: 0-1 on one socket (distance 12), 2-3 on the other (21).
    static let snc = NodeTable(nodes: [
        node(0, cpus: [0, 1], distances: [10, 12, 21, 21]), node(1, cpus: [2, 3], distances: [12, 10, 21, 21]),
        node(2, cpus: [4, 5], distances: [21, 21, 10, 12]), node(3, cpus: [6, 7], distances: [21, 21, 12, 10]),
    ])

    @Test("the default device node is the farthest node with memory, not the next number")
    func farthest() {
        #expect(Self.snc.farthestNodeWithMemory(from: 0) == 2, "node 1 is on the same socket")
        #expect(Self.snc.farthestNodeWithMemory(from: 3) == 0)
        let one = NodeTable(nodes: [Self.node(0, cpus: [0, 1])])
        #expect(one.farthestNodeWithMemory(from: 0) == 0)
        var cpuOnly = Self.snc
        cpuOnly.nodes[2].hasMemory = false
        cpuOnly.nodes[3].hasMemory = false
        #expect(cpuOnly.farthestNodeWithMemory(from: 0) == 1, "a node without memory cannot hold a pool")
        let noSLIT = NodeTable(nodes: [Self.node(0, cpus: [0]), Self.node(1, cpus: [1])])
        #expect(noSLIT.distance(0, 1) == 20 && noSLIT.farthestNodeWithMemory(from: 0) == 1)
    }

    @Test("threads run on the system node's CPUs, or the nearest node's when it has none, and say so")
    func placement() {
        let own = ThreadPlacement(systemNode: 2, table: Self.snc)
        #expect(own.node == 2 && own.cpus == [4, 5] && own.cpuList == "4-5")
        #expect(own.describe(failure: nil) == "threads pinned to node 2's CPUs 4-5 (the system node's CPUs)")
        // A memory-only node (CXL, HBM): nearest node with CPUs by distance.
        var table = Self.snc
        table.nodes.append(Self.node(4, cpus: [], distances: [30, 30, 17, 25, 10]))
        for i in 0..<4 { table.nodes[i].distances[4] = [30, 30, 17, 25][i] }
        let memoryOnly = ThreadPlacement(systemNode: 4, table: table)
        #expect(memoryOnly.node == 2 && memoryOnly.cpus == [4, 5])
        #expect(memoryOnly.reason == "node 4 has no CPUs; node 2 is the nearest with CPUs, distance 17")
        #expect(
            memoryOnly.describe(failure: "sched_setaffinity: EINVAL").contains(
                "failed (sched_setaffinity: EINVAL): threads run anywhere"))
        let one = ThreadPlacement(systemNode: 0, table: NodeTable(nodes: [Self.node(0, cpus: [0, 1])]))
        #expect(one.node == nil && one.cpuList == "" && one.pinCallingThread() == nil)
    }

    @Test("pinning the calling thread takes, and is read back")
    func pinForReal() async throws {
        let cpus = NUMA.allowedCPUs()
        try #require(!cpus.isEmpty)
        #expect(NUMA.pinCallingThread(toCPUs: [cpus[0]]) == nil)
        #expect(NUMA.allowedCPUs() == [cpus[0]])
        #expect(NUMA.pinCallingThread(toCPUs: cpus) == nil)
        #expect(NUMA.pinCallingThread(toCPUs: []) != nil)
    }

    /// A two-node machine with `hugetlb` free pages per node and the default run's pools planned on it.
    static func plan(
        hugetlb: [Int], available: [Double] = [8, 8], pages: Int = 16384, backing: BackingRequest = .auto
    ) -> PoolPlan {
        let table = NodeTable(nodes: [
            node(0, cpus: [0], available: available[0], hugetlb: hugetlb[0], distances: [10, 20]),
            node(1, cpus: [1], available: available[1], hugetlb: hugetlb[1], distances: [20, 10]),
        ])
        var config = RunConfig()
        config.pages = pages
        config.backing = backing
        return PoolPlan(config: config, table: table, thpEnabled: "madvise")
    }

    @Test(
        "each pool's backing comes from its own node, in all four hugetlb placements",
        arguments: [
            ([200, 200], Backing.hugetlb, Backing.hugetlb), ([200, 0], .hugetlb, .thp), ([0, 200], .thp, .hugetlb),
            ([0, 0], .thp, .thp),
        ])
    func backingPerPool(hugetlb: [Int], system: Backing, device: Backing) {
        let plan = Self.plan(hugetlb: hugetlb)
        #expect(plan.areas.map(\.name) == ["system pool", "device pool", "descriptors", "swap area"])
        #expect(plan.areas[0].predicted == system && plan.areas[0].node == 0)
        #expect(plan.areas[1].predicted == device && plan.areas[1].node == 1)
        #expect(plan.areas[2].predicted == .thp, "descriptors never take hugetlb pages")
        #expect(plan.shortfall() == nil)
        if device == .thp {
            #expect(plan.areas[1].fallbacks == ["hugetlb: \(hugetlb[1]) free 2 MiB hugetlb pages on node 1, 36 needed"])
        }
    }

    @Test("hugetlb pages spread over the nodes are counted per node: 80 + 80, 128 + 0, 100 + 100")
    func setupSpread() {
        // What a machine-wide reservation of 160 becomes on two nodes: enough for the device pool's
        // 36 pages on node 1, not for the system pool's 110 on node 0.
        let even = Self.plan(hugetlb: [80, 80])
        #expect(even.areas[0].predicted == .thp && even.areas[1].predicted == .hugetlb)
        let oneSided = Self.plan(hugetlb: [128, 0])
        #expect(oneSided.areas[0].predicted == .hugetlb && oneSided.areas[1].predicted == .thp)
        let short = Self.plan(hugetlb: [100, 100])
        #expect(short.areas[0].predicted == .thp, "110 pages needed on node 0: \(short.areas[0].fallbacks)")
        #expect(short.areas[3].predicted == .hugetlb, "the swap area takes what the system pool left")
    }

    @Test("a run too large for its system node is refused although the machine has the memory")
    func perNodeCheck() {
        // 262144 pages: 3.1 GiB on node 0 (the range twice, a backing page per device page), which
        // has 2.5 GiB; node 1 has plenty, and the machine 10.5 GiB.
        let plan = Self.plan(hugetlb: [0, 0], available: [2.5, 8], pages: 262144)
        let problem = plan.shortfall()
        #expect(
            problem?.hasPrefix("needs 3.1 GiB of memory on node 0 (system pool 3.0 GiB thp, descriptors") == true,
            "\(problem ?? "nil")")
        #expect(problem?.hasSuffix("but node 0 has 2.5 GiB available") == true, "\(problem ?? "nil")")
        // The device pool's node too.
        let device = Self.plan(hugetlb: [0, 0], available: [8, 0.5], pages: 262144)
        #expect(
            device.shortfall()?.contains("on node 1 (device pool 1.0 GiB thp)") == true,
            "\(device.shortfall() ?? "nil")")
        // hugetlb pages are not regular memory: a node short of it but with the pages is fine.
        #expect(Self.plan(hugetlb: [2000, 600], available: [0.1, 0.1], pages: 262144).shortfall() == nil)
    }

    @Test("--backing hugetlb without pages on the device node names that pool and node")
    func hugetlbOnly() {
        let plan = Self.plan(hugetlb: [200, 0], backing: .hugetlb)
        #expect(plan.areas[1].predicted == nil)
        #expect(
            plan.shortfall()
                == "the device pool (72 MiB on node 1) cannot have hugetlb pages: 0 free 2 MiB hugetlb pages on node 1, 36 needed"
        )
        var config = RunConfig()
        config.backing = .hugetlb
        let table = NodeTable(nodes: [
            Self.node(0, cpus: [0], hugetlb: 200, distances: [10, 20]), Self.node(1, cpus: [1], distances: [20, 10]),
        ])
        #expect {
            try Runner.checkMemory(config, table: table)
        } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("--pages 16384: the device pool")
                && text.contains("/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages")
        }
    }

    @Test("available memory per node follows si_mem_available; watermarks come from /proc/zoneinfo")
    func available() {
        #expect(
            NodeTable.availableBytes(
                free: 1000, fileLRU: 400, reclaimableSlab: 100, lowWatermark: 50, highWatermark: 60) == 1000 - 60 + 350
                + 50)
        #expect(
            NodeTable.availableBytes(free: 10, fileLRU: 0, reclaimableSlab: 0, lowWatermark: 50, highWatermark: 60) == 0
        )
        let zoneinfo = """
            Node 0, zone    DMA32
              pages free     100
                    min      1
                    low      2
                    high     3
            Node 0, zone   Normal
              pages free     52548
                    low      11047
                    high     13256
                  pagesets
                    high:  378
            Node 1, zone   Normal
                    low      7
                    high     9
            """
        let w = NodeTable.watermarks(zoneinfo)
        let page = Int(getpagesize())
        #expect(w[0]?.low == 11049 * page && w[0]?.high == 13259 * page)
        #expect(w[1]?.low == 7 * page && w[1]?.high == 9 * page)
    }

    @Test("the machine's own table: every node listed, node 0 among them, distances to itself 10")
    func realTable() {
        let table = NodeTable.read()
        #expect(table.node(0) != nil)
        #expect(table.nodes.allSatisfy { table.distance($0.id, $0.id) == 10 })
        #expect(table.nodes.contains { !$0.cpus.isEmpty })
        #expect(table.nodesWithMemory.allSatisfy { table.node($0)!.memAvailableBytes > 0 })
    }

    @Test("wrapped lines keep every word and fit the width")
    func wrap() {
        let line =
            "  system pool    220 MiB on node 0: thp; passed over hugetlb: 0 free 2 MiB hugetlb pages on node 0, 110 needed and more words here"
        let lines = MachineTopology.wrap(line, indent: 4)
        #expect(lines.count == 2 && lines.allSatisfy { $0.count <= 80 })
        #expect(lines[1].hasPrefix("    ") && !lines[1].hasPrefix("     "))
        #expect(
            lines.map { $0.split(separator: " ") }.joined().map(String.init)
                == line.split(separator: " ").map(String.init))
    }
}
