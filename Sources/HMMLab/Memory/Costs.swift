/// The kernel's per-page costs the model pays for real (`--costs`), each of which can be turned off to
/// measure its share of an operation. What the model counts but does not pay, and what it leaves out,
/// is listed in the README's cost table.
public struct Costs: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Every modelled TLB flush makes a real host TLB shootdown (``TLBShootdown``).
    public static let flush = Costs(rawValue: 1 << 0)
    /// Faulted folios go through per-CPU LRU add batches, isolation takes the LRU lock, and
    /// `lru_add_drain_all` drains every CPU's batch (`mm/swap.c`).
    public static let lru = Costs(rawValue: 1 << 1)
    /// The device driver's own per-page work as test_hmm does it: a backing system page per device page
    /// and an xarray device page table under its lock.
    public static let driver = Costs(rawValue: 1 << 2)

    public static let all: Costs = [.flush, .lru, .driver]
    /// Names in `--costs` order.
    public static let names: [(String, Costs)] = [("flush", .flush), ("lru", .lru), ("driver", .driver)]

    /// `flush,lru,driver`, or `none`.
    public var description: String {
        let parts = Self.names.filter { contains($0.1) }.map(\.0)
        return parts.isEmpty ? "none" : parts.joined(separator: ",")
    }

    /// Parses `--costs`: `all`, `none`, or names from ``names`` separated by commas; nil when a name is
    /// unknown or repeated.
    public init?(parsing text: String) {
        if text == "all" { self = .all; return }
        if text == "none" { self = []; return }
        var c: Costs = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let (_, cost) = Self.names.first(where: { $0.0 == part }), !c.contains(cost) else { return nil }
            c.insert(cost)
        }
        self = c
    }
}
