/// The `MIGRATE_PFN_*` word of `migrate_vma`'s `src` and `dst` arrays (`include/linux/migrate.h`):
/// `(pfn << MIGRATE_PFN_SHIFT) | flags`. A 2 MiB source is its head entry with `COMPOUND`, followed by
/// 511 zero entries.
enum MigratePfn {
    static let valid: UInt64 = 1 << 0
    public static let migrate: UInt64 = 1 << 1
    public static let write: UInt64 = 1 << 3
    static let compound: UInt64 = 1 << 4
    public static let shift: UInt64 = 6

    /// `migrate_pfn(pfn)`: the pfn with `MIGRATE_PFN_VALID`.
    @inlinable public static func make(_ pfn: Pfn) -> UInt64 { pfn.rawValue << shift | valid }
    /// `migrate_pfn_to_page`: the pfn of a VALID entry, nil otherwise.
    @inlinable public static func pfn(_ word: UInt64) -> Pfn? { word & valid != 0 ? Pfn(rawValue: word >> shift) : nil }
}
