/// The LRU as mm/swap.c and mm/vmscan.c reach it: per-CPU add batches, isolation, putback and the
/// drains, paid for real with the `lru` cost (``Costs/lru``).
///
/// Without the cost there are no batches: a folio added to the LRU gets `PG_lru` at once and no lock
/// is taken, so the drains have nothing to do (their calls are still counted, as the kernel still
/// makes them).
extension PhysicalMemory {
    /// Whether the `lru` cost is paid.
    @inline(__always) var paysLRU: Bool { costs.contains(.lru) }

    /// `folio_add_lru()` / `folio_add_lru_vma()` → `__folio_batch_add_and_move(lru_add)`: takes a
    /// reference for the batch (`folio_get`), appends the folio to the batch of the CPU the caller runs
    /// on, and moves the whole batch to the LRU when it is full or the folio is large
    /// (`!folio_may_be_lru_cached()`). The folio is not `PG_lru` until its batch is moved.
    /// Device (`ZONE_DEVICE`) folios are never on an LRU; callers skip them.
    @inline(__always)
    func folioAddLRU(_ folio: Folio) {
        let head = folioRef(folio)
        guard paysLRU else {
            head.set(.lru)
            return
        }
        head.get()
        let cpu = lru.lockLocal()
        let h = lru.header(cpu)
        let n = h.pointee.count.load(ordering: .relaxed)
        lru.pfns(cpu)[n] = folio.pfn.rawValue
        h.pointee.count.store(n + 1, ordering: .relaxed)
        if n + 1 == LRUBatches.batchSize || folio.order > 0 { folioBatchMoveLRU(cpu) }
        h.pointee.lock.unlock()
    }

    /// `folio_putback_lru()` (mm/vmscan.c): back through the add batch, then the isolation's reference dropped.
    func folioPutbackLRU(_ folio: Folio) {
        folioAddLRU(folio)
        put(folio)
    }

    /// `folio_isolate_lru()` (mm/vmscan.c): `folio_test_clear_lru`, then a reference and, with the cost,
    /// the folio taken off its list under the lruvec lock. False when the folio was not on an LRU (in
    /// a batch, or isolated by someone else). The caller holds a reference.
    @inline(__always)
    func folioIsolateLRU(_ folio: Folio) -> Bool {
        let head = folioRef(folio)
        guard head.testAndClear(.lru) else { return false }
        head.get()
        if paysLRU {
            let v = lruVecIndex(folio.pfn)
            lru.lockVec(v)  // lruvec_del_folio
            lru.unlockVec(v)
        }
        return true
    }

    /// `lru_add_drain()`: moves the batch of the CPU the caller runs on to the LRU, under its lock.
    func lruAddDrain() {
        lru.drains.wrappingAdd(1, ordering: .relaxed)
        guard paysLRU else { return }
        let cpu = lru.lockLocal()
        if lru.header(cpu).pointee.count.load(ordering: .relaxed) > 0 { folioBatchMoveLRU(cpu) }  // lru_add_drain_cpu
        lru.header(cpu).pointee.lock.unlock()
    }

    /// `lru_add_drain_all()` → `__lru_add_drain_all(false)`: under one global mutex, and unless another
    /// drain of every CPU started since this call began (`lru_drain_gen`), moves every non-empty batch
    /// to the LRU.
    ///
    /// Departure from the kernel: the kernel queues `lru_add_drain_per_cpu` work on each CPU with a
    /// non-empty batch (`cpu_needs_drain`) and waits for it (`flush_work`); the lab drains each batch
    /// from the calling thread under that batch's lock, so the scheduling and wake-up cost of the work
    /// items is not paid.
    func lruAddDrainAll() {
        lru.drainAlls.wrappingAdd(1, ordering: .relaxed)
        guard paysLRU else { return }
        let generation = lru.generation.load(ordering: .acquiring)
        lru.drainAllLock.withLock { _ in
            guard generation == lru.generation.load(ordering: .relaxed) else { return }
            lru.generation.wrappingAdd(1, ordering: .releasing)
            drainEveryBatch()
        }
    }

    /// Moves every CPU's batch to the LRU, so no folio holds a batch's reference: for checks and
    /// teardown at quiescent points (invariants, leak checks). Not a kernel call and not counted.
    func drainLRUBatches() {
        guard paysLRU else { return }
        lru.drainAllLock.withLock { _ in drainEveryBatch() }
    }

