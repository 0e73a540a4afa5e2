import CLinux
import Synchronization

/// A handle on one page's descriptor: the lab's `struct page *` (``PhysicalMemory/page(_:)`` is
/// `pfn_to_page`). A trivial struct holding the descriptor's address, so passing one around costs what
/// passing the pointer did: no allocation, no reference counting.
///
/// It carries what the kernel does to a single page, head or tail: its own flags (`PageXxx`,
/// `SetPageXxx`: `PG_anon_exclusive` is per page), `page->private`, and the raw field writes of
/// `prep_new_page()` and `__split_folio_to_order()`. What is done to a folio as a whole (lock,
/// references, mappings) goes through the head's ``FolioRef``.
///
/// A handle is valid while its ``PhysicalMemory`` lives; descriptors are atomics, so handles may be
/// shared between threads.
@frozen
public struct PageRef: DescriptorHandle, @unchecked Sendable {
    /// The descriptor's address in the `vmemmap` array.
    public let descriptor: UnsafeMutablePointer<PageDescriptor>

    /// Wraps a descriptor's address.
    @inlinable @inline(__always)
    public init(_ descriptor: UnsafeMutablePointer<PageDescriptor>) { self.descriptor = descriptor }

    /// The page `n` pages after this one (`nth_page(page, n)`, `page + n`).
    @inlinable @inline(__always)
    func advanced(by n: Int) -> PageRef { PageRef(descriptor + n) }

    /// `page + n` (``advanced(by:)``).
    @inlinable @inline(__always)
    public static func + (page: PageRef, n: Int) -> PageRef { page.advanced(by: n) }

    // MARK: Flags

    /// `PageTail()`.
    @inlinable @inline(__always)
    var isTail: Bool { test(.tail) }

    /// The order recorded in a head page (`compound_order()`); 0 for a single page or a tail.
    @inlinable @inline(__always)
    public var order: Int { descriptor.pointee.order }

    /// Writes the whole flags word, order byte included (`page->flags = …` in `prep_new_page()`,
    /// `prep_compound_page()`, `free_pages_prepare()` and the split's descriptor rewrite).
    @inlinable @inline(__always)
    func storeFlags(_ raw: UInt64, ordering: PageRef.StoreOrdering = .relaxed) {
        switch ordering {
        case .relaxed: descriptor.pointee.flags.store(raw, ordering: .relaxed)
        case .releasing: descriptor.pointee.flags.store(raw, ordering: .releasing)
        }
    }

    // MARK: Counts

    /// `page_ref_count()`: the references of a head or single page (0 when free).
    @inlinable @inline(__always)
    var refCount: Int32 { descriptor.pointee.references }

    /// The mapcount of a head or single page (``FolioRef/mapCount``).
    @inlinable @inline(__always)
    var mapCount: Int32 { descriptor.pointee.mappings }

    /// `set_page_count()`: stores the refcount, release ordering.
    @inlinable @inline(__always)
    func setRefCount(_ count: Int32) { descriptor.pointee.refcount.store(count, ordering: .releasing) }

    // MARK: Cache (mapping, private and the device words: ``DescriptorHandle``)

    /// `prefetchw(page)`: brings the descriptor into the cache for writing.
    @inlinable @inline(__always)
    func prefetchw() { clinux_prefetchw(descriptor) }
}

extension PageRef {
    /// The ordering of a raw descriptor store: relaxed (a plain store, as `prep_new_page()` and the
    /// split's rewrite make while nothing else can see the page) or releasing (publishing the value to
    /// threads that load it with acquire ordering). Both handles switch on it in inlined code, so a
    /// constant argument costs nothing.
    @frozen
    public enum StoreOrdering: Sendable {
        case relaxed
        case releasing
    }
}
