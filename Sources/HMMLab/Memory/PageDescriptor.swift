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
/// Descriptors are never copied; reach them through their handles: a ``PageRef`` for a page
/// (``PhysicalMemory/page(_:)``), a ``FolioRef`` for a folio (``PhysicalMemory/folioRef(_:)``).
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
    @inlinable var pageFlags: PageFlags {
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
    @inlinable func testAndClear(_ bits: PageFlags) -> Bool {
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

// MARK: - Device pages

extension PageDescriptor {
    /// Bits of a device page's `private` word that hold the owner token; the rest hold the backing pfn.
    public static let deviceOwnerBits: UInt64 = 24
    public static let deviceOwnerMask: UInt64 = (1 << deviceOwnerBits) - 1

    /// The `private` word of a device page: `page->pgmap` (the owner token, low 24 bits) and
    /// `page->zone_device_data` (the pfn of the system page that backs it in test_hmm, 0 for none)
    /// packed in one word, so the descriptor stays 32 bytes.
    @inlinable static func devicePrivate(owner: UInt64, backing: Pfn?) -> UInt64 {
        owner | (backing?.rawValue ?? 0) << deviceOwnerBits
    }

    /// The owner token of a device page (`page->pgmap->owner`).
    @inlinable var deviceOwner: UInt64 { `private`.load(ordering: .acquiring) & Self.deviceOwnerMask }

    /// `page->zone_device_data` of a device page: the backing system page, if it has one.
    @inlinable var zoneDeviceData: Pfn? {
        let backing = `private`.load(ordering: .acquiring) >> Self.deviceOwnerBits
        return backing == 0 ? nil : Pfn(rawValue: backing)
    }

    /// What page `i`'s `private` word adds, `i` times over, to the head's when a folio is split: for a
    /// device folio with a backing folio, one backing page (page `i` gets the same owner and page `i` of
    /// the backing folio, as `dmirror_devmem_folio_split` sets `zone_device_data`); else 0 (the word is
    /// copied).
    @inlinable public var splitPrivateStep: UInt64 {
        test(.zoneDevice) && `private`.load(ordering: .relaxed) >> Self.deviceOwnerBits != 0
            ? 1 << Self.deviceOwnerBits : 0
    }
}
