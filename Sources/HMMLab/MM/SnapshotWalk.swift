/// The state of one page as a snapshot reports it (in the spirit of `HMM_DMIRROR_SNAPSHOT`'s bytes).
public enum PageState: UInt8, Sendable, CustomStringConvertible {
    case none = 0
    case read
    case write
    case zero
    case swap
    case migration
    case devicePrivate
    case deviceExclusive
    case protNone
    /// No VMA.
    case error

    public var description: String {
        switch self {
        case .none: "none"
        case .read: "read"
        case .write: "write"
        case .zero: "zero"
        case .swap: "swap"
        case .migration: "migration"
        case .devicePrivate: "device-private"
        case .deviceExclusive: "device-exclusive"
        case .protNone: "protnone"
        case .error: "error"
        }
    }

    /// The state an entry stands for.
    /// `zeroPage` is the 4 KiB zero page, `hugeZeroPage` the huge zero folio's first pfn (pfn 0 when
    /// there is none); a page of either is `.zero`.
    @inlinable public init(_ entry: PTE, zeroPage: Pfn, hugeZeroPage: Pfn) {
        if entry.isNone {
            self = .none
        } else if entry.isProtNone {
            self = .protNone
        } else if entry.isPresent {
            let zero = entry.pfn == zeroPage || entry.pfn.aligned(toOrder: PageSize.pmdOrder) == hugeZeroPage
            self = zero ? .zero : entry.isWritable ? .write : .read
        } else if entry.isSwap {
            self = .swap
        } else if entry.isMigration {
            self = .migration
        } else if entry.isDevicePrivate {
            self = .devicePrivate
        } else if entry.isDeviceExclusive {
            self = .deviceExclusive
        } else {
            self = .error
        }
    }
}

/// A read-only walk that writes one ``PageState`` byte per page: the lab's lightest walk, the one
/// `bench calibrate` compares with the kernel's `mincore()`.
struct SnapshotWalk: PageWalkOps {
    static var hasPmdEntry: Bool { true }
    static var hasPteEntry: Bool { true }
    static var hasPteHole: Bool { true }

    let out: UnsafeMutablePointer<UInt8>
    let start: UInt64
    let zeroPage: Pfn
    let hugeZeroPage: Pfn

    public init(into out: UnsafeMutablePointer<UInt8>, start: UInt64, zeroPage: Pfn, hugeZeroPage: Pfn) {
        self.out = out
        self.start = start
        self.zeroPage = zeroPage
        self.hugeZeroPage = hugeZeroPage
    }

    @inline(__always) func index(_ address: UInt64) -> Int { pageCount(start, address) }

    mutating func pteHole(_ address: UInt64, _ next: UInt64, depth: Int, _ walk: inout PageWalk) -> Int32 {
        let state = depth < 0 ? PageState.error : .none
        for i in index(address)..<index(next) { out[i] = state.rawValue }
        return 0
    }

    mutating func pmdEntry(_ pmd: EntrySlot, _ address: UInt64, _ next: UInt64, _ walk: inout PageWalk) -> Int32 {
        let entry = pmd.load()
        guard entry.isHuge || entry.isSwapFormat else { return 0 }
        let state = PageState(entry, zeroPage: zeroPage, hugeZeroPage: hugeZeroPage)
        for i in index(address)..<index(next) { out[i] = state.rawValue }
        walk.action = .continue
        return 0
    }

    @inline(__always)
    mutating func pteEntry(_ pte: EntrySlot, _ address: UInt64, _ next: UInt64, _ walk: inout PageWalk) -> Int32 {
        out[index(address)] = PageState(pte.load(), zeroPage: zeroPage, hugeZeroPage: hugeZeroPage).rawValue
        return 0
    }
}

/// Finds entries matching a predicate, at PTE level and among PMD leaves.
struct FindEntriesWalk: PageWalkOps {
    static var hasPmdEntry: Bool { true }
    static var hasPteEntry: Bool { true }
    static var hasPteHole: Bool { false }

    let predicate: (PTE) -> Bool
    var found: [(UInt64, PTE)] = []

    mutating func pmdEntry(_ pmd: EntrySlot, _ address: UInt64, _ next: UInt64, _ walk: inout PageWalk) -> Int32 {
        let entry = pmd.load()
        if entry.isHuge || entry.isSwapFormat {
            if predicate(entry) { found.append((address, entry)) }
            walk.action = .continue
        }
        return 0
    }

    mutating func pteEntry(_ pte: EntrySlot, _ address: UInt64, _ next: UInt64, _ walk: inout PageWalk) -> Int32 {
        let entry = pte.load()
        if !entry.isNone, predicate(entry) { found.append((address, entry)) }
        return 0
    }
}

extension AddressSpace {
    /// The state of each page of `[start, pageAddress(start, pages))`, read by one ``SnapshotWalk`` under the
    /// mmap read lock (no fault).
    public func snapshot(_ start: UInt64, pages: Int) -> [PageState] {
        var bytes = [UInt8](repeating: 0, count: pages)
        bytes.withUnsafeMutableBufferPointer { buffer in
            var ops = SnapshotWalk(
                into: buffer.baseAddress!, start: start, zeroPage: memory.zeroPage, hugeZeroPage: memory.hugeZeroPfn)
            mmapLock.withReadLock { _ = walkPageRange(start, pageAddress(start, pages), &ops) }
        }
        return bytes.map { PageState(rawValue: $0) ?? .error }
    }

    /// Every entry in the address space matching `predicate`, with its address.
    public func entries(where predicate: @escaping (PTE) -> Bool) -> [(address: UInt64, entry: PTE)] {
        var ops = FindEntriesWalk(predicate: predicate)
        mmapLock.withReadLock { _ = walkPageRange(Self.userRange.lowerBound, Self.userRange.upperBound, &ops) }
        return ops.found.map { (address: $0.0, entry: $0.1) }
    }

    /// Migration and device-private entries left in the tables: a correct run leaves none of the first,
    /// and none of the second once its device released its memory. Device-exclusive entries are not
    /// among them: they map a system page, outlive the device that made them (the next CPU access
    /// restores the PTE), and zap releases them like present PTEs.
    func transientEntries() -> [(address: UInt64, entry: PTE)] {
        entries { $0.isMigration || $0.isDevicePrivate }
    }
}
