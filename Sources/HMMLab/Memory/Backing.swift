/// The backing a caller asks for: `auto` tries hugetlb 2 MiB pages, then THP, then 4 KiB pages.
public enum BackingRequest: String, CaseIterable, Sendable, CustomStringConvertible {
    case auto
    case hugetlb
    case thp
    case small = "4k"

    /// The order in which backings are tried.
    public var candidates: [Backing] {
        switch self {
        case .auto: [.hugetlb, .thp, .small]
        case .hugetlb: [.hugetlb]
        case .thp: [.thp]
        case .small: [.small]
        }
    }

    public var description: String { rawValue }
}

/// The backing a ``Region`` really has, read back from `/proc/self/smaps` after pre-faulting.
public enum Backing: String, Sendable, CustomStringConvertible {
    /// hugetlbfs 2 MiB pages (`MAP_HUGETLB | MAP_HUGE_2MB`).
    case hugetlb
    /// Transparent huge pages (`MADV_HUGEPAGE`); some extents may still be 4 KiB pages, see
    /// ``RegionVerification/hugeBytes``.
    case thp
    /// 4 KiB pages (`MADV_NOHUGEPAGE`).
    case small = "4k"

    public var description: String { rawValue }

    /// The host page size the backing maps with.
    public var hostPageSize: Int { self == .small ? PageSize.bytes : PageSize.pmdBytes }
}
