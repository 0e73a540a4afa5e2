import Synchronization

/// What ``PageRef`` and ``FolioRef`` share: the flags word of the descriptor they hold, read and
/// changed as the kernel's page and folio flag helpers do. On a ``PageRef`` these are `PageXxx()`,
/// `SetPageXxx()`, `ClearPageXxx()` and `TestClearPageXxx()` of that page; on a ``FolioRef`` the
/// head's `folio_test_xxx()`, `folio_set_xxx()`, `folio_clear_xxx()` and `folio_test_clear_xxx()`
/// (e.g. `folio_test_lru`, `folio_test_clear_lru`). Every member is inlined into its caller, so a
/// handle's flag test costs what the pointer's did.
public protocol DescriptorHandle {
    /// The descriptor's address in the `vmemmap` array.
    var descriptor: UnsafeMutablePointer<PageDescriptor> { get }
}

extension DescriptorHandle {
    /// The flags without the order byte (`page->flags`, `folio->flags`), acquire ordering.
    @inlinable @inline(__always)
    public var flags: PageFlags { descriptor.pointee.pageFlags }

    /// The whole flags word, order byte included, loaded relaxed (for diagnostics).
    @inlinable
    var rawFlags: UInt64 { descriptor.pointee.flags.load(ordering: .relaxed) }

    /// Whether all of `bits` are set (`PageXxx()`, `folio_test_xxx()`).
    @inlinable @inline(__always)
    public func test(_ bits: PageFlags) -> Bool { descriptor.pointee.test(bits) }

    /// Sets `bits` atomically (`SetPageXxx()`, `folio_set_xxx()`).
    @inlinable @inline(__always)
    public func set(_ bits: PageFlags) { descriptor.pointee.set(bits) }

    /// Clears `bits` atomically (`ClearPageXxx()`, `folio_clear_xxx()`).
    @inlinable @inline(__always)
    public func clear(_ bits: PageFlags) { descriptor.pointee.clear(bits) }

    /// Clears `bits` and reports whether any was set (`TestClearPageXxx()`, `folio_test_clear_xxx()`).
    @inlinable @inline(__always)
    func testAndClear(_ bits: PageFlags) -> Bool { descriptor.pointee.testAndClear(bits) }

    // MARK: The other words

    /// `atomic_set(&page->_mapcount, …)`, `atomic_set(&folio->_mapcount, …)` (`page_mapcount_reset()`
    /// for 0).
    @inlinable @inline(__always)
    func setMapcount(_ count: Int32, ordering: PageRef.StoreOrdering = .relaxed) {
        switch ordering {
        case .relaxed: descriptor.pointee.mapcount.store(count, ordering: .relaxed)
        case .releasing: descriptor.pointee.mapcount.store(count, ordering: .releasing)
        }
    }

    /// `mapping` and `index` of the page or folio, packed by the reverse map (``MappingObject``),
    /// loaded with acquire ordering.
    @inlinable @inline(__always)
    public var mapping: UInt64 { descriptor.pointee.mapping.load(ordering: .acquiring) }

    /// Sets `mapping` and `index` (packed); pass `.releasing` to publish a new mapping.
    @inlinable @inline(__always)
    func setMapping(_ value: UInt64, ordering: PageRef.StoreOrdering = .relaxed) {
        switch ordering {
        case .relaxed: descriptor.pointee.mapping.store(value, ordering: .relaxed)
        case .releasing: descriptor.pointee.mapping.store(value, ordering: .releasing)
        }
    }

    /// `page_private()`, `folio->private` (the head's word), loaded relaxed.
    @inlinable @inline(__always)
    var privateWord: UInt64 { descriptor.pointee.private.load(ordering: .relaxed) }

    /// `set_page_private()`, `folio->private = value`.
    @inlinable @inline(__always)
    func setPrivate(_ value: UInt64, ordering: PageRef.StoreOrdering = .relaxed) {
        switch ordering {
        case .relaxed: descriptor.pointee.private.store(value, ordering: .relaxed)
        case .releasing: descriptor.pointee.private.store(value, ordering: .releasing)
        }
    }

    /// The owner token of a device page or folio (`page_pgmap(page)->owner`, `folio->pgmap->owner`).
    @inlinable @inline(__always)
    var deviceOwner: UInt64 { descriptor.pointee.deviceOwner }

    /// `zone_device_data` of a device page or folio: the backing system page, if it has one.
    @inlinable @inline(__always)
    var zoneDeviceData: Pfn? { descriptor.pointee.zoneDeviceData }
}
