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
    public var rawFlags: UInt64 { descriptor.pointee.flags.load(ordering: .relaxed) }

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
    public func testAndClear(_ bits: PageFlags) -> Bool { descriptor.pointee.testAndClear(bits) }
}
