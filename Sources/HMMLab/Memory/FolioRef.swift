import Synchronization

/// A handle on a folio's head descriptor: the lab's `struct folio *` (``PhysicalMemory/folioRef(_:)``
/// for a ``Folio`` whose head is known, ``PhysicalMemory/folioRef(containing:)`` for `pfn_folio()`).
/// A trivial struct holding the head descriptor's address, so passing one around costs what passing
/// the pointer did: no allocation, no reference counting.
///
/// Its methods are named after the kernel's folio helpers (`folio_trylock()` is ``tryLock()``,
/// `folio_ref_count()` is ``refCount``, `folio_test_lru()` is `test(.lru)`), so a call site reads as
/// its mm/ counterpart. A large folio keeps its lock, refcount, mapcount, mapping and order in the head
/// (see ``PageDescriptor`` for the departures from the kernel's layout); per-page state goes through
/// ``page(_:)``.
///
/// A handle is valid while its ``PhysicalMemory`` lives; descriptors are atomics, so handles may be
/// shared between threads.
@frozen
public struct FolioRef: DescriptorHandle, @unchecked Sendable {
    /// The head descriptor's address in the `vmemmap` array.
    public let descriptor: UnsafeMutablePointer<PageDescriptor>

    /// Wraps a head descriptor's address.
    @inlinable @inline(__always)
    public init(_ descriptor: UnsafeMutablePointer<PageDescriptor>) { self.descriptor = descriptor }

    /// The folio whose head is `head` (`page_folio()` of a head or single page; the head of a tail is
    /// found by pfn, ``PhysicalMemory/folioRef(containing:)``).
    @inlinable @inline(__always)
    public init(head: PageRef) { descriptor = head.descriptor }

    /// The head page (`&folio->page`).
    @inlinable @inline(__always)
    public var page: PageRef { PageRef(descriptor) }

    /// Page `n` of the folio (`folio_page(folio, n)`).
    @inlinable @inline(__always)
    public func page(_ n: Int) -> PageRef { PageRef(descriptor + n) }

    // MARK: Size

    /// `folio_order()`: 0 for a single page, 9 for a 2 MiB folio.
    @inlinable @inline(__always)
    public var order: Int { descriptor.pointee.order }

    /// `folio_nr_pages()`.
    @inlinable @inline(__always)
    var nrPages: Int { 1 << order }

    // MARK: Flags

    /// `folio_mark_dirty()` for an anonymous folio (`noop_dirty_folio`): no atomic write when already dirty.
    @inlinable @inline(__always)
    public func markDirty() { descriptor.pointee.markDirty() }

    // MARK: Lock

    /// `folio_trylock()`: `test_and_set_bit_lock(PG_locked)`, acquire ordering.
    @inlinable @inline(__always)
    public func tryLock() -> Bool { descriptor.pointee.tryLock() }

    /// `folio_unlock()`: `clear_bit_unlock(PG_locked)`, release ordering; the folio must be locked.
    @inlinable @inline(__always)
    public func unlock() { descriptor.pointee.unlock() }

    /// `folio_test_locked()`.
    @inlinable @inline(__always)
    public var isLocked: Bool { descriptor.pointee.isLocked }

    // MARK: References

    /// `folio_get()` (`folio_ref_add()` for `count` > 1): the caller already holds a reference.
    @inlinable @inline(__always)
    public func get(_ count: Int32 = 1) { descriptor.pointee.get(count) }

    /// `folio_try_get()`: takes a reference unless the refcount is zero (the folio is being freed).
    @inlinable @inline(__always)
    public func tryGet() -> Bool { descriptor.pointee.tryGet() }

    /// `folio_put_testzero()` (`folio_ref_sub_and_test()` for `count` > 1): drops references and reports
    /// whether the count reached zero, the caller then freeing the folio.
    @inlinable @inline(__always)
    public func putTestZero(_ count: Int32 = 1) -> Bool { descriptor.pointee.putTestZero(count) }

    /// `folio_ref_count()`.
    @inlinable @inline(__always)
    var refCount: Int32 { descriptor.pointee.references }

    /// `folio_ref_freeze()`: the refcount goes from exactly `count` to 0, or nothing changes.
    @inlinable @inline(__always)
    func refFreeze(_ count: Int32) -> Bool {
        descriptor.pointee.refcount.compareExchange(expected: count, desired: 0, ordering: .acquiringAndReleasing)
            .exchanged
    }

    // MARK: Mappings

    /// `folio_mapcount()`.
    @inlinable @inline(__always)
    var mapCount: Int32 { descriptor.pointee.mappings }

    /// Adds `count` mappings (the mapcount update of `folio_add_anon_rmap_ptes()`, `__split_huge_pmd_locked`);
    /// returns the count before.
    @inlinable @inline(__always) @discardableResult
    func addMapcount(_ count: Int32) -> Int32 {
        descriptor.pointee.mapcount.wrappingAdd(count, ordering: .relaxed).oldValue
    }

    /// Removes `count` mappings (the mapcount update of `folio_remove_rmap_ptes()`); returns the count before.
    @inlinable @inline(__always) @discardableResult
    func subMapcount(_ count: Int32) -> Int32 {
        descriptor.pointee.mapcount.wrappingSubtract(count, ordering: .relaxed).oldValue
    }

    /// Whether `folio->mapping` is set, loaded relaxed (the `!page->mapping` tests of collect).
    @inlinable @inline(__always)
    var hasMapping: Bool { descriptor.pointee.mapping.load(ordering: .relaxed) != 0 }

    // MARK: Device folios (the other words: ``DescriptorHandle``)

    /// What page `i`'s `private` word adds, `i` times over, to the head's when the folio is split
    /// (``PageDescriptor/splitPrivateStep``).
    @inlinable @inline(__always)
    public var splitPrivateStep: UInt64 { descriptor.pointee.splitPrivateStep }
}
