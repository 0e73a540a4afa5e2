import Glibc

/// Calls of kernel functions counted by ftrace's function profiler (`CONFIG_FUNCTION_PROFILER`:
/// `set_ftrace_filter`, `function_profile_enabled`, `trace_stat/function<cpu>`), summed over CPUs.
///
/// The profiler counts every call on every CPU, whoever makes it; in the VM lane the bench process is
/// the only one working, and its buffers are pre-faulted, so the calls in a timed part are the ops'.
/// Counts are read before and after a timed part and subtracted. The profiler is enabled once per
/// boot and never turned off: on 7.2.13, turning it off and on again with `flush_tlb_mm_range` in the
/// filter oopses (a NULL call from `flush_tlb_mm_range+0x4` while `ftrace_profile_write` patches
/// text: `__text_poke` itself flushes the TLB through the function being patched). A later process
/// that finds it on with the same filter only reads it.
public final class KernelFunctions {
    /// The functions traced, each with the lab counter it is the kernel's twin of (README, "The kernel
    /// engine"). Static functions that the compiler inlines cannot be traced; those found missing in
    /// `available_filter_functions` are reported and their columns left empty.
    static let traced: [(name: String, twin: String)] = [
        ("hmm_range_fault", "walks (the hmm_range_fault part)"),
        ("migrate_vma_setup", "walks (the migrate_vma_setup part; coming back, one per migrate_to_ram)"),
        ("walk_page_range", "walks + walk_restarts"),
        ("handle_mm_fault", "faults (to the device)"),
        ("do_swap_page", "swap-in faults, and CPU faults on device pages (faults coming back)"),
        ("swap_read_folio", "swapins"),
        ("do_wp_page", "cow_breaks (write faults on read-only present pages; wp_page_copy is inlined into it)"),
        ("migrate_vma_pages", "calls of migrate_vma_pages (ops that migrated)"),
        ("migrate_vma_finalize", "calls of migrate_vma_finalize"),
        ("try_to_migrate", "folios unmapped through the rmap (the lab's migration_entries counts entries)"),
        ("remove_migration_ptes", "folios whose migration entries were restored"),
        (
            "folio_isolate_lru",
            "folios isolated from the LRU (modelled with the lru cost; the lab counts lruvec lock acquisitions, not calls)"
        ),
        (
            "lru_add_drain_cpu",
            "LRU add batch drains of one CPU: lru_add_drain, and each CPU lru_add_drain_all drains (modelled with the lru cost, not a CSV column)"
        ),
        (
            "lru_add_drain_all",
            "lru_drains (LRU add batch drains of every CPU; one per migrate_device_unmap that finds a folio off the LRU)"
        ),
        ("flush_tlb_mm_range", "tlb_flushes"),
        ("__mmu_notifier_invalidate_range_start", "invalidations"),
        ("__split_huge_pmd", "PMD mappings split"),
        ("split_huge_pmd_address", "PMD mappings split by address (the unmapped split freezes with it)"),
        ("__folio_split", "thp_splits through split_folio (before collect, or on the way back)"),
        ("folio_split_unmapped", "thp_splits of isolated folios (migrate_vma_split_unmapped_folio)"),
        ("migrate_vma_split_folio", "THPs split during collect (not SELECT_COMPOUND, or PTE-mapped)"),
    ]

    static let tracing = "/sys/kernel/tracing"
    /// The functions that could be traced (in ``traced`` order), nil where not.
    public let available: [Bool]
    /// One line per function that cannot be traced here.
    public let missing: [String]

    /// Why the profiler cannot be used.
    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    /// Sets the filter to the traced functions that exist and enables the profiler.
    public init() throws(Unavailable) {
        let base = Self.tracing
        guard access("\(base)/function_profile_enabled", W_OK) == 0 else {
            throw Unavailable(
                description:
                    "\(base)/function_profile_enabled is not there (a kernel without CONFIG_FUNCTION_PROFILER, tracefs not mounted, or not root)"
            )
        }
        let listed = Set(
            (Sysfs.read("\(base)/available_filter_functions") ?? "").split(separator: "\n").map { line in
                String(line.split(separator: " ").first ?? "")
            })
        let filter = Set((Sysfs.read("\(base)/set_ftrace_filter") ?? "").split(separator: "\n").map(String.init))
        if Sysfs.readLine("\(base)/function_profile_enabled") == "1", !filter.isEmpty,
            filter == Set(Self.traced.map(\.name).filter { listed.contains($0) })
        {
            available = Self.traced.map { filter.contains($0.name) }
            missing = Self.traced.map(\.name).filter { !filter.contains($0) }
            return
        }
        _ = Self.write("\(base)/set_ftrace_filter", "", append: false)
        var available: [Bool] = []
        var missing: [String] = []
        for f in Self.traced {
            let ok = listed.contains(f.name) && Self.write("\(base)/set_ftrace_filter", f.name + "\n", append: true)
            available.append(ok)
            if !ok { missing.append(f.name) }
        }
        self.available = available
        self.missing = missing
        guard Self.write("\(base)/function_profile_enabled", "1\n", append: false) else {
            throw Unavailable(
                description: "enabling \(base)/function_profile_enabled failed (\(SystemError.name(of: errno)))")
        }
    }

    /// The calls so far of each traced function, summed over CPUs (nil where not traceable).
    public func read() -> [UInt64?] {
        var sums = [UInt64](repeating: 0, count: Self.traced.count)
        // trace_stat prints names cut to 30 characters (function_stat_show: "%-30.30s").
        var index: [Substring: Int] = [:]
        for (i, f) in Self.traced.enumerated() { index[f.name.prefix(30)] = i }
        for cpu in 0..<Int(sysconf(Int32(_SC_NPROCESSORS_CONF))) {
            guard let text = Sysfs.read("\(Self.tracing)/trace_stat/function\(cpu)") else { continue }
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: " ", omittingEmptySubsequences: true)
                guard parts.count >= 2, let i = index[parts[0]], let hits = UInt64(parts[1]) else { continue }
                sums[i] += hits
            }
        }
        return zip(sums, available).map { $1 ? $0 : nil }
    }

    static func write(_ path: String, _ text: String, append: Bool) -> Bool {
        let fd = open(path, O_WRONLY | (append ? O_APPEND : O_TRUNC))
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return text.withCString { Glibc.write(fd, $0, strlen($0)) } == text.utf8.count
    }
}