    /// `lru_add_drain_cpu()` of every CPU whose batch is not empty.
    private func drainEveryBatch() {
        for cpu in 0..<lru.cpus where lru.header(cpu).pointee.count.load(ordering: .relaxed) > 0 {
            let h = lru.header(cpu)
            _ = h.pointee.lock.lock()
            if h.pointee.count.load(ordering: .relaxed) > 0 { folioBatchMoveLRU(cpu) }
            h.pointee.lock.unlock()
        }
    }

    /// `folio_batch_move_lru(fbatch, lru_add)`, under the batch's lock: one lruvec lock for the batch
    /// (`folio_lruvec_relock_irqsave` relocks only when the lruvec changes), `PG_lru` set on each folio,
    /// then `folios_put()`: the batch's references dropped, and folios whose last reference that was
    /// are freed, taken off the LRU again under the lock (`__page_cache_release`).
    func folioBatchMoveLRU(_ cpu: Int) {
        let h = lru.header(cpu)
        let pfns = lru.pfns(cpu)
        let n = h.pointee.count.load(ordering: .relaxed)
        lru.lockVec(0)  // batches hold system folios only
        LRUBatches.bump(lru.moves)
        for i in 0..<n { FolioRef(head: page(Pfn(rawValue: pfns[i]))).set(.lru) }
        lru.unlockVec(0)
        var freed = 0
        for i in 0..<n where FolioRef(head: page(Pfn(rawValue: pfns[i]))).putTestZero() {
            pfns[freed] = pfns[i]
            freed += 1
        }
        h.pointee.count.store(0, ordering: .relaxed)
        guard freed > 0 else { return }
        lru.lockVec(0)
        for i in 0..<freed { FolioRef(head: page(Pfn(rawValue: pfns[i]))).clear(.lru) }
        lru.unlockVec(0)
        for i in 0..<freed {
            let pfn = Pfn(rawValue: pfns[i])
            release(Folio(pfn: pfn, order: FolioRef(head: page(pfn)).order))
        }
    }

    /// `__page_cache_release()` for a folio being freed with `PG_lru` set: taken off its LRU under the
    /// lruvec lock. Without the cost only the flag is cleared (with the rest, by the free).
    @inline(__always)
    func pageCacheRelease(_ folio: Folio) {
        guard paysLRU, folioRef(folio).test(.lru) else { return }
        let v = lruVecIndex(folio.pfn)
        lru.lockVec(v)
        folioRef(folio).clear(.lru)
        lru.unlockVec(v)
    }

    /// `folio_lruvec_lock()` … `unlock_page_lruvec()` of a system folio around `body`, with the cost;
    /// `body` alone without it or for a device folio.
    func withLRUVecLock<R>(of pfn: Pfn, _ body: () -> R) -> R {
        guard paysLRU, !FolioRef(head: page(pfn)).test(.zoneDevice) else { return body() }
        let v = lruVecIndex(pfn)
        lru.lockVec(v)
        defer { lru.unlockVec(v) }
        return body()
    }

    @inline(__always) func lruVecIndex(_ pfn: Pfn) -> Int { system.contains(pfn) ? 0 : 1 }

    // MARK: - Counters

    /// `lru_add_drain()` calls so far.
    var lruDrains: Int { lru.drains.load(ordering: .relaxed) }
    /// `lru_add_drain_all()` calls so far.
    var lruDrainAlls: Int { lru.drainAlls.load(ordering: .relaxed) }
    /// Batches moved to the LRU so far (`folio_batch_move_lru`).
    var lruBatchMoves: Int { lru.moves.load(ordering: .relaxed) }
    /// Times an lruvec lock was taken, and of those, times another thread held it.
    var lruLockAcquisitions: (taken: Int, contended: Int) {
        (0..<2).reduce((0, 0)) {
            (
                $0.0 + lru.vec($1).pointee.acquisitions.load(ordering: .relaxed),
                $0.1 + lru.vec($1).pointee.contended.load(ordering: .relaxed)
            )
        }
    }
    /// Folios in the batches now, holding a batch's reference.
    var lruPending: Int { lru.pending }
}
