import CLinux
import Glibc

/// What was read back about a ``Region`` after it was pre-faulted: never assumed, always measured.
public struct RegionVerification: Sendable, Equatable {
    /// Bytes the kernel backs with huge pages (smaps `Private_Hugetlb` for hugetlb, `AnonHugePages`
    /// for THP; 0 for 4 KiB backing).
    var hugeBytes: Int
    /// Resident bytes (smaps `Rss`, or the hugetlb bytes).
    var residentBytes: Int
    /// Pages found per node by a `move_pages` status query (keys are nodes).
    public var pagesPerNode: [Int: Int]
    /// Whether the node could be checked (false when the kernel has no NUMA API).
    public var nodeChecked: Bool
    /// Wall time of the pre-fault, in nanoseconds.
    var prefaultNanoseconds: UInt64
    /// Why earlier candidates of an `auto` request were passed over.
    public var fallbacks: [String]
}

/// Real memory from `mmap`, in 2 MiB-aligned extents, bound to one NUMA node and pre-faulted.
///
/// A Region is the lab's unit of host memory: the system and device frame pools, the page-descriptor
/// array and the swap area are each one Region. Creation follows the backing order of
/// ``BackingRequest`` (hugetlb → THP → 4 KiB for `auto`):
///
/// 1. `mmap` anonymous private memory (with `MAP_HUGETLB|MAP_HUGE_2MB`, or over-allocated and trimmed
///    to 2 MiB alignment for THP and 4 KiB pages);
/// 2. `madvise(MADV_HUGEPAGE)` for THP, `MADV_NOHUGEPAGE` for 4 KiB pages, so the backing is the one
///    asked for even with THP `enabled=always`;
/// 3. name the mapping (`PR_SET_VMA_ANON_NAME`, `[anon:hmm-lab:NAME]` in smaps) so it never merges with
///    a neighbour and its smaps entry is its own;
/// 4. `mbind(MPOL_BIND)` to the node;
/// 5. pre-fault with `MADV_POPULATE_WRITE`, which returns an error instead of raising SIGBUS when the
///    node has no page to give (kernels older than 5.14 fall back to touching every page);
/// 6. verify: the node of every host page (`move_pages` status query) and the real backing (smaps).
///
/// The memory is unmapped when the Region is deinitialised.
public final class Region: @unchecked Sendable {
    /// The first byte, 2 MiB-aligned.
    public let base: UnsafeMutableRawPointer
    /// The length in bytes, a multiple of 2 MiB.
    public let length: Int
    /// The node the memory is bound to.
    public let node: Int
    /// The name shown in smaps as `[anon:hmm-lab:NAME]`.
    public let name: String
    /// What was asked for.
    let requested: BackingRequest
    /// What the kernel really gave, read back.
    public let backing: Backing
    /// The read-back facts.
    public let verification: RegionVerification

    /// The 2 MiB extent size all Regions are aligned to and sized in.
    static let extent = 2 << 20

    /// Maps, binds, pre-faults and verifies a Region.
    ///
    /// - Parameters:
    ///   - name: a short label for smaps and error messages.
    ///   - length: bytes wanted; rounded up to a multiple of 2 MiB.
    ///   - backing: the backing to try (see ``BackingRequest``).
    ///   - node: the NUMA node to bind to; must have memory.
    /// - Throws: ``RegionError`` naming the node, the backing and why each candidate failed.
    public init(name: String, length: Int, backing request: BackingRequest = .auto, node: Int = 0) throws(RegionError) {
        guard length > 0, length <= 1 << 40 else { throw .invalidLength(length) }
        let nodes = NUMA.nodesWithMemory()
        guard nodes.contains(node) else { throw .noSuchNode(node, available: nodes) }
        let size = (length + Self.extent - 1) / Self.extent * Self.extent
        var reasons: [String] = []
        for candidate in request.candidates {
            switch Self.map(name: name, length: size, backing: candidate, node: node) {
            case .success(let mapped):
                base = mapped.base
                self.length = size
                self.node = node
                self.name = name
                self.requested = request
                self.backing = candidate
                var verification = mapped.verification
                verification.fallbacks = reasons
                self.verification = verification
                return
            case .failure(.unavailable(let reason)):
                reasons.append("\(candidate): \(reason)")
            case .failure(.fatal(let error)):
                throw error
            }
        }
        throw .backingUnavailable(request, reasons: reasons)
    }

