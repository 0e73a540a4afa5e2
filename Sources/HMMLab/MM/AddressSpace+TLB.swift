extension AddressSpace {
    /// `n` TLB flushes of this mm (`flush_tlb_range`, `flush_tlb_page`, `ptep_clear_flush`,
    /// `pmdp_invalidate`, `try_to_unmap_flush`): counted, and with the `flush` cost each one a real host
    /// shootdown (``TLBShootdown``) made where the kernel makes it, under the same locks. Time spent is
    /// added to ``MMCounters/flushNanoseconds``.
    @inline(__always)
    func flushTLB(_ n: Int = 1) {
        counters.tlbFlushes.wrappingAdd(n, ordering: .relaxed)
        guard let shootdown else { return }
        let t0 = monotonicNanoseconds()
        for _ in 0..<n { shootdown.shootdown() }
        counters.flushNanoseconds.wrappingAdd(monotonicNanoseconds() &- t0, ordering: .relaxed)
    }
}
