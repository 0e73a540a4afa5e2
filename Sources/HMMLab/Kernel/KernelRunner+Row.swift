import Histogram

extension KernelRunner {
    /// The calls of `name` in a reading (nil when it is not traced here).
    static func calls(_ name: String, _ d: Reading) -> Int? {
        guard let i = KernelFunctions.traced.firstIndex(where: { $0.name == name }), i < d.calls.count, let n = d.calls[i] else { return nil }
        return Int(n)
    }

    /// A row whose lab columns with a kernel twin are the twin's calls (``KernelFunctions/traced``):
    /// `walks` = `hmm_range_fault` + `migrate_vma_setup`, `walk_restarts` = `walk_page_range` − `walks`,
    /// `faults` = `handle_mm_fault` (coming back, `dmirror_devmem_fault`), `cow_breaks` =
    /// `wp_page_copy`, `swapins` = `swap_read_folio`, `tlb_flushes` = `flush_tlb_mm_range`,
    /// `invalidations` = `__mmu_notifier_invalidate_range_start`, `thp_splits` = `__folio_split`.
    func makeRow(_ strategy: Strategy, _ direction: Direction, rep: Int, _ t: (histogram: Histogram<UInt64>, wall: UInt64, delta: Reading, ops: Int)) -> ResultRow {
        var row = ResultRow(metadata: metadata, timestamp: "", strategy: strategy.rawValue, direction: direction.rawValue, config: config, rep: rep)
        row.engine = "kernel"
        row.ops = t.ops
        row.pagesRequested = config.pages
        row.wallNs = t.wall
        row.opMeanNs = t.histogram.mean
        row.opP50Ns = t.histogram.valueAtPercentile(50)
        row.opP90Ns = t.histogram.valueAtPercentile(90)
        row.opP99Ns = t.histogram.valueAtPercentile(99)
        row.opMaxNs = t.histogram.max
        row.counters = counters.map { _ in t.delta.perf } ?? []
        row.kernelCalls = t.delta.calls.isEmpty ? KernelFunctions.traced.map { _ in nil } : t.delta.calls
        row.unmeasured = Self.unmeasuredColumns
        let d = t.delta
        let c = { (name: String) in Self.calls(name, d) }
        if let hrf = c("hmm_range_fault"), let setup = c("migrate_vma_setup"), let walks = c("walk_page_range"), let faults = c("handle_mm_fault"),
            let cow = c("wp_page_copy"), let swapins = c("swap_read_folio"), let tlb = c("flush_tlb_mm_range"),
            let inv = c("__mmu_notifier_invalidate_range_start"), let splits = c("__folio_split"), let devfaults = c("dmirror_devmem_fault")
        {
            row.walks = hrf + setup
            row.walkRestarts = max(0, walks - hrf - setup)
            row.faults = direction == .toDevice ? faults : devfaults
            row.cowBreaks = cow
            row.swapins = swapins
            row.tlbFlushes = tlb
            row.invalidations = inv
            row.thpSplits = splits
        } else {
            row.unmeasured.formUnion(Self.profiledColumns)
        }
        if direction == .roundTrip { row.unmeasured.formUnion(["walk_ns", "fault_ns", "collect_ns", "alloc_ns", "finalize_ns"]) }
        row.throughputGBps = t.wall > 0 ? Double(row.pagesMigrated * PageSize.bytes) / Double(t.wall) : 0
        return row
    }
}
