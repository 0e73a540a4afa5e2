/// A page frame number: the index of a 4 KiB frame in the lab's physical address space.
///
/// System frames come first, device frames after a gap; pfn 0 and the first 2 MiB block are never
/// handed out, so a zero pfn in an entry is always a bug. Page-table entries carry the pfn in bits 12–51.
public struct Pfn: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ value: Int) { self.rawValue = UInt64(value) }

    /// The pfn as an index.
    @inlinable public var index: Int { Int(truncatingIfNeeded: rawValue) }

    /// The head pfn of the naturally aligned block of `1 << order` frames that holds this one.
    @inlinable func aligned(toOrder order: Int) -> Pfn { Pfn(rawValue: rawValue & ~((1 << UInt64(order)) - 1)) }

    @inlinable public static func < (a: Pfn, b: Pfn) -> Bool { a.rawValue < b.rawValue }
    @inlinable public static func + (a: Pfn, n: Int) -> Pfn { Pfn(rawValue: a.rawValue &+ UInt64(n)) }

    public var description: String { "pfn 0x" + String(rawValue, radix: 16) }
}

/// A folio: a naturally aligned block of `1 << order` frames that is allocated, mapped, locked and
/// migrated as one (the kernel's `struct folio`). The lab uses orders 0 (4 KiB) and 9 (2 MiB, `HPAGE_PMD_ORDER`).
public struct Folio: Hashable, Sendable, CustomStringConvertible {
    /// The head frame.
    public var pfn: Pfn
    /// log2 of the number of frames.
    public var order: Int

    @inlinable public init(pfn: Pfn, order: Int) {
        self.pfn = pfn
        self.order = order
    }

    /// Frames in the folio (`folio_nr_pages`).
    @inlinable var pageCount: Int { 1 << order }
    /// Bytes in the folio (`folio_size`).
    @inlinable var byteCount: Int { PageSize.bytes << order }
    /// Whether `pfn` is one of this folio's frames.
    @inlinable public func contains(_ other: Pfn) -> Bool { other.aligned(toOrder: order) == pfn }

    public var description: String { "folio(\(pfn), order \(order))" }
}

/// The base page size and the PMD order.
public enum PageSize {
    /// `PAGE_SIZE`.
    public static let bytes = 4096
    /// `PAGE_SHIFT`.
    public static let shift = 12
    /// `HPAGE_PMD_ORDER`: a PMD maps 512 base pages.
    public static let pmdOrder = 9
    /// `HPAGE_PMD_NR`.
    public static let pmdPages = 512
    /// `HPAGE_PMD_SIZE`.
    public static let pmdBytes = 2 << 20
    /// `PAGE_SIZE` as an address step.
    public static let size: UInt64 = 4096
    /// `HPAGE_PMD_SIZE` as an address step.
    static let pmdSize: UInt64 = 2 << 20
    /// `PAGE_MASK`: an address rounded down to its page.
    public static let mask: UInt64 = ~(size - 1)
    /// `HPAGE_PMD_MASK`: an address rounded down to its 2 MiB block.
    public static let pmdMask: UInt64 = ~(pmdSize - 1)
}

/// The address of page `index` of a range starting at `start`: `start + (index << PAGE_SHIFT)`.
@inlinable @inline(__always) func pageAddress(_ start: UInt64, _ index: Int) -> UInt64 {
    start + UInt64(index) << PageSize.shift
}

/// Pages from `start` up to `end` (`(end - start) >> PAGE_SHIFT`).
@inlinable @inline(__always) func pageCount(_ start: UInt64, _ end: UInt64) -> Int {
    Int((end - start) >> PageSize.shift)
}

/// `pte_index()`: the slot of `address` in its page table (bits 12–20).
@inlinable @inline(__always) func pteIndex(_ address: UInt64) -> Int {
    Int(truncatingIfNeeded: (address >> PageSize.shift) & UInt64(PageSize.pmdPages - 1))
}

/// The number of the 2 MiB block `address` is in (`address >> HPAGE_PMD_SHIFT`).
@inlinable @inline(__always) func pmdNumber(_ address: UInt64) -> UInt64 { address >> 21 }

/// Whether `address` starts a 2 MiB block (`IS_ALIGNED(address, HPAGE_PMD_SIZE)`).
@inlinable @inline(__always) func isPMDAligned(_ address: UInt64) -> Bool { address & ~PageSize.pmdMask == 0 }

/// The offset of `address` in its 2 MiB block (`address & ~HPAGE_PMD_MASK`).
@inlinable @inline(__always) func pmdOffset(_ address: UInt64) -> UInt64 { address & ~PageSize.pmdMask }

/// The 2 MiB block number `number` as an address (`number << HPAGE_PMD_SHIFT`).
@inlinable @inline(__always) func pmdAddress(_ number: UInt64) -> UInt64 { number << 21 }

/// The page number of `address` (`address >> PAGE_SHIFT`, dmirror's xarray index).
@inlinable @inline(__always) func pageNumber(_ address: UInt64) -> UInt64 { address >> PageSize.shift }

/// Page number `number` as an address (`number << PAGE_SHIFT`).
@inlinable @inline(__always) func addressOfPage(_ number: UInt64) -> UInt64 { number << PageSize.shift }

/// `offset_in_page()`: the offset of `address` in its 4 KiB page.
@inlinable @inline(__always) func pageOffset(_ address: UInt64) -> Int {
    Int(truncatingIfNeeded: address & ~PageSize.mask)
}

/// `PAGE_ALIGNED()`: whether `address` starts a 4 KiB page.
@inlinable @inline(__always) func isPageAligned(_ address: UInt64) -> Bool { address & ~PageSize.mask == 0 }
