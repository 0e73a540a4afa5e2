/// `MIGRATE_VMA_SELECT_*`.
struct MigrateSelect: OptionSet, Sendable, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `MIGRATE_VMA_SELECT_SYSTEM`: collect system pages.
    public static let system = MigrateSelect(rawValue: 1 << 0)
    /// `MIGRATE_VMA_SELECT_DEVICE_PRIVATE`: collect this owner's device-private pages.
    static let devicePrivate = MigrateSelect(rawValue: 1 << 1)
    /// `MIGRATE_VMA_SELECT_DEVICE_COHERENT` (not modelled: no coherent pages here).
    static let deviceCoherent = MigrateSelect(rawValue: 1 << 2)
    /// `MIGRATE_VMA_SELECT_COMPOUND`: collect 2 MiB folios whole.
    static let compound = MigrateSelect(rawValue: 1 << 3)
}
