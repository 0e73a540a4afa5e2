import Synchronization

/// Access rights of a mapping (`PROT_READ`, `PROT_WRITE`; `PROT_NONE` is the empty set).
public struct Protection: OptionSet, Sendable, Hashable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let read = Protection(rawValue: 1)
    public static let write = Protection(rawValue: 2)
    public static let none: Protection = []
    public static let readWrite: Protection = [.read, .write]
}

/// VMA flags beyond protection.
public struct VMAFlags: OptionSet, Sendable, Hashable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// `VM_SHARED`: a `MAP_SHARED|MAP_ANONYMOUS` mapping (shmem in the kernel): writes are seen by every
    /// process that maps it, and fork shares rather than copies.
    public static let shared = VMAFlags(rawValue: 1)
    /// `VM_HUGEPAGE` (`MADV_HUGEPAGE`): anonymous write faults on an aligned 2 MiB range get a 2 MiB folio.
    static let hugepage = VMAFlags(rawValue: 2)
    /// `VM_MIXEDMAP`: pages a driver inserted with `vm_insert_page` (dmirror's `mmap`); they have
    /// descriptors, so `hmm_range_fault` walks the VMA as any other.
    static let mixedMap = VMAFlags(rawValue: 4)
    /// `VM_PFNMAP | VM_IO`: raw pfns with no descriptors behind them (`remap_pfn_range`);
    /// `hmm_vma_walk_test` refuses the VMA. The lab creates the VMA (``AddressSpace/mmapSpecial(length:protection:flags:)``)
    /// but maps nothing in it.
    static let pfnMap = VMAFlags(rawValue: 8)
    /// `VM_HUGETLB` (`MAP_HUGETLB`): every fault maps a 2 MiB folio of the hugetlb pool with a huge
    /// PMD; the folio is never split and never migrated to a device.
    public static let hugetlb = VMAFlags(rawValue: 16)
    /// `VM_SPECIAL` minus `VM_DONTEXPAND`: VMAs `migrate_vma_setup` refuses.
    static let special: VMAFlags = [.mixedMap, .pfnMap]
}

/// A virtual memory area (`struct vm_area_struct`): `[start, end)` with one protection and one backing object.
struct VMA: Sendable {
    public var start: UInt64
    public var end: UInt64
    public var protection: Protection
    public var flags: VMAFlags
    /// `vm_pgoff`: the page index of `start` within ``object``; kept across mremap so the reverse map
    /// finds moved pages (`linear_page_index`).
    var pgoff: UInt64
    /// The anon_vma (private) or shmem object (shared) that the reverse map and shared faults go through.
    /// Not retained by the VMA (copies of a VMA cost no reference counting on the hot paths): the
    /// address space that holds the VMA owns its objects (``AddressSpace`` keeps them alive while any
    /// of its VMAs uses them).
    public unowned(unsafe) var object: MappingObject
    /// `vm_file`'s page cache for a file mapping (nil for anonymous memory). For `MAP_SHARED` it is also
    /// ``object``; for `MAP_PRIVATE` ``object`` is the anon_vma its copy-on-write pages go to. Owned
    /// like ``object`` by the address space.
    public unowned(unsafe) var file: MappingObject? = nil

    @inlinable var isShared: Bool { flags.contains(.shared) }
    /// `vma_is_anonymous()`: private memory with no file (shmem and file mappings have `vm_ops`).
    @inlinable var isAnonymous: Bool { !isShared && file == nil }
    @inlinable var isWritable: Bool { protection.contains(.write) }
    @inlinable var isReadable: Bool { protection.contains(.read) }
    /// PROT_NONE: a present entry here is a `pte_protnone` one (`vm_page_prot` is `PAGE_NONE`).
    @inlinable var isNoAccess: Bool { !isReadable && !isWritable }
    @inlinable var isHugepage: Bool { flags.contains(.hugepage) }
    /// `is_vm_hugetlb_page()`.
    @inlinable var isHugetlb: Bool { flags.contains(.hugetlb) }
    /// Neither hugetlb nor `VM_SPECIAL`: what `migrate_vma_setup` accepts.
    @inlinable var isMigratable: Bool { flags.isDisjoint(with: [.hugetlb, .mixedMap, .pfnMap]) }
    @inlinable var pageCount: Int { Int((end - start) >> PageSize.shift) }
    @inlinable public func contains(_ address: UInt64) -> Bool { address >= start && address < end }

    /// `linear_page_index(vma, address)`.
    @inlinable func pageIndex(_ address: UInt64) -> UInt64 { pageNumber(address - start) + pgoff }
    /// The address of page index `index`, if this VMA maps it (`vma_address`).
    @inlinable public func address(ofIndex index: UInt64) -> UInt64? {
        guard index >= pgoff, index < pgoff + UInt64(pageCount) else { return nil }
        return start + addressOfPage(index - pgoff)
    }
}

