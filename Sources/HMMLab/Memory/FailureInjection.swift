/// Seeded, per-order allocation failure: makes an allocator fail as if it had run out, with a given
/// probability, so later layers can exercise the kernel's fallbacks (a device that cannot allocate a
/// 2 MiB page splits the migration, as `dmirror`'s `HMM_DMIRROR_FLAG_FAIL_ALLOC` does).
///
/// The lab's own option: the kernel has `fail_page_alloc` (fault injection), not this per-order knob.
public struct FailureInjection: Sendable, Equatable {
    /// Probability in [0, 1] that an order-0 allocation fails.
    var order0: Double
    /// Probability in [0, 1] that an order-9 (2 MiB) allocation fails.
    var order9: Double
    /// Seed of the generator that draws the failures.
    public var seed: UInt64

    public init(order0: Double = 0, order9: Double = 0, seed: UInt64 = 0x484D_4D4C_4142) {
        self.order0 = order0
        self.order9 = order9
        self.seed = seed
    }

    /// No injected failures.
    public static let none = FailureInjection()

    func probability(order: Int) -> Double { order == 0 ? order0 : order9 }
}

/// SplitMix64: a small, fast, seedable generator (Steele, Lea and Flood 2014). Not for cryptography.
struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }

    @inlinable mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [0, 1).
    @inlinable mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1p-53 }
}
