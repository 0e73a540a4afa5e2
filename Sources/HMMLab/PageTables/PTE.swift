/// A 64-bit page-table entry at any level (the kernel's `pte_t`, `pmd_t`, `pud_t`, `pgd_t`).
///
/// **Present entries** use the x86-64 layout (arch/x86/include/asm/pgtable_types.h): present (0),
/// writable (1), user (2), accessed (5), dirty (6), PSE/huge at PMD level (7), the software bits
/// special (9), uffd-wp (10) and soft-dirty (11), the pfn in bits 12–51, and NX (63). A PROT_NONE
/// mapping clears present and sets `_PAGE_PROTNONE` (bit 8, the global bit), keeping the pfn, so
/// `pte_present()` stays true as in the kernel.
///
/// **Non-present, non-none entries** are swap-format entries (include/linux/swapops.h) in the kernel's
/// spirit: the type in bits 59–63 as on x86-64, the offset (a swap slot or a pfn) in bits 12–51 (the
/// kernel inverts it for L1TF; the lab does not), soft-dirty in bit 7 (`_PAGE_SWP_SOFT_DIRTY`),
/// uffd-wp in bit 2 (`_PAGE_SWP_UFFD_WP`), exclusive in bit 3 (`_PAGE_SWP_EXCLUSIVE`), and the
/// migration entry's young and dirty bits in 52 and 53 (`SWP_MIG_YOUNG_BIT`, `SWP_MIG_DIRTY_BIT`).
/// Types follow swapops.h with `MAX_SWAPFILES` = 24: hwpoison 24, PTE marker 25, migration read 26,
/// read-exclusive 27, write 28, device-private write 29, read 30, device-exclusive 31.
///
/// The same encodings serve the PMD level: a PMD migration entry and a device-private PMD entry are a
/// non-present PMD with those types; a huge PMD is present with PSE; a table pointer is present without it.
public struct PTE: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

    // MARK: Bits

    public static let presentBit: UInt64 = 1 << 0
    public static let writeBit: UInt64 = 1 << 1
    public static let userBit: UInt64 = 1 << 2
    public static let accessedBit: UInt64 = 1 << 5
    public static let dirtyBit: UInt64 = 1 << 6
    public static let pseBit: UInt64 = 1 << 7
    public static let protNoneBit: UInt64 = 1 << 8
    public static let specialBit: UInt64 = 1 << 9
    static let uffdWPBit: UInt64 = 1 << 10
    public static let softDirtyBit: UInt64 = 1 << 11
    static let nxBit: UInt64 = 1 << 63
    public static let pfnMask: UInt64 = ((1 << 52) - 1) & PageSize.mask

    public static let swpUffdWPBit: UInt64 = 1 << 2
    public static let swpExclusiveBit: UInt64 = 1 << 3
    public static let swpSoftDirtyBit: UInt64 = 1 << 7
    public static let migYoungBit: UInt64 = 1 << 52
    public static let migDirtyBit: UInt64 = 1 << 53
    public static let typeShift: UInt64 = 59

    // MARK: Swap types (include/linux/swapops.h, MAX_SWAPFILES = 24)

    public static let maxSwapFiles: UInt64 = 24
    static let typeHWPoison: UInt64 = 24
    static let typePTEMarker: UInt64 = 25
    public static let typeMigrationRead: UInt64 = 26
    public static let typeMigrationReadExclusive: UInt64 = 27
    public static let typeMigrationWrite: UInt64 = 28
    public static let typeDeviceWrite: UInt64 = 29
    public static let typeDeviceRead: UInt64 = 30
    public static let typeDeviceExclusive: UInt64 = 31

    // MARK: Constructors

    /// `pte_none`.
    public static let none = PTE(rawValue: 0)

    /// A present leaf: `mk_pte(page, prot)` with the accessed bit set, user, writable if asked.
    @inlinable public static func present(
        _ pfn: Pfn, writable: Bool, dirty: Bool = false, huge: Bool = false, special: Bool = false,
        softDirty: Bool = false
    ) -> PTE {
        var v = presentBit | userBit | accessedBit | addressOfPage(pfn.rawValue) & pfnMask
        if writable { v |= writeBit }
        if dirty { v |= dirtyBit }
        if huge { v |= pseBit }
        if special { v |= specialBit }
        if softDirty { v |= softDirtyBit }
        return PTE(rawValue: v)
    }

    /// A present leaf of a PROT_NONE mapping: `pte_modify(pte, PAGE_NONE)`.
    @inlinable static func protNone(_ pfn: Pfn, huge: Bool = false) -> PTE {
        PTE(rawValue: protNoneBit | accessedBit | (huge ? pseBit : 0) | addressOfPage(pfn.rawValue) & pfnMask)
    }

    /// A non-leaf entry pointing to the next table (`pmd_populate`, `pud_populate`, `p4d_populate`).
    @inlinable public static func table(_ pfn: Pfn) -> PTE {
        PTE(rawValue: presentBit | writeBit | userBit | accessedBit | dirtyBit | addressOfPage(pfn.rawValue) & pfnMask)
    }

    /// A swap-format entry of `type` with `offset` (`swp_entry()` + `swp_entry_to_pte()`).
    @inlinable static func swapFormat(
        type: UInt64, offset: UInt64, softDirty: Bool = false, uffdWP: Bool = false, exclusive: Bool = false
    ) -> PTE {
        var v = (type << typeShift) | addressOfPage(offset) & pfnMask
        if softDirty { v |= swpSoftDirtyBit }
        if uffdWP { v |= swpUffdWPBit }
        if exclusive { v |= swpExclusiveBit }
        // A swap entry of type 0 at offset 0 would read as none; slot 0 is the swap header and never used.
        return PTE(rawValue: v)
    }

    /// A swap entry for swap slot `slot` of swap device 0.
    @inlinable public static func swap(slot: UInt32, softDirty: Bool = false, exclusive: Bool = false) -> PTE {
        precondition(slot != 0, "swap slot 0 is the header")
        return swapFormat(type: 0, offset: UInt64(slot), softDirty: softDirty, exclusive: exclusive)
    }

    /// How a migration entry lets the CPU back in when migration ends (`make_*_migration_entry`).
    public enum MigrationMode: Sendable, Equatable {
        /// `make_readable_migration_entry`.
        case read
        /// `make_readable_exclusive_migration_entry` (anon-exclusive, not writable).
        case readExclusive
        /// `make_writable_migration_entry`.
        case write
    }

    /// A migration entry for `pfn`, carrying the young, dirty, soft-dirty and uffd-wp bits of the PTE it
    /// replaced (`make_migration_entry_young`, `make_migration_entry_dirty`, `pte_swp_mksoft_dirty`).
    @inlinable public static func migration(
        _ pfn: Pfn, mode: MigrationMode, young: Bool, dirty: Bool, softDirty: Bool = false, uffdWP: Bool = false
    ) -> PTE {
        let type: UInt64
        switch mode {
        case .read: type = typeMigrationRead
        case .readExclusive: type = typeMigrationReadExclusive
        case .write: type = typeMigrationWrite
        }
        var e = swapFormat(type: type, offset: pfn.rawValue, softDirty: softDirty, uffdWP: uffdWP)
        if young { e.rawValue |= migYoungBit }
        if dirty { e.rawValue |= migDirtyBit }
        return e
    }

    /// The migration entry `migrate_vma_collect_pmd()` puts in place of `pte` for `pfn`: from a present
    /// entry its young, dirty and soft-dirty bits; from a device-private one its soft-dirty and uffd-wp
    /// swap bits.
    @inlinable static func migration(replacing pte: PTE, _ pfn: Pfn, mode: MigrationMode) -> PTE {
        pte.isPresent
            ? .migration(pfn, mode: mode, young: pte.isYoung, dirty: pte.isDirty, softDirty: pte.isSoftDirty)
            : .migration(
                pfn, mode: mode, young: false, dirty: false, softDirty: pte.swapSoftDirty, uffdWP: pte.swapUffdWP)
    }

    /// A device-private entry (`make_writable_device_private_entry` / `make_readable_device_private_entry`).
    @inlinable static func devicePrivate(
        _ pfn: Pfn, writable: Bool, softDirty: Bool = false, uffdWP: Bool = false
    ) -> PTE {
        swapFormat(
            type: writable ? typeDeviceWrite : typeDeviceRead, offset: pfn.rawValue, softDirty: softDirty,
            uffdWP: uffdWP)
    }

    /// A device-exclusive entry (`make_device_exclusive_entry` + `swp_entry_to_pte`, with
    /// `pte_swp_mksoft_dirty` when the PTE it replaced was soft-dirty): the page stays in system memory
    /// and mapped, but only the device may access it until a CPU fault restores the PTE. As in 7.2 there
    /// is one type, with no read or write variant: only a writable PTE is made device-exclusive, and the
    /// permission of the restored PTE comes from the VMA (`restore_exclusive_pte`). No uffd-wp bit: a
    /// writable PTE has none.
    @inlinable static func deviceExclusive(_ pfn: Pfn, softDirty: Bool = false) -> PTE {
        swapFormat(type: typeDeviceExclusive, offset: pfn.rawValue, softDirty: softDirty)
    }

    // MARK: Decoding

    /// `pte_none`.
    @inlinable var isNone: Bool { rawValue == 0 }
    /// `pte_present`: present or PROT_NONE.
    @inlinable var isPresent: Bool { rawValue & (Self.presentBit | Self.protNoneBit) != 0 }
    /// `pte_protnone`.
    @inlinable var isProtNone: Bool { rawValue & (Self.presentBit | Self.protNoneBit) == Self.protNoneBit }
    /// `pte_write`.
    @inlinable var isWritable: Bool { isPresent && rawValue & Self.writeBit != 0 }
    /// `pte_dirty`.
    @inlinable var isDirty: Bool { rawValue & Self.dirtyBit != 0 }
    /// `pte_young`.
    @inlinable var isYoung: Bool { rawValue & Self.accessedBit != 0 }
    /// `pte_special` (the zero page is mapped special).
    @inlinable var isSpecial: Bool { rawValue & Self.specialBit != 0 }
    /// `pte_soft_dirty`.
    @inlinable var isSoftDirty: Bool { rawValue & Self.softDirtyBit != 0 }
    /// `pmd_trans_huge` / `pmd_leaf`: a present PMD mapping a 2 MiB folio.
    @inlinable var isHuge: Bool { isPresent && rawValue & Self.pseBit != 0 }
    /// The pfn of a present entry, or the pfn of a migration, device-private or device-exclusive entry.
    @inlinable public var pfn: Pfn { Pfn(rawValue: pageNumber(rawValue & Self.pfnMask)) }

    /// A non-present, non-none entry (`is_swap_pte`).
    @inlinable var isSwapFormat: Bool { !isNone && !isPresent }
    /// The swap type of a swap-format entry.
    @inlinable var swapType: UInt64 { rawValue >> Self.typeShift }
    /// The offset of a swap-format entry (slot or pfn).
    @inlinable var swapOffset: UInt64 { pageNumber(rawValue & Self.pfnMask) }
    /// A real swap entry (`non_swap_entry() == false`).
    @inlinable var isSwap: Bool { isSwapFormat && swapType < Self.maxSwapFiles }
    /// `is_migration_entry`.
    @inlinable var isMigration: Bool {
        isSwapFormat && swapType >= Self.typeMigrationRead && swapType <= Self.typeMigrationWrite
    }
    /// `is_writable_migration_entry`.
    @inlinable var isWritableMigration: Bool { isSwapFormat && swapType == Self.typeMigrationWrite }
    /// `is_readable_exclusive_migration_entry`.
    @inlinable var isReadExclusiveMigration: Bool { isSwapFormat && swapType == Self.typeMigrationReadExclusive }
    /// `is_device_private_entry`.
    @inlinable var isDevicePrivate: Bool {
        isSwapFormat && (swapType == Self.typeDeviceWrite || swapType == Self.typeDeviceRead)
    }
    /// `is_writable_device_private_entry`.
    @inlinable var isWritableDevicePrivate: Bool { isSwapFormat && swapType == Self.typeDeviceWrite }
    /// `is_device_exclusive_entry`.
    @inlinable var isDeviceExclusive: Bool { isSwapFormat && swapType == Self.typeDeviceExclusive }
    /// Whether a swap-format entry refers to a page frame (`is_pfn_swap_entry`).
    @inlinable var isPfnSwapEntry: Bool { isMigration || isDevicePrivate || isDeviceExclusive }
    /// The migration entry's young bit.
    @inlinable var migrationYoung: Bool { rawValue & Self.migYoungBit != 0 }
    /// The migration entry's dirty bit.
    @inlinable var migrationDirty: Bool { rawValue & Self.migDirtyBit != 0 }
    /// `pte_swp_soft_dirty`.
    @inlinable var swapSoftDirty: Bool { isSwapFormat && rawValue & Self.swpSoftDirtyBit != 0 }
    /// `pte_swp_uffd_wp`.
    @inlinable var swapUffdWP: Bool { isSwapFormat && rawValue & Self.swpUffdWPBit != 0 }
    /// `pte_swp_exclusive`.
    @inlinable var swapExclusive: Bool { isSwapFormat && rawValue & Self.swpExclusiveBit != 0 }

    // MARK: Modifiers

    /// `pte_wrprotect`.
    @inlinable func writeProtected() -> PTE { PTE(rawValue: rawValue & ~Self.writeBit) }
    /// `pte_mkwrite` + `pte_mkdirty`.
    @inlinable func madeWritable() -> PTE { PTE(rawValue: rawValue | Self.writeBit | Self.dirtyBit) }

    public var description: String {
        if isNone { return "none" }
        if isHuge { return "huge(\(pfn)\(isWritable ? ", w" : ""))" }
        if isProtNone { return "protnone(\(pfn))" }
        if isPresent {
            return "present(\(pfn)\(isWritable ? ", w" : "")\(isDirty ? ", d" : "")\(isSpecial ? ", special" : ""))"
        }
        if isSwap { return "swap(slot \(swapOffset))" }
        if isMigration {
            return
                "migration(\(pfn), \(isWritableMigration ? "write" : isReadExclusiveMigration ? "read-exclusive" : "read"))"
        }
        if isDevicePrivate { return "device-private(\(pfn)\(isWritableDevicePrivate ? ", w" : ""))" }
        if isDeviceExclusive { return "device-exclusive(\(pfn))" }
        return "swap-format(type \(swapType), offset \(swapOffset))"
    }
}

extension PTE {
    /// Whether this entry maps what `other` mapped, the same way: `pte_same` less the accessed and
    /// dirty bits a present entry gains from the CPU's own accesses.
    @inlinable func mapsSame(as other: PTE) -> Bool {
        guard isPresent, other.isPresent else { return self == other }
        let ignored = PTE.accessedBit | PTE.dirtyBit
        return rawValue & ~ignored == other.rawValue & ~ignored
    }
}
