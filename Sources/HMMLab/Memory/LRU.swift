import CLinux
import Glibc
import Synchronization

/// A test-and-test-and-set spinlock in memory allocated once, yielding the CPU after a few hundred
/// spins (the lab's threads can outnumber cores), as ``TableLock``.
struct SpinLock: ~Copyable {
    let word = Atomic<UInt32>(0)

    /// Takes the lock if it is free now.
    @inline(__always) func tryLock() -> Bool {
        word.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged
    }

    /// Takes the lock; returns whether it was held by another thread when first tried.
    @inline(__always) func lock() -> Bool {
        if word.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { return false }
        var spins = 0
        while true {
            if word.load(ordering: .relaxed) == 0,
                word.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged
            {
                return true
            }
            spins += 1
            if spins > 256 {
                sched_yield()
                spins = 0
            }
        }
    }

    @inline(__always) func unlock() { word.store(0, ordering: .releasing) }
}

/// One CPU's LRU add batch: its lock and how many pfns it holds; the pfns follow it.
struct LRUBatchHeader: ~Copyable {
    /// Stands for `cpu_fbatches.lock` (a `local_lock_t`).
    let lock = SpinLock()
    /// `folio_batch_count()`: written under the lock, read without it by `cpu_needs_drain`.
    let count = Atomic<Int>(0)
}

/// One pool's lruvec: its `lru_lock` and what taking it cost.
struct LRUVec: ~Copyable {
    let lock = SpinLock()
    /// Times the lock was taken.
    let acquisitions = Atomic<Int>(0)
    /// Times it was held by another thread when tried.
    let contended = Atomic<Int>(0)
}

/// The storage of the per-CPU LRU add batches (`cpu_fbatches.lru_add`, mm/swap.c) and of each pool's
/// lruvec lock, owned by ``PhysicalMemory``, whose LRU operations (``PhysicalMemory/folioAddLRU(_:)``,
/// ``PhysicalMemory/folioIsolateLRU(_:)``, ``PhysicalMemory/lruAddDrain()``,
/// ``PhysicalMemory/lruAddDrainAll()``) use it.
///
/// One batch per configured CPU, indexed by the CPU the caller runs on (`sched_getcpu`), each holding
/// up to ``batchSize`` folio pfns, in memory allocated once: 320 bytes per CPU, the header's cache line
/// and then the pfns. The kernel guards a batch with `cpu_fbatches.lock`, a `local_lock_t` (preemption
/// disabled, no atomic); a lab thread can move to another CPU mid-operation, so each batch has its own
/// spinlock instead, which costs an uncontended atomic where the kernel pays none.
///
/// The model keeps no LRU lists: being on an LRU is `PG_lru`, and an lruvec is only its lock, taken
/// where the kernel takes it. One lock per pool stands for the node's lruvec (no memory cgroups).
public final class LRUBatches: @unchecked Sendable {
    /// `FOLIO_BATCH_SIZE`.
    static let batchSize = 31
    /// Bytes per CPU: a 64-byte header, then 32 pfn words (31 used).
    static let batchBytes = 64 + 32 * 8
    /// CPUs, one batch each (`_SC_NPROCESSORS_CONF`).
    public let cpus: Int
    let batches: UnsafeMutableRawPointer
    /// System pool's lruvec, then the device pool's, a cache line each.
    let vecs: UnsafeMutableRawPointer

    /// `lru_add_drain()` calls.
    let drains = Atomic<Int>(0)
    /// `lru_add_drain_all()` calls.
    let drainAlls = Atomic<Int>(0)
    /// `folio_batch_move_lru()` calls, counted under the system lruvec's lock.
    let moves = Atomic<Int>(0)
    /// `lru_drain_gen`.
    let generation = Atomic<UInt64>(0)
    /// `__lru_add_drain_all`'s static mutex: one drain of every CPU at a time.
    let drainAllLock = LabMutex<Void>(())
    /// Time spent waiting for the lruvec locks, contended acquisitions only (`lru_lock_wait_ns`).
    let lockWait = LockWait.make()

    init(cpus: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_CONF))))) {
        self.cpus = cpus
        batches = .allocate(byteCount: cpus * Self.batchBytes, alignment: 64)
        for cpu in 0..<cpus {
            (batches + cpu * Self.batchBytes).bindMemory(to: LRUBatchHeader.self, capacity: 1).initialize(
                to: LRUBatchHeader())
        }
        vecs = .allocate(byteCount: 2 * 64, alignment: 64)
        for i in 0..<2 { (vecs + i * 64).bindMemory(to: LRUVec.self, capacity: 1).initialize(to: LRUVec()) }
    }

    deinit {
        for cpu in 0..<cpus { header(cpu).deinitialize(count: 1) }
        for i in 0..<2 { vec(i).deinitialize(count: 1) }
        batches.deallocate()
        vecs.deallocate()
        lockWait.free()
    }

    @inline(__always) func header(_ cpu: Int) -> UnsafeMutablePointer<LRUBatchHeader> {
        (batches + cpu * Self.batchBytes).assumingMemoryBound(to: LRUBatchHeader.self)
    }

    /// The pfn words of a batch.
    @inline(__always) func pfns(_ cpu: Int) -> UnsafeMutablePointer<UInt64> {
        (batches + cpu * Self.batchBytes + 64).assumingMemoryBound(to: UInt64.self)
    }

    /// Lruvec 0 (system pool) or 1 (device pool).
    @inline(__always) func vec(_ i: Int) -> UnsafeMutablePointer<LRUVec> {
        (vecs + i * 64).assumingMemoryBound(to: LRUVec.self)
    }

    /// `local_lock(&cpu_fbatches.lock)`: locks the batch of the CPU the caller runs on and returns its index.
    @inline(__always) func lockLocal() -> Int {
        let cpu = Int(clinux_current_cpu())
        let index = cpu < cpus ? cpu : cpu % cpus
        _ = header(index).pointee.lock.lock()
        return index
    }

    /// `spin_lock_irq(&lruvec->lru_lock)` of lruvec `i`, counting the acquisition and any contention.
    /// The counts are written under the lock, so a plain load and store do (no second atomic
    /// read-modify-write the kernel would not make). A contended acquisition is timed into ``lockWait``.
    @inline(__always) func lockVec(_ i: Int) {
        let v = vec(i)
        if !v.pointee.lock.tryLock() {
            let started = monotonicNanoseconds()
            _ = v.pointee.lock.lock()
            lockWait.add(since: started)
            Self.bump(v.pointee.contended)
        }
        Self.bump(v.pointee.acquisitions)
    }

    /// Adds one to a counter only the holder of a lock writes.
    @inline(__always) static func bump(_ counter: borrowing Atomic<Int>) {
        counter.store(counter.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }

    @inline(__always) func unlockVec(_ i: Int) { vec(i).pointee.lock.unlock() }

    /// Folios waiting in every batch now (read without the batches' locks).
    var pending: Int {
        (0..<cpus).reduce(0) { $0 + header($1).pointee.count.load(ordering: .relaxed) }
    }
}
