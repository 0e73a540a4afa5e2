/// The checks every migration test ends with: no migration entry left; each folio's mapcount equals
/// the entries that map it across the given address spaces (present, device-private and
/// device-exclusive: in 7.2 a device-exclusive entry keeps the page's mapping; the zero page and the
/// huge zero folio, which mappings do not count, excepted), and its refcount equals its mappings plus
/// the references that are known to exist (the page cache's, one per folio a shmem object or a file
/// caches); each device's page table agrees with the CPU
/// page table of the address space it mirrors: what the device maps, the CPU maps the same way (the
/// device may map less: an invalidation drops its entries until it faults again), and a page the
/// device maps for atomic access the CPU holds as a device-exclusive entry of that page; no mapped
/// frame is on its pool's free lists; and with the driver cost each live device folio has its backing
/// system folio (test_hmm's `zone_device_data`), allocated, of the same order, held once, and the
/// device's counters account for every backing page (allocated − freed = held): a system frame held
/// this way is not a leak.
enum Invariants {
    /// Violations found, one line each (empty when all hold). `knownReferences`: references held
    /// outside the page tables (pins), per folio head. Every CPU's LRU add batch is drained first
    /// (``PhysicalMemory/drainLRUBatches()``), so no folio holds a batch's reference; call it at a
    /// quiescent point.
    public static func check(
        _ spaces: [AddressSpace], devices: [Device] = [], knownReferences: [Pfn: Int32] = [:]
    ) -> [String] {
        guard let memory = spaces.first?.memory else { return [] }
        memory.drainLRUBatches()
        var (problems, mappings) = countMappings(spaces, memory)
        for (head, count) in mappings { problems += checkFolio(head, mappedBy: count, memory, knownReferences) }
        for device in devices { problems += checkBacking(device) }
        for device in devices { problems += checkDeviceMappings(device) }
        return problems
    }

    /// The entries that map each folio head, over every address space; a migration entry left
    /// anywhere is a problem.
    static func countMappings(_ spaces: [AddressSpace], _ memory: PhysicalMemory) -> ([String], [Pfn: Int32]) {
        var problems: [String] = []
        var mappings: [Pfn: Int32] = [:]
        for mm in spaces {
            for (address, entry) in mm.entries(where: { _ in true }) {
                if entry.isMigration {
                    problems.append("migration entry left at 0x\(String(address, radix: 16)): \(entry)")
                    continue
                }
                guard entry.isPresent || entry.isDevicePrivate || entry.isDeviceExclusive else { continue }
                // The zero page and the huge zero folio are reserved: no mapcount, no reference per mapping.
                if entry.isPresent, memory.isZero(entry.pfn) { continue }
                mappings[memory.folio(containing: entry.pfn).pfn, default: 0] += 1
            }
        }
        return (problems, mappings)
    }

    /// One mapped folio: its mapcount is the entries that map it, it is off the free lists, its
    /// refcount is its mappings plus the known pins plus the page cache's reference, and it is
    /// unlocked.
    static func checkFolio(
        _ head: Pfn, mappedBy count: Int32, _ memory: PhysicalMemory, _ knownReferences: [Pfn: Int32]
    ) -> [String] {
        var problems: [String] = []
        let folio = FolioRef(head: memory.page(head))
        let maps = folio.mapCount
        let refs = folio.refCount
        if maps != count {
            problems.append("\(memory.folio(containing: head)): mapcount \(maps) but \(count) entries map it")
        }
        if let pool = memory.pool(of: head), pool.allocator.isFree(head.index - pool.firstPfn.index) {
            problems.append("\(memory.folio(containing: head)): mapped but on the free lists")
        }
        var expected = maps + (knownReferences[head] ?? 0)
        let (id, index) = MappingObject.decode(folio.mapping)
        // The page cache's reference, for a folio a shmem object or a file caches at its index.
        if let object = MappingObject.lookup(id), object.kind != .anon, object.caches(head, at: index) {
            expected += 1
        }
        if refs != expected {
            problems.append("\(memory.folio(containing: head)): refcount \(refs), expected \(expected)")
        }
        if folio.isLocked { problems.append("\(memory.folio(containing: head)): still locked") }
        return problems
    }

    /// Every page the device maps is mapped by the CPU to the same pfn, as a device-private or
    /// present entry (a device-exclusive one for an atomic mapping).
    static func checkDeviceMappings(_ device: Device) -> [String] {
        var problems: [String] = []
        let mm = device.mm
        for m in device.deviceMappings() {
            let hex = "0x" + String(m.address, radix: 16)
            // The CPU entry and the pfn it gives this page (a PMD-level entry covers 512 pages).
            let found: (entry: PTE, pfn: Pfn)? = mm.mmapLock.withReadLock {
                guard let pmd = mm.pageTable.pmdSlot(m.address, allocate: false) else { return nil }
                let e = pmd.load()
                if e.isHuge || e.isSwapFormat { return (e, e.pfn + pteIndex(m.address)) }
                guard let pte = mm.pageTable.pteSlot(m.address)?.load() else { return nil }
                return (pte, pte.pfn)
            }
            guard let (cpu, cpuPfn) = found else {
                problems.append("device \(device.owner) maps \(hex) but the CPU table has nothing there")
                continue
            }
            if m.atomic ? cpu.isDeviceExclusive : (cpu.isDevicePrivate || cpu.isPresent) {
                if cpuPfn != m.pfn {
                    problems.append("device \(device.owner) maps \(hex) to \(m.pfn), the CPU to \(cpuPfn)")
                }
            } else {
                problems.append(
                    "device \(device.owner) maps \(hex)\(m.atomic ? " for atomic access" : "") but the CPU entry is \(cpu)"
                )
            }
        }
        return problems
    }

    /// The backing-folio part of ``check(_:devices:knownReferences:)`` for one device.
    static func checkBacking(_ device: Device) -> [String] {
        let memory = device.memory
        let pool = device.pool
        var problems: [String] = []
        var held = 0
        var pfn = pool.firstPfn
        while pfn < pool.endPfn {
            let page = memory.page(pfn)
            let order = page.isTail ? 0 : page.order
            defer { pfn = pfn + (1 << order) }
            guard page.test(.zoneDevice), !page.isTail, page.refCount > 0, page.deviceOwner == device.owner else {
                continue
            }
            guard let backing = page.zoneDeviceData else {
                if device.driverCost { problems.append("\(Folio(pfn: pfn, order: order)): no backing page") }
                continue
            }
            let b = memory.page(backing)
            if !device.driverCost {
                problems.append("\(Folio(pfn: pfn, order: order)): a backing page without the driver cost")
            }
            if !memory.system.contains(backing)
                || memory.system.allocator.isFree(backing.index - memory.system.firstPfn.index)
            {
                problems.append("\(Folio(pfn: pfn, order: order)): backing \(backing) is not an allocated system frame")
            } else if b.order != order || b.refCount != 1 || b.isTail {
                problems.append(
                    "\(Folio(pfn: pfn, order: order)): backing \(backing) has order \(b.order), refcount \(b.refCount)")
            }
            held += 1 << order
        }
        let counted =
            device.stats.backingPagesAllocated.load(ordering: .relaxed)
            - device.stats.backingPagesFreed.load(ordering: .relaxed)
        if counted != held {
            problems.append("device \(device.owner): \(held) backing pages held, counters say \(counted)")
        }
        return problems
    }
}
