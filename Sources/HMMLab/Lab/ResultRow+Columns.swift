/// The fixed CSV columns, each declared once: its name and how a row's value is written under it.
///
/// The header (``ResultRow/columns``) and a row's values (``ResultRow/fields``) are both read from
/// ``ResultRow/fixedColumns``, so they cannot drift apart. The order is the order of the files since
/// the first: a column added later goes at the end (``addedColumns``), as `compare`, `report` and
/// `scripts/plot.py` read older files by name.
extension ResultRow {
    /// One fixed column: its header name and its value in a row.
    public struct Column: Sendable {
        /// The name in the header (`walk_restarts`).
        public let name: String
        /// The row's value as written in the file.
        public let value: @Sendable (ResultRow) -> String

        init(_ name: String, _ value: @escaping @Sendable (ResultRow) -> String) {
            self.name = name
            self.value = value
        }

        /// A text column.
        static func text(_ name: String, _ value: @escaping @Sendable (ResultRow) -> String) -> Column {
            Column(name, value)
        }

        /// An integer column.
        static func integer(_ name: String, _ value: @escaping @Sendable (ResultRow) -> Int) -> Column {
            Column(name) { String(value($0)) }
        }

        /// A nanosecond or seed column.
        static func integer(_ name: String, _ value: @escaping @Sendable (ResultRow) -> UInt64) -> Column {
            Column(name) { String(value($0)) }
        }

        /// A count that may not have been measured (empty when nil).
        static func optionalInteger(_ name: String, _ value: @escaping @Sendable (ResultRow) -> Int?) -> Column {
            Column(name) { value($0).map(String.init) ?? "" }
        }

        /// A number with at most three decimals (``ResultRow/number(_:)``).
        static func number(_ name: String, _ value: @escaping @Sendable (ResultRow) -> Double) -> Column {
            Column(name) { ResultRow.number(value($0)) }
        }

        /// A number that may not apply to the row (empty when nil).
        static func optionalNumber(_ name: String, _ value: @escaping @Sendable (ResultRow) -> Double?) -> Column {
            Column(name) { value($0).map(ResultRow.number) ?? "" }
        }
    }

    /// Every fixed column, in file order.
    static let fixedColumns: [Column] = machineColumns + settingColumns + countColumns + timeColumns + addedColumns

    /// The fixed column named `name`, if there is one.
    public static func column(named name: String) -> Column? { fixedColumns.first { $0.name == name } }

    /// The run, its machine and its build.
    static let machineColumns: [Column] = [
        .text("run_id", \.metadata.runId), .text("timestamp", \.timestamp),
        .text("tool_version", \.metadata.toolVersion),
        .text("host", \.metadata.host), .text("kernel", \.metadata.kernel), .text("cpu_model", \.metadata.cpuModel),
        .integer("cpus", \.metadata.cpus), .integer("numa_nodes", \.metadata.numaNodes),
        .integer("system_node", \.metadata.systemNode),
        .integer("device_node", \.metadata.deviceNode), .text("backing", \.metadata.backing),
        .text("system_backing", \.metadata.systemBacking),
        .text("device_backing", \.metadata.deviceBacking), .text("pinned_cpus", \.metadata.pinnedCPUs),
        .text("thp_mode", \.metadata.thpMode),
    ]

    /// The configuration, as given (and the TLB shootdown mechanism the flushes were paid with).
    static let settingColumns: [Column] = [
        .text("engine", \.engine), .text("strategy", \.strategy), .text("direction", \.direction),
        .integer("pages", \.config.pages),
        .integer("window_pages", \.config.windowPages), .text("mix", \.config.mix.description),
        .number("thp", \.config.thp),
        .number("device_large_fail", \.config.deviceLargeFail), .text("split_policy", \.config.splitPolicy.rawValue),
        .text("self_invalidation", \.config.selfInvalidation.rawValue),
        .text("device_access", \.config.deviceAccess.rawValue),
        .text("fault_pages") { $0.config.faultPages.map(String.init) ?? "window" },
        .text("costs", \.config.costs.description),
        .text("tlb_shootdown", \.metadata.tlbShootdown), .integer("threads", \.config.threads),
        .integer("jobs", \.config.jobs),
        .integer("mutators", \.config.mutators), .integer("seed", \.config.seed),
    ]

    /// The repetition and its counts.
    static let countColumns: [Column] = [
        .integer("rep", \.rep), .integer("ops", \.ops), .integer("pages_requested", \.pagesRequested),
        .integer("pages_migrated", \.pagesMigrated),
        .integer("pages_skipped", \.pagesSkipped), .integer("walks", \.walks),
        .integer("walk_restarts", \.walkRestarts),
        .integer("ptes_visited", \.ptesVisited), .integer("faults", \.faults), .integer("cow_breaks", \.cowBreaks),
        .integer("swapins", \.swapins),
        .integer("migration_entries", \.migrationEntries), .integer("tlb_flushes", \.tlbFlushes),
        .integer("lru_drains", \.lruDrains),
        .integer("invalidations", \.invalidations), .integer("notifier_retries", \.notifierRetries),
        .integer("cross_job_retries", \.crossJobRetries), .integer("folio_lock_fails", \.folioLockFails),
        .integer("thp_migrated", \.thpMigrated),
        .integer("thp_splits", \.thpSplits), .integer("device_alloc_fails", \.deviceAllocFails),
        .integer("bytes_copied", \.bytesCopied),
        .optionalInteger("verify_failures", \.verifyFailures), .integer("mutator_stores", \.mutatorStores),
        .integer("lost_stores", \.lostStores),
    ]

    /// The timed part, op latencies, phase means, rates and the floors measured at start.
    static let timeColumns: [Column] = [
        .integer("wall_ns", \.wallNs), .number("op_mean_ns", \.opMeanNs), .integer("op_p50_ns", \.opP50Ns),
        .integer("op_p90_ns", \.opP90Ns),
        .integer("op_p99_ns", \.opP99Ns), .integer("op_max_ns", \.opMaxNs), .optionalNumber("walk_ns", \.walkNs),
        .optionalNumber("fault_ns", \.faultNs),
        .optionalNumber("collect_ns", \.collectNs), .optionalNumber("alloc_ns", \.allocNs),
        .optionalNumber("copy_ns", \.copyNs), .optionalNumber("finalize_ns", \.finalizeNs),
        .optionalNumber("flush_ns", \.flushNs), .optionalNumber("copy_gbps", \.copyGBps),
        .number("throughput_gbps", \.throughputGBps),
        .number("wall_gbps", \.wallGBps), .number("memcpy_gbps", \.metadata.memcpyGBps),
        .number("kernel_walk_ns", \.metadata.kernelWalkNs),
    ]

    /// Columns added after the first files, in the order they were added: contention, devices, the
    /// threaded memcpy floor, notifier waits. A new column goes at the end of this list.
    static let addedColumns: [Column] = [
        .integer("mmap_lock_wait_ns", \.mmapLockWaitNs), .integer("ptl_wait_ns", \.ptlWaitNs),
        .integer("lru_lock_wait_ns", \.lruLockWaitNs),
        .integer("alloc_lock_wait_ns", \.allocLockWaitNs), .integer("devices", \.config.devices),
        .text("device_nodes") {
            $0.metadata.deviceNodes.isEmpty ? String($0.metadata.deviceNode) : $0.metadata.deviceNodes
        },
        .text("device_pages", \.config.devicePages.rawValue),
        .number("memcpy_threads_gbps", \.metadata.memcpyThreadsGBps),
        .integer("notifier_wait_ns", \.notifierWaitNs),
    ]
}