    deinit {
        munmap(base, length)
    }

    /// A short human description, e.g. `system: 64 MiB hugetlb on node 0`.
    public var summary: String {
        var text = "\(name): \(Self.formatBytes(length)) \(backing) on node \(node)"
        if backing == .thp {
            text += " (\(Self.formatBytes(verification.hugeBytes)) in huge pages)"
        }
        return text
    }

    /// Formats a byte count in binary units, e.g. `64 MiB`.
    public static func formatBytes(_ bytes: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return value == value.rounded()
            ? "\(Int(value)) \(units[unit])" : "\((value * 10).rounded() / 10) \(units[unit])"
    }
}

// MARK: - Mapping one candidate

extension Region {
    fileprivate struct Mapped {
        var base: UnsafeMutableRawPointer
        var verification: RegionVerification
    }

    fileprivate enum Failure: Error {
        /// This backing cannot be had; `auto` tries the next one.
        case unavailable(String)
        /// Something else went wrong; stop.
        case fatal(RegionError)
    }

    /// Maps, names, binds and pre-faults one candidate backing, then reads back what the kernel gave:
    /// the huge-page bytes (smaps) and the node of every host page (`move_pages`).
    fileprivate static func map(name: String, length: Int, backing: Backing, node: Int) -> Result<Mapped, Failure> {
        let start = monotonicNanoseconds()
        let base: UnsafeMutableRawPointer
        switch mapAligned(length: length, backing: backing, node: node) {
        case .success(let b): base = b
        case .failure(let f): return .failure(f)
        }
        func fail(_ f: Failure) -> Result<Mapped, Failure> {
            munmap(base, length)
            return .failure(f)
        }

        let label = "hmm-lab:\(name)"
        _ = label.withCString { clinux_name_anon_mapping(base, length, $0) }  // best effort (CONFIG_ANON_VMA_NAME)
        do {
            try NUMA.bind(base, length: length, toNode: node)
        } catch {
            return fail(.fatal(.system(error)))
        }
        if let failure = prefault(base, length: length, backing: backing, node: node) { return fail(failure) }
        let prefault = monotonicNanoseconds() - start

        let sizes: (huge: Int, resident: Int)
        switch readBackBacking(base, length: length, backing: backing) {
        case .success(let s): sizes = s
        case .failure(let f): return fail(f)
        }
        let perNode: [Int: Int]
        switch readBackNodes(base, length: length, backing: backing, node: node) {
        case .success(let p): perNode = p
        case .failure(let f): return fail(f)
        }
        let verification = RegionVerification(
            hugeBytes: sizes.huge, residentBytes: sizes.resident, pagesPerNode: perNode, nodeChecked: NUMA.isAvailable,
            prefaultNanoseconds: prefault, fallbacks: [])
        return .success(Mapped(base: base, verification: verification))
    }

    /// Populates every page writable (`MADV_POPULATE_WRITE`, or a store per host page on kernels
    /// before 5.14): nil, or why it failed.
    private static func prefault(_ base: UnsafeMutableRawPointer, length: Int, backing: Backing, node: Int) -> Failure?
    {
        guard madvise(base, length, clinux_madv_populate_write()) != 0 else { return nil }
        let err = errno
        switch err {
        case EINVAL:
            for offset in Swift.stride(from: 0, to: length, by: backing.hostPageSize) {
                (base + offset).storeBytes(of: 0, as: UInt8.self)
            }
            return nil
        case ENOMEM, EFAULT, EHWPOISON:
            return .unavailable(
                "pre-fault of \(formatBytes(length)) on node \(node) failed: \(SystemError.name(of: err))")
        default:
            return .fatal(
                .system(
                    SystemError(
                        "madvise(MADV_POPULATE_WRITE)", errno: err, "\(formatBytes(length)) \(backing) on node \(node)")
                ))
        }
    }

