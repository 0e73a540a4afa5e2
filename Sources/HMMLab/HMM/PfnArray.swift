/// A fixed-capacity array of pfn words: the `unsigned long *src` and `*dst` arrays of
/// `struct migrate_vma` (`MIGRATE_PFN_*` words, ``MigratePfn``) and the `hmm_pfns` array of
/// `struct hmm_range` (``HMMPfn`` words), which a driver allocates once for its largest range.
///
/// Allocated and zeroed once, when made; freed when its owner (a ``MigrateVMA``, an ``HMMRange``, a
/// local) goes, since it cannot be copied. Indexing reads and writes the words in place and allocates
/// nothing; indices are checked in debug builds only, as the kernel's arrays are not checked at all.
@frozen
public struct PfnArray: ~Copyable {
    /// The words. Valid while the array lives: a walk that keeps the address for its duration (as
    /// the kernel's walks keep `range->hmm_pfns`) must not outlive the owner.
    public let words: UnsafeMutablePointer<UInt64>
    /// Words the array holds.
    public let capacity: Int

    /// `capacity` words, all zero.
    public init(capacity: Int) {
        self.capacity = capacity
        words = .allocate(capacity: capacity)
        words.initialize(repeating: 0, count: capacity)
    }

    deinit { words.deallocate() }

    /// Word `i`.
    @inlinable
    public subscript(i: Int) -> UInt64 {
        @inline(__always) get {
            assert(i >= 0 && i < capacity, "pfn array index \(i) outside 0..<\(capacity)")
            return words[i]
        }
        @inline(__always) nonmutating set {
            assert(i >= 0 && i < capacity, "pfn array index \(i) outside 0..<\(capacity)")
            words[i] = newValue
        }
    }

    /// Sets the first `count` words to `value` (the `memset` of a range's words before a call).
    @inlinable @inline(__always)
    public func update(repeating value: UInt64, count: Int) {
        assert(count >= 0 && count <= capacity, "pfn array of \(capacity) words cleared for \(count)")
        words.update(repeating: value, count: count)
    }
}
