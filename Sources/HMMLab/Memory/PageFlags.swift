/// The flag bits of a ``PageDescriptor`` (the kernel's `page->flags` and the few folio properties the
/// kernel keeps elsewhere).
///
/// Names follow include/linux/page-flags.h. Departures from the kernel: the anon bit lives here rather
/// than in the low bit of `page->mapping` (`PAGE_MAPPING_ANON`); zone-device and zero-page membership
/// are flags rather than a zone number or a pfn comparison; the folio order lives in bits 56–63 rather
/// than in the second page's flags.
public struct PageFlags: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// `PG_locked`: the folio lock (`folio_trylock`, `folio_unlock`).
    public static let locked = PageFlags(rawValue: 1 << 0)
    /// `PG_referenced`.
    static let referenced = PageFlags(rawValue: 1 << 1)
    /// `PG_uptodate`.
    static let uptodate = PageFlags(rawValue: 1 << 2)
    /// `PG_dirty`.
    public static let dirty = PageFlags(rawValue: 1 << 3)
    /// `PG_lru`: on an LRU list (isolation clears it, `folio_isolate_lru`).
    public static let lru = PageFlags(rawValue: 1 << 4)
    /// `PG_active`.
    static let active = PageFlags(rawValue: 1 << 5)
    /// `PG_head`: the first page of a large folio.
    public static let head = PageFlags(rawValue: 1 << 6)
    /// A tail page of a large folio (the kernel sets bit 0 of `compound_head`).
    public static let tail = PageFlags(rawValue: 1 << 7)
    /// `PG_swapbacked`: anonymous memory that goes to swap.
    static let swapBacked = PageFlags(rawValue: 1 << 8)
    /// `PG_swapcache`.
    static let swapCache = PageFlags(rawValue: 1 << 9)
    /// `PG_reserved`: never freed (the zero page).
    static let reserved = PageFlags(rawValue: 1 << 10)
    /// `PageAnon()`: the kernel's `PAGE_MAPPING_ANON` bit of `page->mapping`.
    static let anon = PageFlags(rawValue: 1 << 11)
    /// `PG_anon_exclusive`: mapped by exactly one process, may be written without COW.
    static let anonExclusive = PageFlags(rawValue: 1 << 12)
    /// `is_zone_device_page()`: the frame is device memory (`ZONE_DEVICE`, `MEMORY_DEVICE_PRIVATE`).
    public static let zoneDevice = PageFlags(rawValue: 1 << 13)
    /// `is_zero_pfn()`: the shared zero page.
    public static let zeroPage = PageFlags(rawValue: 1 << 14)
    /// `PG_writeback`.
    static let writeback = PageFlags(rawValue: 1 << 15)

    /// Bits 56–63 hold the folio order of a head page.
    public static let orderShift: UInt64 = 56
    public static let orderMask: UInt64 = 0xFF << orderShift

    /// The flags without the order byte.
    public var withoutOrder: PageFlags { PageFlags(rawValue: rawValue & ~Self.orderMask) }

    public var description: String {
        let names: [(PageFlags, String)] = [
            (.locked, "locked"), (.referenced, "referenced"), (.uptodate, "uptodate"), (.dirty, "dirty"),
            (.lru, "lru"), (.active, "active"), (.head, "head"), (.tail, "tail"), (.swapBacked, "swapbacked"),
            (.swapCache, "swapcache"), (.reserved, "reserved"), (.anon, "anon"), (.anonExclusive, "anon_exclusive"),
            (.zoneDevice, "zone_device"), (.zeroPage, "zero"), (.writeback, "writeback"),
        ]
        let set = names.filter { contains($0.0) }.map(\.1)
        let order = (rawValue & Self.orderMask) >> Self.orderShift
        return "[" + set.joined(separator: "|") + (order > 0 ? " order=\(order)" : "") + "]"
    }
}