    /// The huge-page and resident bytes smaps reports for the mapping; unavailable when hugetlb or THP
    /// was asked and the kernel did not give it.
    private static func readBackBacking(
        _ base: UnsafeMutableRawPointer, length: Int, backing: Backing
    ) -> Result<(huge: Int, resident: Int), Failure> {
        let smaps = SmapsEntry.find(containing: base)
        switch backing {
        case .hugetlb:
            if let smaps, smaps.hugetlbBytes < length {
                return .failure(
                    .unavailable("only \(formatBytes(smaps.hugetlbBytes)) of \(formatBytes(length)) got hugetlb pages"))
            }
            let huge = min(length, smaps?.hugetlbBytes ?? length)
            return .success((huge, huge))
        case .thp:
            let huge = min(length, smaps?.anonHugeBytes ?? 0)
            if huge == 0 {
                return .failure(
                    .unavailable(
                        "the kernel gave no transparent huge page (AnonHugePages 0 kB for \(formatBytes(length)))"))
            }
            return .success((huge, min(length, smaps?.rssBytes ?? length)))
        case .small:
            return .success((smaps?.anonHugeBytes ?? 0, min(length, smaps?.rssBytes ?? length)))
        }
    }

    /// Host pages per node, read back with `move_pages`; unavailable when a page is absent, fatal
    /// when one is off `node`.
    private static func readBackNodes(
        _ base: UnsafeMutableRawPointer, length: Int, backing: Backing, node: Int
    ) -> Result<[Int: Int], Failure> {
        let step = backing == .hugetlb ? backing.hostPageSize : PageSize.bytes
        let status: [Int32]
        do {
            status = try NUMA.nodesOfPages(start: base, count: length / step, stride: step)
        } catch {
            return .failure(.fatal(.system(error)))
        }
        var perNode: [Int: Int] = [:]
        var absent = 0
        for s in status {
            if s >= 0 { perNode[Int(s), default: 0] += 1 } else { absent += 1 }
        }
        if absent > 0 {
            return .failure(.unavailable("\(absent) of \(status.count) pages were not present after pre-fault"))
        }
        if perNode.keys.contains(where: { $0 != node }) {
            return .failure(.fatal(.misplaced(expectedNode: node, found: perNode)))
        }
        return .success(perNode)
    }

    /// `mmap` and `madvise` for one backing, 2 MiB-aligned.
    fileprivate static func mapAligned(
        length: Int, backing: Backing, node: Int
    ) -> Result<UnsafeMutableRawPointer, Failure> {
        let prot = PROT_READ | PROT_WRITE
        switch backing {
        case .hugetlb:
            if let free = HugetlbPool.freePages(node: node), free * HugetlbPool.pageSize < length {
                return .failure(
                    .unavailable(
                        "\(free) free 2 MiB hugetlb pages on node \(node), \(length / HugetlbPool.pageSize) needed"))
            }
            let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | clinux_map_huge_2mb()
            guard let p = mmap(nil, length, prot, flags, -1, 0), p != MAP_FAILED else {
                let err = errno
                if err == ENOMEM || err == EINVAL || err == ENOENT {
                    return .failure(
                        .unavailable("mmap(MAP_HUGETLB) of \(formatBytes(length)) failed: \(SystemError.name(of: err))")
                    )
                }
                return .failure(.fatal(.system(SystemError("mmap", errno: err, "MAP_HUGETLB \(formatBytes(length))"))))
            }
            return .success(p)
        case .thp, .small:
            if backing == .thp, ThpSettings.enabled == "never" {
                return .failure(.unavailable("THP is disabled (/sys/kernel/mm/transparent_hugepage/enabled is never)"))
            }
            let over = length + extent
            guard let raw = mmap(nil, over, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), raw != MAP_FAILED
            else {
                return .failure(.fatal(.system(.last("mmap", "\(formatBytes(over)) anonymous"))))
            }
            let address = UInt(bitPattern: raw)
            let aligned = (address + UInt(extent) - 1) & ~UInt(extent - 1)
            let head = Int(aligned - address)
            if head > 0 { munmap(raw, head) }
            let tail = over - head - length
            let p = UnsafeMutableRawPointer(bitPattern: aligned)!
            if tail > 0 { munmap(p + length, tail) }
            let advice = backing == .thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE
            // MADV_NOHUGEPAGE fails only on kernels without THP, where pages are 4 KiB anyway.
            if madvise(p, length, advice) != 0, backing == .thp {
                let err = errno
                munmap(p, length)
                return .failure(.unavailable("madvise(MADV_HUGEPAGE) failed: \(SystemError.name(of: err))"))
            }
            return .success(p)
        }
    }
}

