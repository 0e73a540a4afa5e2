import Synchronization

/// Seeded failures at the points where the kernel's device-memory paths can fail, for an address
/// space (`AddressSpace.injector`). Each point has its own probability; one generator, seeded, decides,
/// so a run with the same seed and the same interleaving injects the same failures. Device allocation
/// failures (4 KiB and 2 MiB) are injected by the device (``Device/setAllocationFailure(_:)``).
///
/// Whatever is injected, migration stays best effort and never loses data: a page either migrates
/// whole or stays where it was, whole, and is counted as skipped.
public final class FaultInjector: @unchecked Sendable {
    public enum Point: Int, CaseIterable, Sendable, CustomStringConvertible {
        /// `folio_trylock` fails in collect or in the unified walk: the page is skipped.
        case trylock
        /// A reference appears between collect and `migrate_vma_pages` (a concurrent GUP pin): the
        /// expected-refcount check refuses the page and finalize restores it.
        case pin
        /// An invalidation of the walked range races `hmm_range_fault` (another thread's munmap or
        /// mprotect of a neighbour): the notifier sequence moves and the caller walks again.
        case invalidate
        /// `do_swap_page` cannot read the slot (an I/O error: `VM_FAULT_SIGBUS`): `hmm_range_fault`
        /// returns `-EFAULT`, a CPU access fails, the page stays in swap.
        case swapin

        public var name: String {
            switch self {
            case .trylock: "trylock"
            case .pin: "pin"
            case .invalidate: "invalidate"
            case .swapin: "swapin"
            }
        }
        public var description: String { name }
        public init?(name: String) {
            guard let p = Self.allCases.first(where: { $0.name == name }) else { return nil }
            self = p
        }
    }

    private let probabilities: [Double]
    private let state: LabMutex<(rng: SplitMix64, counts: [Int])>

    /// Probabilities per point (missing: 0) and the seed.
    public init(_ probabilities: [Point: Double], seed: UInt64) {
        self.probabilities = Point.allCases.map { probabilities[$0] ?? 0 }
        state = LabMutex((SplitMix64(seed: seed ^ 0x696E_6A65_6374), Array(repeating: 0, count: Point.allCases.count)))
    }

    /// Whether to fail at `point` now (counted when it does).
    @inline(__always)
    public func fire(_ point: Point) -> Bool {
        let p = probabilities[point.rawValue]
        guard p > 0 else { return false }
        return state.withLock { s in
            let hit = s.rng.nextUnit() < p
            if hit { s.counts[point.rawValue] += 1 }
            return hit
        }
    }

    /// Failures injected at `point` so far.
    public func injected(_ point: Point) -> Int { state.withLock { $0.counts[point.rawValue] } }

    /// `trylock=0.05,pin=0.01,…`: the probabilities given, for logs.
    public var description: String {
        Point.allCases.compactMap { p in probabilities[p.rawValue] > 0 ? "\(p.name)=\(probabilities[p.rawValue])" : nil }.joined(separator: ",")
    }
}
