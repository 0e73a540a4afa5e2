/// How a driver makes a range resident in device memory (DESIGN.md, "The three strategies").
public enum Strategy: String, Sendable, CaseIterable, CustomStringConvertible {
    /// `hmm_range_fault(REQ_FAULT[|REQ_WRITE])`, then `migrate_vma_setup` → alloc + copy → pages → finalize:
    /// always two walks (plus restarts).
    case faultThenMigrate = "fault-then-migrate"
    /// `migrate_vma_setup`; when some wanted pages were not collected (swapped out, read-only),
    /// `hmm_range_fault` on the window and `migrate_vma_setup` again: one walk when all pages are
    /// present, three otherwise.
    case migrateThenFault = "migrate-then-fault"
    /// The RFC (Aug 2025 v1): `hmm_range_fault(REQ_FAULT|REQ_MIGRATE[|REQ_WRITE])` →
    /// `migrate_hmm_range_setup` → alloc + copy → pages → finalize: one walk (plus restarts).
    case unified

    public var description: String { rawValue }
}

extension Device {
    /// Makes `[start, pageAddress(start, pages))` resident in this device's memory with `strategy`, as one window
    /// (the caller chooses the window size: 512 pages in dmirror). Returns what it took.
    ///
    /// `access` and `faultPages` are the driver's `hmm_range_fault` requests, alike for the three
    /// strategies: `.read` asks `REQ_FAULT` (unified: `REQ_FAULT|REQ_MIGRATE`, as the RFC's driver does),
    /// `.write` adds `REQ_WRITE`. The two strategies that fault before or after collecting do it in calls
    /// of `faultPages` pages (nil: the whole window; test_hmm's `HMM_DMIRROR_READ`: 32, what
    /// `--engine kernel` can do); a read request also starts where `dmirror_read` does, at the first page
    /// the device's mirror lacks, so its 32-page calls fall where the kernel's do.
    public func makeResident(
        _ start: UInt64, pages: Int, strategy: Strategy, compound: Bool = false, access: DeviceAccess = .read,
        faultPages: Int? = nil
    ) -> MigrationResult {
        let end = pageAddress(start, pages)
        switch strategy {
        case .unified:
            return migrateOnFault(start, pages: pages, window: pages, compound: compound, access: access)
        case .faultThenMigrate:
            var result = MigrationResult()
            let write = access == .write
            let from = write ? start : firstUnmirrored(start, end) ?? end
            let r = from == end ? 0 : fault(from, end, write: write, window: faultPages ?? pages, result: &result)
            if r != 0 {
                result.errno = r
                return result
            }
            let migration = migrateToDevice(start, pages: pages)
            result.merge(migration)
            return result
        case .migrateThenFault:
            var result = migrateToDevice(start, pages: pages, acceptMissing: true)
            guard result.errno == 0 else { return result }
            guard let first = firstUnmirrored(start, end) else { return result }
            // Some pages were not collected: fault them in, then collect again.
            let write = access == .write
            let r = fault(write ? start : first, end, write: write, window: faultPages ?? pages, result: &result)
            if r != 0 {
                result.errno = r
                return result
            }
            result.merge(migrateToDevice(start, pages: pages))
            return result
        }
    }
}

extension MigrationResult {
    /// Adds another call's counts to these.
    mutating func merge(_ other: MigrationResult) {
        errno = other.errno
        collected += other.collected
        migrated += other.migrated
        walks += other.walks
        restarts += other.restarts
        faults += other.faults
        tlbFlushes += other.tlbFlushes
        splitsBeforeCollect += other.splitsBeforeCollect
        splitsAfterIsolation += other.splitsAfterIsolation
        selfInvalidationRetries += other.selfInvalidationRetries
        notifierRetries += other.notifierRetries
        crossJobRetries += other.crossJobRetries
        migrationEntries += other.migrationEntries
        lockFailures += other.lockFailures
        phases += other.phases
    }
}
