import Synchronization

/// What a fault did (`handle_mm_fault` paths), counted per kind.
public enum FaultKind: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// Read fault on none: the zero page mapped (`do_anonymous_page`, read).
    case zeroPage
    /// Write fault on none or on the zero page: a new zeroed 4 KiB folio.
    case anonymous
    /// Write fault on an aligned none PMD in a THP VMA, or on the huge zero PMD: a new zeroed 2 MiB folio
    /// (`do_huge_pmd_anonymous_page`, `do_huge_zero_wp_pmd`).
    case anonymousHuge
    /// Read fault on an aligned none PMD in a THP VMA: the huge zero folio mapped read-only by the PMD
    /// (`do_huge_pmd_anonymous_page` without `FAULT_FLAG_WRITE`, `set_huge_zero_folio`).
    case hugeZeroPage
    /// Write fault on a read-only page mapped elsewhere too: copy (`wp_page_copy`).
    case copyOnWrite
    /// Write fault on a read-only page this mm alone maps: made writable (`wp_page_reuse`).
    case reuse
    /// Swap entry: swapped in (`do_swap_page`).
    case swapIn
    /// Device-private entry: the owner's `migrate_to_ram`.
    case devicePrivate
    /// Migration entry: waited for the migration to finish (`migration_entry_wait`).
    case migrationWait
    /// Device-exclusive entry: restored (`remove_device_exclusive_entry`).
    case deviceExclusive
    /// Shared mapping: page-cache folio mapped, new if absent (`shmem_fault`).
    case shared
    /// File mapping: the page-cache folio mapped, read-only on a read (`do_read_fault`), writable and
    /// dirtied on a write to a shared mapping (`do_shared_fault`). A write to a private one is counted
    /// as ``copyOnWrite`` (`do_cow_fault`).
    case file
    /// Already resolved by another thread.
    case spurious

    public var description: String {
        switch self {
        case .zeroPage: "zero-page"
        case .anonymous: "anonymous"
        case .anonymousHuge: "anonymous-thp"
        case .hugeZeroPage: "huge-zero-page"
        case .copyOnWrite: "cow"
        case .reuse: "reuse"
        case .swapIn: "swap-in"
        case .devicePrivate: "device-private"
        case .migrationWait: "migration-wait"
        case .deviceExclusive: "device-exclusive"
        case .shared: "shared"
        case .file: "file"
        case .spurious: "spurious"
        }
    }
}

/// Why a fault could not be resolved (the `VM_FAULT_*` error bits and the signal the CPU would get).
public enum FaultError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No VMA at the address: SIGSEGV, `SEGV_MAPERR`.
    case noVMA(UInt64)
    /// The VMA does not allow the access (PROT_NONE, or write to read-only): SIGSEGV, `SEGV_ACCERR`.
    case accessError(UInt64, write: Bool)
    /// No memory for a folio or a table: `VM_FAULT_OOM`.
    case outOfMemory(UInt64)
    /// The fault cannot be served (no device owner, swap-in failed): `VM_FAULT_SIGBUS`.
    case sigbus(UInt64, String)
    /// A fatal signal was pending when the access was about to be retried after a fault
    /// (`fault_signal_pending`): the thread is being stopped and the access was not made.
    case interrupted(UInt64)

    public var description: String {
        switch self {
        case .noVMA(let a): "no mapping at 0x\(String(a, radix: 16)) (SIGSEGV, SEGV_MAPERR)"
        case .accessError(let a, let w):
            "\(w ? "write" : "read") not allowed at 0x\(String(a, radix: 16)) (SIGSEGV, SEGV_ACCERR)"
        case .outOfMemory(let a): "out of memory faulting 0x\(String(a, radix: 16)) (VM_FAULT_OOM)"
        case .sigbus(let a, let why): "fault at 0x\(String(a, radix: 16)) cannot be served: \(why) (VM_FAULT_SIGBUS)"
        case .interrupted(let a): "access at 0x\(String(a, radix: 16)) not made: a fatal signal was pending on retry"
        }
    }
}

/// Per-mm event counters, updated with relaxed atomics.
public final class MMCounters: @unchecked Sendable {
    @usableFromInline let faultCounts: UnsafeMutablePointer<Atomic<Int>>
    /// Page-table walks started (`walk_page_range` calls).
    public let walks = Atomic<Int>(0)
    /// Walks restarted from an address after `-EBUSY`.
    let walkRestarts = Atomic<Int>(0)
    /// Entries the walker visited, PTE and PMD level.
    public let entriesVisited = Atomic<Int>(0)
    /// TLB flushes (one per flushed range, as `flush_tlb_range`).
    let tlbFlushes = Atomic<Int>(0)
    /// Nanoseconds spent in real host shootdowns for those flushes (``AddressSpace/flushTLB(_:)``).
    let flushNanoseconds = Atomic<UInt64>(0)
    /// Huge PMDs split into PTE tables (`__split_huge_pmd`).
    let pmdSplits = Atomic<Int>(0)
    /// 2 MiB folios split into 512 order-0 folios (`__folio_split`).
    let folioSplits = Atomic<Int>(0)
    /// Reverse-map walks that visited this address space: one per folio (`rmap_walk` /
    /// `rmap_walk_locked`) and address space that maps the folio's object.
    let rmapWalks = Atomic<Int>(0)

    public init() {
        faultCounts = .allocate(capacity: FaultKind.allCases.count)
        for i in FaultKind.allCases.indices { (faultCounts + i).initialize(to: Atomic(0)) }
    }

    deinit {
        faultCounts.deinitialize(count: FaultKind.allCases.count)
        faultCounts.deallocate()
    }

    /// Counts one fault of `kind`.
    @inlinable public func count(_ kind: FaultKind) { faultCounts[kind.rawValue].wrappingAdd(1, ordering: .relaxed) }
    /// Faults of `kind` so far.
    @inlinable public func faults(_ kind: FaultKind) -> Int { faultCounts[kind.rawValue].load(ordering: .relaxed) }
    /// All faults so far.
    public var totalFaults: Int { FaultKind.allCases.reduce(0) { $0 + faults($1) } }
}
