import Glibc

/// CPU loads and stores that go through the page table, faulting on demand.
///
/// Each page-sized piece of an access runs under the mmap lock for reading and, while it translates
/// the address and copies the bytes, under the lock of the table that maps it (the PTE lock, or the
/// PMD lock for a huge mapping). That lock stands in for the TLB: a migration or swap-out that
/// replaces the entry under the same lock, then flushes, can never miss a store that was already
/// under way, and a later store sees the new entry and faults. A store that finds a migration entry
/// waits for the migration and lands in the new page.
extension AddressSpace {
    /// Stores `bytes` at `address` (any alignment, any length, across pages).
    public func store(_ bytes: UnsafeRawBufferPointer, at address: UInt64) throws(FaultError) {
        try access(address: address, count: bytes.count, write: true) { host, offset, n in
            RawBytes.copy(to: host, from: bytes.baseAddress! + offset, count: n)
        }
    }

    /// Loads `buffer.count` bytes from `address`.
    public func load(into buffer: UnsafeMutableRawBufferPointer, from address: UInt64) throws(FaultError) {
        try access(address: address, count: buffer.count, write: false) { host, offset, n in
            RawBytes.copy(to: buffer.baseAddress! + offset, from: host, count: n)
        }
    }

    /// Stores one integer (little-endian, as the CPU does). `signalPending` is asked before each retry
    /// after a fault, as the return to user space checks for a fatal signal: when it says yes the store
    /// throws ``FaultError/interrupted(_:)`` without being made.
    public func store<T: FixedWidthInteger>(
        _ value: T, at address: UInt64, signalPending: (() -> Bool)? = nil
    ) throws(FaultError) {
        var v = value
        try withUnsafeBytes(of: &v) { (b) throws(FaultError) in
            try access(address: address, count: b.count, write: true, signalPending: signalPending) { host, offset, n in
                RawBytes.copy(to: host, from: b.baseAddress! + offset, count: n)
            }
        }
    }

    /// Loads one integer (`signalPending` as for ``store(_:at:signalPending:)``).
    public func load<T: FixedWidthInteger>(
        _: T.Type = T.self, from address: UInt64, signalPending: (() -> Bool)? = nil
    ) throws(FaultError) -> T {
        var v: T = 0
        try withUnsafeMutableBytes(of: &v) { (b) throws(FaultError) in
            try access(address: address, count: b.count, write: false, signalPending: signalPending) {
                host, offset, n in
                RawBytes.copy(to: b.baseAddress! + offset, from: host, count: n)
            }
        }
        return v
    }

    /// Splits an access into page pieces and runs `copy(hostAddress, offsetInAccess, length)` for each
    /// with the translation held, faulting as needed. The CPU retries a faulting access for as long as
    /// the fault handler returns without mapping the page (a migration that keeps failing, for one);
    /// only a fatal signal ends that, which `signalPending` models.
    func access(
        address: UInt64, count: Int, write: Bool, signalPending: (() -> Bool)? = nil,
        _ copy: (UnsafeMutableRawPointer, Int, Int) -> Void
    ) throws(FaultError) {
        guard count > 0 else { return }
        mmapLock.readLock()
        defer { mmapLock.unlock() }
        var done = 0
        while done < count {
            let at = address + UInt64(done)
            let n = min(count - done, PageSize.bytes - pageOffset(at))
            while !translateAndCopy(at, write: write, { host, _ in copy(host, done, n) }) {
                _ = try handleFault(at: at, write: write)
                if signalPending?() == true { throw .interrupted(at) }
            }
            done += n
        }
    }