/// What a VMA's pages belong to for the reverse map: the `anon_vma` of private anonymous memory, or the
/// shmem object of shared anonymous memory (whose page cache holds the folios by page index).
///
/// Each object has an id, stored with the page index in the descriptor's `mapping` word
/// (``MappingObject/encode(index:)``), and a list of the address spaces that map it, so that
/// `try_to_unmap` / `rmap_walk_anon` can find every PTE that maps a folio.
///
/// Departure from the kernel: one object per VMA family (a VMA and its fork copies) stands in for the
/// anon_vma tree and its chains; a child's new pages are found through the same object.
final class MappingObject: @unchecked Sendable {
    enum Kind: Sendable { case anon, shmem, file }

    let id: UInt64
    public let kind: Kind
    /// `anon_vma->rwsem` (`i_mmap_rwsem` for shmem): every reverse-map walk of a folio of this object
    /// takes it for reading (`anon_vma_lock_read` in `rmap_walk_anon`, unless the caller already holds
    /// it: `rmap_walk_locked`); changes of the object's membership and of its VMAs take it for writing
    /// (`anon_vma_lock_write` in `anon_vma_clone`, `unlink_anon_vmas`, `vma_prepare`), as does
    /// `__folio_split` for the whole split.
    ///
    /// Lock order as in the kernel: the mmap lock first, then this one.
    let rmapLock = ReadWriteLock()
    /// Address spaces that map this object (`anon_vma_chain`, `i_mmap`).
    private let members = LabMutex<[ObjectIdentifier: WeakAddressSpace]>([:])
    /// shmem or file page cache: page index → pfn + 1 (0 = not cached). Nil for anon.
    let pageCache: UnsafeMutablePointer<Atomic<UInt64>>?
    let pageCacheCount: Int
    let memory: PhysicalMemory?

    private static let nextID = Atomic<UInt64>(1)
    private static let registry = LabMutex<[UInt64: WeakObject]>([:])

    /// An anon_vma.
    public init(anon: ()) {
        id = Self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        kind = .anon
        pageCache = nil
        pageCacheCount = 0
        memory = nil
        Self.registry.withLock { $0[id] = WeakObject(self) }
    }

    /// A shmem object of `pages` pages.
    public convenience init(shmemPages pages: Int, memory: PhysicalMemory) {
        self.init(cachePages: pages, kind: .shmem, memory: memory)
    }

    /// An object with a page cache of `pages` pages (shmem, or a file's `address_space`).
    init(cachePages pages: Int, kind: Kind, memory: PhysicalMemory) {
        id = Self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        self.kind = kind
        pageCache = .allocate(capacity: pages)
        for i in 0..<pages { (pageCache! + i).initialize(to: Atomic(0)) }
        pageCacheCount = pages
        self.memory = memory
        Self.registry.withLock { $0[id] = WeakObject(self) }
    }

    deinit {
        Self.registry.withLock { _ = $0.removeValue(forKey: id) }
        if let pageCache, let memory {
            // The page cache's references (shmem_evict_inode / evict → truncate_inode_pages_final).
            for i in 0..<pageCacheCount {
                let v = pageCache[i].load(ordering: .acquiring)
                if v != 0 { memory.put(Folio(pfn: Pfn(rawValue: v - 1), order: 0)) }
            }
            pageCache.deinitialize(count: pageCacheCount)
            pageCache.deallocate()
        }
    }

    /// The object with `id`, if it still exists.
    static func lookup(_ id: UInt64) -> MappingObject? { registry.withLock { $0[id]?.object } }

    /// The descriptor `mapping` word for page `index` of this object (`page->mapping` + `page->index`).
    @inlinable func encode(index: UInt64) -> UInt64 { id << 40 | (index & ((1 << 40) - 1)) }
    /// Splits a `mapping` word into object id and page index.
    @inlinable public static func decode(_ mapping: UInt64) -> (id: UInt64, index: UInt64) {
        (mapping >> 40, mapping & ((1 << 40) - 1))
    }

    /// `anon_vma_clone()` / `anon_vma_fork()`: `mm` starts mapping this object (under the object's
    /// write lock; the caller holds `mm`'s mmap lock for writing).
    func addMember(_ mm: AddressSpace) {
        rmapLock.writeLock()
        defer { rmapLock.unlock() }
        members.withLock {
            $0[ObjectIdentifier(mm)] = WeakAddressSpace(mm)
            memberCount.store($0.count, ordering: .releasing)
        }
    }
    /// `unlink_anon_vmas()`: `mm` no longer maps this object (under the object's write lock; the caller
    /// holds `mm`'s mmap lock for writing).
    func removeMember(_ mm: AddressSpace) {
        rmapLock.writeLock()
        defer { rmapLock.unlock() }
        members.withLock {
            _ = $0.removeValue(forKey: ObjectIdentifier(mm))
            memberCount.store($0.count, ordering: .releasing)
        }
    }
    /// How many address spaces map this object (read without the lock, for the reverse map's fast path).
    let memberCount = Atomic<Int>(0)
    /// The address spaces that map this object now.
    func memberSpaces() -> [AddressSpace] { members.withLock { $0.values.compactMap(\.space) } }
}

struct WeakAddressSpace: @unchecked Sendable {
    weak var space: AddressSpace?
    init(_ space: AddressSpace) { self.space = space }
}

struct WeakObject: @unchecked Sendable {
    weak var object: MappingObject?
    init(_ object: MappingObject) { self.object = object }
}
