import Synchronization

/// The lab's `struct page`: one 32-byte descriptor per 4 KiB frame, kept in an array in mmap'd memory
/// indexed by pfn (the kernel's `vmemmap`).
///
/// Every field is an `Atomic` because pages are shared between threads exactly as in the kernel: the
/// folio lock is a bit of `flags` taken with an acquiring test-and-set (`folio_trylock`), the refcount
/// is `page->_refcount`, the mapcount is `page->_mapcount`, and `private` is `page->private` (a swap
/// entry for swap-cache pages, the owner token for device-private pages).
///
/// Departures from the kernel: `mapcount` counts mappings from 0 (the kernel stores one less); a large
/// folio keeps its refcount and mapcount in the head descriptor only (the kernel's entire/large
/// mapcount split is not modelled); `mapping` packs `page->mapping` and `page->index` for the reverse
/// map (its encoding is defined by the MM layer).
///
/// Descriptors are never copied; reach them through ``PhysicalMemory/page(_:)``.
public struct PageDescriptor: ~Copyable {
    /// ``PageFlags`` and the folio order in bits 56–63.
    public let flags: Atomic<UInt64>
    /// `page->_refcount`: 0 when free.
    public let refcount: Atomic<Int32>
    /// Number of page-table entries that map this folio (`folio_mapcount`).
    public let mapcount: Atomic<Int32>
    /// `page->private`.
    public let `private`: Atomic<UInt64>
    /// `page->mapping` and `page->index`, packed by the MM layer's reverse map.
    public let mapping: Atomic<UInt64>

    /// A free, zeroed descriptor.
    public init() {
        flags = Atomic(0)
        refcount = Atomic(0)
        mapcount = Atomic(0)
        `private` = Atomic(0)
        mapping = Atomic(0)
    }

    // MARK: Flags

    /// The flags (without the order byte), loaded with acquire ordering.
    @inlinable public var pageFlags: PageFlags {
        PageFlags(rawValue: flags.load(ordering: .acquiring)).withoutOrder
    }

    /// The folio order recorded in a head page (0 for base pages and tails).
    @inlinable public var order: Int {
        Int((flags.load(ordering: .relaxed) & PageFlags.orderMask) >> PageFlags.orderShift)
    }

    /// Whether all of `bits` are set (`PageXxx()`).
    @inlinable public func test(_ bits: PageFlags) -> Bool {
        flags.load(ordering: .acquiring) & bits.rawValue == bits.rawValue
    }

    /// Sets `bits` atomically (`SetPageXxx`).
    @inlinable public func set(_ bits: PageFlags) {
        flags.bitwiseOr(bits.rawValue, ordering: .acquiringAndReleasing)
    }

    /// Clears `bits` atomically (`ClearPageXxx`).
    @inlinable public func clear(_ bits: PageFlags) {
        flags.bitwiseAnd(~bits.rawValue, ordering: .acquiringAndReleasing)
    }

    /// Clears `bits` and reports whether any was set (`TestClearPageXxx`, e.g. `folio_test_clear_lru`).
    @inlinable public func testAndClear(_ bits: PageFlags) -> Bool {
        flags.bitwiseAnd(~bits.rawValue, ordering: .acquiringAndReleasing).oldValue & bits.rawValue != 0
    }

    /// Models `folio_mark_dirty()` for an anonymous folio (`noop_dirty_folio`): the flag is tested
    /// first, so a folio already dirty costs no atomic write.
    @inlinable public func markDirty() {
        if !test(.dirty) { set(.dirty) }
    }

    // MARK: Folio lock

    /// Models `folio_trylock()`: `test_and_set_bit_lock(PG_locked)`, acquire ordering.
    @inlinable public func tryLock() -> Bool {
        flags.bitwiseOr(PageFlags.locked.rawValue, ordering: .acquiring).oldValue & PageFlags.locked.rawValue == 0
    }

    /// Models `folio_unlock()`: `clear_bit_unlock(PG_locked)`, release ordering.
    @inlinable public func unlock() {
        let old = flags.bitwiseAnd(~PageFlags.locked.rawValue, ordering: .releasing).oldValue
        precondition(old & PageFlags.locked.rawValue != 0, "folio_unlock of an unlocked folio")
    }

    /// Whether the folio lock is held (`folio_test_locked`).
    @inlinable public var isLocked: Bool { test(.locked) }

    // MARK: References

    /// Models `folio_get()`: takes a reference on a folio the caller already holds one on.
    @inlinable public func get(_ count: Int32 = 1) {
        let old = refcount.wrappingAdd(count, ordering: .relaxed).oldValue
        precondition(old > 0, "folio_get on a free folio")
    }

    /// Models `folio_try_get()`: takes a reference unless the refcount is zero (the folio is being freed).
    @inlinable public func tryGet() -> Bool {
        var current = refcount.load(ordering: .relaxed)
        while current > 0 {
            let (exchanged, original) = refcount.weakCompareExchange(
                expected: current, desired: current + 1, successOrdering: .acquiring, failureOrdering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Drops `count` references; returns true when the count reached zero and the caller must free the
    /// folio (`folio_put_testzero`).
    @inlinable public func putTestZero(_ count: Int32 = 1) -> Bool {
        let old = refcount.wrappingSubtract(count, ordering: .acquiringAndReleasing).oldValue
        precondition(old >= count, "folio_put below zero (refcount was \(old))")
        return old == count
    }

    /// `folio_ref_count()`.
    @inlinable public var references: Int32 { refcount.load(ordering: .acquiring) }

    /// `folio_mapcount()`.
    @inlinable public var mappings: Int32 { mapcount.load(ordering: .acquiring) }
}
