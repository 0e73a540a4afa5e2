import Glibc
import Testing

@testable import HMMLab

@Suite("Region: real memory, backing fallback and node placement")
struct RegionTests {
    static let thpUsable = ThpSettings.enabled.map { $0 != "never" } ?? false
    static let multiNode = NUMA.nodesWithMemory().count > 1

    @Test("4k backing gives 4 KiB pages, pre-faulted, on the node asked for")
    func smallBacking() throws {
        let region = try Region(name: "t-4k", length: 3 << 20, backing: .small, node: 0)
        #expect(region.length == 4 << 20, "rounded up to 2 MiB extents")
        #expect(UInt(bitPattern: region.base) % UInt(Region.extent) == 0, "2 MiB-aligned")
        #expect(region.backing == .small)
        #expect(region.verification.hugeBytes == 0)
        #expect(region.verification.residentBytes == region.length, "pre-faulted: every page resident")
        #expect(region.verification.pagesPerNode == [0: region.length / 4096], "every 4 KiB page read back on node 0")
        // The memory is real and writable.
        memset(region.base, 0xA5, region.length)
        #expect(region.base.load(fromByteOffset: region.length - 1, as: UInt8.self) == 0xA5)
    }

    @Test("thp backing is read back from AnonHugePages", .enabled(if: thpUsable, "THP is disabled on this machine"))
    func thpBacking() throws {
        let region = try Region(name: "t-thp", length: 8 << 20, backing: .thp, node: 0)
        #expect(region.backing == .thp)
        #expect(region.verification.hugeBytes > 0 && region.verification.hugeBytes <= region.length)
        #expect(region.verification.pagesPerNode.keys.sorted() == [0])
    }

    @Test("auto falls back in the order hugetlb, thp, 4k, and records why")
    func autoFallbackOrder() throws {
        // Ask for more than the free hugetlb pages, so hugetlb cannot be had.
        let free = HugetlbPool.freePages(node: 0) ?? 0
        let length = (free + 8) * HugetlbPool.pageSize
        let region = try Region(name: "t-auto", length: length, backing: .auto, node: 0)
        #expect(region.backing != .hugetlb)
        #expect(region.verification.fallbacks.first?.hasPrefix("hugetlb:") == true, "\(region.verification.fallbacks)")
        if Self.thpUsable {
            #expect(region.backing == .thp)
            #expect(region.verification.fallbacks.count == 1)
        } else {
            #expect(region.backing == .small)
            #expect(region.verification.fallbacks.count == 2)
        }
    }

    @Test("an explicit hugetlb request that cannot be had is a clear error")
    func explicitHugetlbUnavailable() {
        let free = HugetlbPool.freePages(node: 0) ?? 0
        let length = (free + 1) * HugetlbPool.pageSize
        #expect {
            _ = try Region(name: "t-huge-missing", length: length, backing: .hugetlb, node: 0)
        } throws: { error in
            guard let error = error as? RegionError, case .backingUnavailable(.hugetlb, let reasons) = error else {
                return false
            }
            return reasons.count == 1 && reasons[0].hasPrefix("hugetlb:") && error.description.contains("not available")
        }
    }

    @Test(
        "hugetlb backing when pages are free",
        .enabled(
            if: (HugetlbPool.freePages(node: 0) ?? 0) >= 8,
            "fewer than 8 free hugetlb pages (run scripts/setup as root)"))
    func hugetlbBacking() throws {
        // Another test may hold pages at the same moment; a shortfall is a clean backingUnavailable, never SIGBUS.
        do {
            let region = try Region(name: "t-huge", length: 4 << 20, backing: .hugetlb, node: 0)
            #expect(region.backing == .hugetlb)
            #expect(region.verification.hugeBytes == region.length)
            #expect(region.verification.pagesPerNode == [0: 2])
        } catch .backingUnavailable(_, let reasons) {
            Issue.record("hugetlb pages free but not obtained: \(reasons)")
        }
    }

    @Test("a node that does not exist and a bad length are refused")
    func badArguments() {
        #expect(throws: RegionError.noSuchNode(4095, available: NUMA.nodesWithMemory())) {
            _ = try Region(name: "t", length: 1 << 20, backing: .small, node: 4095)
        }
        #expect(throws: RegionError.invalidLength(0)) { _ = try Region(name: "t", length: 0, backing: .small) }
        #expect(throws: RegionError.invalidLength(-5)) { _ = try Region(name: "t", length: -5, backing: .small) }
    }

    @Test(
        "memory bound to a second node is read back there", .enabled(if: multiNode, "needs two NUMA nodes with memory"))
    func secondNode() throws {
        let node = NUMA.nodesWithMemory()[1]
        let region = try Region(name: "t-node", length: 4 << 20, backing: .small, node: node)
        #expect(region.verification.pagesPerNode == [node: region.length / 4096])
    }

    @Test("byte sizes print in binary units")
    func formatBytes() {
        #expect(Region.formatBytes(64 << 20) == "64 MiB")
        #expect(Region.formatBytes(1536) == "1.5 KiB")
        #expect(Region.formatBytes(100) == "100 B")
    }
}
