import Histogram

extension KernelRunner {
    /// The calls of `name` in a reading (nil when it is not traced here).
    static func calls(_ name: String, _ d: Reading) -> Int? {
        guard let i = KernelFunctions.traced.firstIndex(where: { $0.name == name }), i < d.calls.count,
            let n = d.calls[i]
        else { return nil }
        return Int(n)
    }

    /// A row whose lab columns with a kernel twin are the twin's calls (``KernelFunctions/traced``):
    /// `walks` = `hmm_range_fault` + `migrate_vma_setup`, `walk_restarts` = `walk_page_range` − `walks`,
    /// `faults` = `handle_mm_fault` (coming back, `do_swap_page`: each CPU fault on a device page),
    /// `cow_breaks` = `do_wp_page`, `swapins` = `swap_read_folio`, `tlb_flushes` =
    /// `flush_tlb_mm_range`, `lru_drains` = `lru_add_drain_all`, `invalidations` = `__mmu_notifier_invalidate_range_start`, `thp_splits` =
    /// `__folio_split` + `folio_split_unmapped`. A column whose twin cannot be traced is left empty.
    func makeRow(
        _ strategy: Strategy, _ direction: Direction, rep: Int, pagesMigrated: Int, pagesSkipped: Int,
        _ t: (histogram: Histogram<UInt64>, wall: UInt64, delta: Reading, ops: Int)
    ) -> ResultRow {
        var row = ResultRow(
            metadata: metadata, timestamp: "", strategy: strategy.rawValue, direction: direction.rowLabel,
            config: config, rep: rep)
        row.engine = "kernel"
        row.ops = t.ops
        row.pagesRequested = config.pages
        row.pagesMigrated = pagesMigrated
        row.pagesSkipped = pagesSkipped
        row.wallNs = t.wall
        row.opMeanNs = t.histogram.mean
        row.opP50Ns = t.histogram.valueAtPercentile(50)
        row.opP90Ns = t.histogram.valueAtPercentile(90)
        row.opP99Ns = t.histogram.valueAtPercentile(99)
        row.opMaxNs = t.histogram.max
        row.setRates(bytesMigrated: pagesMigrated * PageSize.bytes, wall: t.wall)
        row.counters = counters.map { _ in t.delta.perf } ?? []
        row.kernelCalls = t.delta.calls.isEmpty ? KernelFunctions.traced.map { _ in nil } : t.delta.calls
        row.unmeasured = Self.unmeasuredColumns
        let c = { (name: String) in Self.calls(name, t.delta) }
        func set(_ column: String, _ value: Int?, _ assign: (inout ResultRow, Int) -> Void) {
            if let value { assign(&row, value) } else { row.unmeasured.insert(column) }
        }
        let walks = c("hmm_range_fault").flatMap { h in c("migrate_vma_setup").map { h + $0 } }
        set("walks", walks) { $0.walks = $1 }
        set("walk_restarts", walks.flatMap { w in c("walk_page_range").map { max(0, $0 - w) } }) {
            $0.walkRestarts = $1
        }
        set("faults", direction == .toDevice ? c("handle_mm_fault") : c("do_swap_page")) { $0.faults = $1 }
        set("cow_breaks", c("do_wp_page")) { $0.cowBreaks = $1 }
        set("swapins", c("swap_read_folio")) { $0.swapins = $1 }
        set("tlb_flushes", c("flush_tlb_mm_range")) { $0.tlbFlushes = $1 }
        set("lru_drains", c("lru_add_drain_all")) { $0.lruDrains = $1 }
        set("invalidations", c("__mmu_notifier_invalidate_range_start")) { $0.invalidations = $1 }
        set("thp_splits", c("__folio_split").flatMap { a in c("folio_split_unmapped").map { a + $0 } }) {
            $0.thpSplits = $1
        }
        return row
    }
}