    /// Translates `address` under the table lock and runs `body` with the host address and the page's
    /// pfn if the entry allows the access; false when a fault is needed. Sets the dirty bit on a write,
    /// as the MMU does.
    func translateAndCopy(_ address: UInt64, write: Bool, _ body: (UnsafeMutableRawPointer, Pfn) -> Void) -> Bool {
        guard let pmd = pageTable.pmdSlot(address, allocate: false) else { return false }
        let pmdEntry = pmd.load()
        if pmdEntry.isHuge {
            let lock = pageTable.lock(tableOf: pmd)
            defer { lock.unlock() }
            let entry = pmd.load()
            guard entry.isHuge, !entry.isProtNone, !write || entry.isWritable else { return false }
            if write, !entry.isDirty { pmd.store(PTE(rawValue: entry.rawValue | PTE.dirtyBit)) }
            let offset = Int(pmdOffset(address))
            body(memory.address(of: entry.pfn) + offset, entry.pfn + pteIndex(address))
            return true
        }
        guard pmdEntry.isPresent, let table = pageTable.pteTable(under: pmd, allocate: false) else { return false }
        let slot = pageTable.slot(in: table, level: .pte, address: address)
        let lock = pageTable.lock(tableOf: slot)
        defer { lock.unlock() }
        let entry = slot.load()
        guard entry.isPresent, !entry.isProtNone, !write || entry.isWritable else { return false }
        if write, !entry.isDirty { slot.store(PTE(rawValue: entry.rawValue | PTE.dirtyBit)) }
        body(memory.address(of: entry.pfn) + pageOffset(address), entry.pfn)
        return true
    }

    /// `pin_user_pages(FOLL_WRITE | FOLL_PIN)` for one page: faults it in for writing if needed and
    /// takes a reference on its folio under the table lock, so that migration finds more references
    /// than mappings and leaves the page where it is (`migrate_vma_check_page`). Returns the pinned
    /// page; give it back with ``unpinUserPage(_:)``.
    ///
    /// With `longterm` (`FOLL_LONGTERM`) the pinned page is checked as
    /// `check_and_migrate_movable_pages` (mm/gup.c) does: a ZONE_DEVICE page is unpinned, moved back to
    /// system memory through a write fault, and the pin taken again. A device-private entry never gets
    /// that far in the lab or in the kernel (the GUP fault, `do_swap_page` → `migrate_to_ram`, moves it
    /// first); the check stands for device-coherent pages, which the lab does not model.
    ///
    /// Departure from the kernel: the pin is one plain reference, not `GUP_PIN_COUNTING_BIAS`; the
    /// migration check only compares references with mappings, so the outcome is the same. The lab has
    /// no movable zone or CMA, so no system page is migrated for a long-term pin.
    func pinUserPage(_ address: UInt64, longterm: Bool = false) throws(FaultError) -> Pfn {
        while true {
            let page = try getUserPage(address, write: true)
            guard longterm, memory.page(page).test(.zoneDevice) else { return page }
            unpinUserPage(page)
            try faultIn(address, write: true)
        }
    }

    /// `get_user_pages(FOLL_GET)` (and `get_user_pages_fast`, whose fast walk gives up on a
    /// non-present entry and falls back to it) for one page: faults the page in (a device-private entry
    /// through `migrate_to_ram`) and takes a reference on its folio. Give it back with
    /// ``unpinUserPage(_:)`` (`put_page`).
    func getUserPage(_ address: UInt64, write: Bool) throws(FaultError) -> Pfn {
        mmapLock.readLock()
        defer { mmapLock.unlock() }
        var pinned: Pfn?
        let memory = self.memory
        while !translateAndCopy(
            address, write: write,
            { _, pfn in
                memory.folioRef(containing: pfn).get()
                pinned = pfn
            })
        {
            _ = try handleFault(at: address, write: write)
        }
        return pinned!
    }

    /// `faultin_page()`: one fault at `address` under the mmap lock.
    func faultIn(_ address: UInt64, write: Bool) throws(FaultError) {
        mmapLock.readLock()
        defer { mmapLock.unlock() }
        _ = try handleFault(at: address, write: write)
    }

    /// `unpin_user_page()`: drops the reference ``pinUserPage(_:)`` took.
    func unpinUserPage(_ page: Pfn) {
        memory.put(memory.folio(containing: page))
    }
}

extension AddressSpace {
    /// Stores an array of bytes at `address`.
    public func store(_ bytes: [UInt8], at address: UInt64) throws(FaultError) {
        var failure: FaultError?
        bytes.withUnsafeBytes { b in
            do throws(FaultError) { try store(b, at: address) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Loads `count` bytes from `address`.
    func loadBytes(_ count: Int, from address: UInt64) throws(FaultError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var failure: FaultError?
        bytes.withUnsafeMutableBytes { b in
            do throws(FaultError) { try load(into: b, from: address) } catch { failure = error }
        }
        if let failure { throw failure }
        return bytes
    }
}
