import Synchronization

/// A pointer to one 64-bit entry in a page-table page, read and written with `READ_ONCE`/`WRITE_ONCE`
/// semantics (relaxed atomics) and updated with `cmpxchg` where the kernel does (`ptep_get_and_clear`,
/// `pmd_populate` races).
public struct EntrySlot: Hashable, @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Atomic<UInt64>>

    @inlinable public init(_ pointer: UnsafeMutablePointer<Atomic<UInt64>>) { self.pointer = pointer }

    /// `ptep_get` / `pmdp_get`.
    @inlinable public func load() -> PTE { PTE(rawValue: pointer.pointee.load(ordering: .relaxed)) }
    /// `set_pte_at` / `set_pmd_at`; release ordering so a reader that sees the entry sees the page's bytes.
    @inlinable public func store(_ entry: PTE) { pointer.pointee.store(entry.rawValue, ordering: .releasing) }
    /// `ptep_get_and_clear`.
    @inlinable public func exchange(_ entry: PTE) -> PTE {
        PTE(rawValue: pointer.pointee.exchange(entry.rawValue, ordering: .acquiringAndReleasing))
    }
    /// Installs `new` if the slot still holds `expected`.
    @inlinable public func compareExchange(expected: PTE, new: PTE) -> Bool {
        pointer.pointee.compareExchange(expected: expected.rawValue, desired: new.rawValue, ordering: .acquiringAndReleasing).exchanged
    }
    /// The slot `n` entries further on.
    @inlinable public func advanced(by n: Int) -> EntrySlot { EntrySlot(pointer + n) }
}
