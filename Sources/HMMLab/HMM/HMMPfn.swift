/// The output and input word of `hmm_range_fault` for one page (`include/linux/hmm.h`): the pfn in the
/// low bits and flags in the high bits.
///
/// With the unified-path RFC's `HMM_PFN_MIGRATE` (bit `BITS_PER_LONG-7`) the map order moves to
/// `HMM_PFN_ORDER_SHIFT` = `BITS_PER_LONG-12` (5 bits), as the RFC does; the lab always uses that layout.
enum HMMPfn {
    /// `HMM_PFN_VALID`: at least readable. As input, `HMM_PFN_REQ_FAULT`.
    static let valid: UInt64 = 1 << 63
    /// `HMM_PFN_WRITE`. As input, `HMM_PFN_REQ_WRITE`.
    public static let write: UInt64 = 1 << 62
    /// `HMM_PFN_ERROR`.
    public static let error: UInt64 = 1 << 61
    /// `HMM_PFN_DMA_MAPPED` (sticky from input to output).
    static let dmaMapped: UInt64 = 1 << 60
    /// `HMM_PFN_P2PDMA` (sticky).
    static let p2pdma: UInt64 = 1 << 59
    /// `HMM_PFN_P2PDMA_BUS` (sticky).
    static let p2pdmaBus: UInt64 = 1 << 58
    /// `HMM_PFN_MIGRATE` (RFC): the page has been collected for migration. As input, `HMM_PFN_REQ_MIGRATE`.
    public static let migrate: UInt64 = 1 << 57
    /// `HMM_PFN_ORDER_SHIFT` with the RFC's flag.
    public static let orderShift: UInt64 = 52
    public static let orderMask: UInt64 = 0x1F << orderShift
    /// `HMM_PFN_INOUT_FLAGS`.
    static let inOutFlags: UInt64 = dmaMapped | p2pdma | p2pdmaBus
    /// Every flag bit.
    static let flagMask: UInt64 = ~((1 << orderShift) - 1)

    /// `HMM_PFN_REQ_FAULT`.
    static let requestFault: UInt64 = valid
    /// `HMM_PFN_REQ_WRITE`.
    static let requestWrite: UInt64 = write
    /// `HMM_PFN_REQ_MIGRATE` (RFC).
    static let requestMigrate: UInt64 = migrate

    /// `hmm_pfn_to_pfn`.
    @inlinable public static func pfn(_ word: UInt64) -> Pfn { Pfn(rawValue: word & ((1 << orderShift) - 1)) }
    /// `hmm_pfn_to_map_order`.
    @inlinable static func mapOrder(_ word: UInt64) -> Int { Int((word & orderMask) >> orderShift) }
    /// `hmm_pfn_flags_order`.
    @inlinable public static func order(_ order: Int) -> UInt64 { UInt64(order) << orderShift }
}