/// The host's hugetlb 2 MiB page pool.
enum HugetlbPool {
    /// The huge page size the lab uses.
    static let pageSize = 2 << 20

    /// Free 2 MiB pages on a node (`/sys/devices/system/node/nodeN/hugepages/hugepages-2048kB/free_hugepages`),
    /// or system-wide when the node file does not exist; nil when hugetlb is not configured.
    static func freePages(node: Int) -> Int? { NodeTable.hugetlbPages(node: node, file: "free_hugepages") }
}

/// The kernel's transparent-huge-page settings.
public enum ThpSettings {
    /// `/sys/kernel/mm/transparent_hugepage/enabled`: `always`, `madvise` or `never` (nil without THP).
    public static var enabled: String? { Sysfs.selectedMode("/sys/kernel/mm/transparent_hugepage/enabled") }
    /// `/sys/kernel/mm/transparent_hugepage/defrag`.
    static var defrag: String? { Sysfs.selectedMode("/sys/kernel/mm/transparent_hugepage/defrag") }
}

/// One mapping's entry of `/proc/self/smaps`.
struct SmapsEntry {
    var start: UInt
    var end: UInt
    var rssBytes: Int
    var anonHugeBytes: Int
    var hugetlbBytes: Int

    /// The entry whose range contains `address`.
    static func find(containing address: UnsafeMutableRawPointer) -> SmapsEntry? {
        guard let text = Sysfs.read("/proc/self/smaps") else { return nil }
        let target = UInt(bitPattern: address)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true)[...]
        while let line = lines.popFirst() {
            // Header: "7f0000000000-7f0000200000 rw-p 00000000 00:00 0   [anon:...]"
            guard let dash = line.firstIndex(of: "-"), let space = line.firstIndex(of: " "), dash < space,
                let lo = UInt(line[..<dash], radix: 16), let hi = UInt(line[line.index(after: dash)..<space], radix: 16)
            else { continue }
            guard lo <= target, target < hi else { continue }
            var fields = Substring()
            var body: [Substring] = []
            while let next = lines.first, !Self.isHeader(next) {
                body.append(next)
                lines.removeFirst()
            }
            fields = Substring(body.joined(separator: "\n"))
            let hugetlb =
                (Sysfs.kilobyteField("Private_Hugetlb", in: fields) ?? 0)
                + (Sysfs.kilobyteField("Shared_Hugetlb", in: fields) ?? 0)
            return SmapsEntry(
                start: lo, end: hi, rssBytes: Sysfs.kilobyteField("Rss", in: fields) ?? 0,
                anonHugeBytes: Sysfs.kilobyteField("AnonHugePages", in: fields) ?? 0, hugetlbBytes: hugetlb)
        }
        return nil
    }

    private static func isHeader(_ line: Substring) -> Bool {
        guard let dash = line.firstIndex(of: "-"), let space = line.firstIndex(of: " "), dash < space else {
            return false
        }
        return UInt(line[..<dash], radix: 16) != nil
    }
}

/// `clock_gettime(CLOCK_MONOTONIC)` in nanoseconds.
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
