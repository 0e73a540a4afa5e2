import Synchronization

/// A pointer to one 64-bit entry in a page-table page, read with `READ_ONCE` and written with
/// `WRITE_ONCE` semantics, and updated with `cmpxchg` where the kernel does (`ptep_get_and_clear`,
/// `pmd_populate` races).
///
/// Loads acquire and stores release. The kernel's `READ_ONCE` is a plain load whose address dependency
/// orders what the reader does with the entry (walk into the table it names, read the page); Swift's
/// memory model has no such ordering, so the lab uses acquire, which is the same plain `mov` on
/// x86-64. With relaxed loads, a lockless walker (`hmm_range_fault`, the page walker above the PTE
/// level) that found a table installed by a concurrent fault read the table's entries with no
/// ordering against the `memset` that cleared it: a data race the thread sanitizer reports.
struct EntrySlot: Hashable, @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Atomic<UInt64>>

    @inlinable public init(_ pointer: UnsafeMutablePointer<Atomic<UInt64>>) { self.pointer = pointer }

    /// `ptep_get` / `pmdp_get`; acquire ordering, so that a reader that sees an entry also sees what was
    /// written to the table or page it names before the entry was stored.
    @inlinable public func load() -> PTE { PTE(rawValue: pointer.pointee.load(ordering: .acquiring)) }
    /// `set_pte_at` / `set_pmd_at`; release ordering so a reader that sees the entry sees the page's bytes.
    @inlinable public func store(_ entry: PTE) { pointer.pointee.store(entry.rawValue, ordering: .releasing) }
    /// `ptep_get_and_clear`.
    @inlinable func exchange(_ entry: PTE) -> PTE {
        PTE(rawValue: pointer.pointee.exchange(entry.rawValue, ordering: .acquiringAndReleasing))
    }
    /// Installs `new` if the slot still holds `expected`.
    @inlinable func compareExchange(expected: PTE, new: PTE) -> Bool {
        pointer.pointee.compareExchange(
            expected: expected.rawValue, desired: new.rawValue, ordering: .acquiringAndReleasing
        ).exchanged
    }
    /// The slot `n` entries further on.
    @inlinable func advanced(by n: Int) -> EntrySlot { EntrySlot(pointer + n) }
}
