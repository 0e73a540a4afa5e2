import Glibc
import Synchronization

/// Why a range is being invalidated (`enum mmu_notifier_event`).
public enum MMUNotifyEvent: String, Sendable {
    /// `MMU_NOTIFY_UNMAP`: munmap.
    case unmap
    /// `MMU_NOTIFY_CLEAR`: entries cleared (zap, swap-out, COW).
    case clear
    /// `MMU_NOTIFY_PROTECTION_VMA`: mprotect.
    case protectionVMA
    /// `MMU_NOTIFY_PROTECTION_PAGE`.
    case protectionPage
    /// `MMU_NOTIFY_SOFT_DIRTY`.
    case softDirty
    /// `MMU_NOTIFY_RELEASE`: the mm is going away.
    case release
    /// `MMU_NOTIFY_MIGRATE`: migrate_vma collect or insert; `owner` says who migrates.
    case migrate
    /// `MMU_NOTIFY_EXCLUSIVE`: make_device_exclusive.
    case exclusive
}

/// `struct mmu_notifier_range`.
public struct MMUNotifierRange: Sendable {
    public var start: UInt64
    public var end: UInt64
    var event: MMUNotifyEvent
    /// `range->owner`: the `pgmap_owner` of a migration, 0 otherwise.
    var owner: UInt64
    /// The RFC's patch 1 ("mm: use current as mmu notifier's owner"): `__split_huge_pmd` raises its
    /// `MMU_NOTIFY_CLEAR` with `current` as the owner, the thread id here (0: none).
    var task: UInt64 = 0

    public init(start: UInt64, end: UInt64, event: MMUNotifyEvent, owner: UInt64 = 0) {
        self.start = start
        self.end = end
        self.event = event
        self.owner = owner
    }
}

/// A driver's `mmu_interval_notifier_ops`.
protocol MMUIntervalNotifierOps: AnyObject, Sendable {
    /// `invalidate()`: called between `invalidate_range_start` and `_end` for an overlapping range. The
    /// driver takes its update lock, calls ``MMUIntervalNotifier/setSequence(_:)`` with `currentSeq`,
    /// and tears down its mappings of the range (or skips an event it raised itself).
    func invalidate(_ notifier: MMUIntervalNotifier, range: MMUNotifierRange, currentSeq: UInt64) -> Bool
}

/// `struct mmu_interval_notifier`: a driver's subscription to invalidations of `[start, end)`.
public final class MMUIntervalNotifier: @unchecked Sendable {
    public let start: UInt64
    public let end: UInt64
    let ops: any MMUIntervalNotifierOps
    /// `invalidate_seq`.
    let invalidateSeq = Atomic<UInt64>(0)
    unowned let subscriptions: MMUNotifierSubscriptions

    init(start: UInt64, end: UInt64, ops: any MMUIntervalNotifierOps, subscriptions: MMUNotifierSubscriptions) {
        self.start = start
        self.end = end
        self.ops = ops
        self.subscriptions = subscriptions
    }

    /// `mmu_interval_read_begin()`: returns the sequence to check later; waits while an invalidation
    /// that already reached this notifier is still running.
    func readBegin() -> UInt64 {
        let seq = invalidateSeq.load(ordering: .acquiring)
        // The interval is being invalidated when its seq equals the mm's odd seq.
        guard seq & 1 == 1, subscriptions.invalidateSeq.load(ordering: .acquiring) == seq else { return seq }
        return readBeginWaiting(seq)
    }

    /// ``readBegin()`` while an invalidation runs (`wait_event(subscriptions->wq, ...)`): waits for it to
    /// end and counts the time in ``MMUNotifierSubscriptions/readWait`` (`notifier_wait_ns`).
    @inline(never)
    private func readBeginWaiting(_ seq: UInt64) -> UInt64 {
        let started = monotonicNanoseconds()
        var spins = 0
        while subscriptions.invalidateSeq.load(ordering: .acquiring) == seq {
            spins += 1
            if spins > 64 { sched_yield() }
        }
        subscriptions.readWait.add(since: started)
        return seq
    }

    /// `mmu_interval_read_retry()`: whether an invalidation happened since `readBegin` returned `seq`.
    func readRetry(_ seq: UInt64) -> Bool { invalidateSeq.load(ordering: .acquiring) != seq }

    /// `mmu_interval_check_retry()`: the same check without the driver lock, used inside hmm_range_fault.
    func checkRetry(_ seq: UInt64) -> Bool { readRetry(seq) }

    /// `mmu_interval_set_seq()`: called by the driver's invalidate callback, under its lock.
    func setSequence(_ seq: UInt64) { invalidateSeq.store(seq, ordering: .releasing) }
}

/// `struct mmu_notifier_subscriptions`: an mm's interval notifiers and its invalidation sequence.
///
/// The sequence is even when no invalidation runs and odd while one does
/// (`mn_itree_inv_start_range`, `mn_itree_inv_end`).
final class MMUNotifierSubscriptions: @unchecked Sendable {
    let invalidateSeq = Atomic<UInt64>(2)
    private let state = LabMutex<(active: Int, intervals: [MMUIntervalNotifier])>((0, []))
    /// Invalidations raised while the address space has had a subscription: the kernel's
    /// `mmu_notifier_invalidate_range_start()` calls `__mmu_notifier_invalidate_range_start()` only
    /// when `mm_has_notifiers()`, so `try_to_migrate_one()` in a forked child no driver mirrors
    /// raises none.
    let invalidations = Atomic<Int>(0)
    /// `mm->notifier_subscriptions` exists: set by the first insertion, kept until teardown.
    private let subscribed = Atomic<Bool>(false)
    /// Time drivers' `mmu_interval_read_begin` waited for an invalidation of their interval to end.
    let readWait = LockWait.make()

    public init() {}

    deinit { readWait.free() }

    /// `mmu_interval_notifier_insert()`.
    public func insert(start: UInt64, length: UInt64, ops: any MMUIntervalNotifierOps) -> MMUIntervalNotifier {
        let sub = MMUIntervalNotifier(start: start, end: start + length, ops: ops, subscriptions: self)
        state.withLock { s in
            let seq = invalidateSeq.load(ordering: .relaxed)
            // An insertion during an invalidation starts "invalidated", as the kernel does.
            sub.setSequence(seq & 1 == 1 ? seq - 1 : seq)
            s.intervals.append(sub)
        }
        subscribed.store(true, ordering: .relaxed)
        return sub
    }

    /// `mmu_interval_notifier_remove()`.
    func remove(_ sub: MMUIntervalNotifier) {
        state.withLock { s in s.intervals.removeAll { $0 === sub } }
    }

    /// `mmu_notifier_invalidate_range_start()`: marks an invalidation running and calls every overlapping
    /// interval's `invalidate`.
    func invalidateRangeStart(_ range: MMUNotifierRange) {
        if subscribed.load(ordering: .relaxed) { invalidations.wrappingAdd(1, ordering: .relaxed) }
        let (seq, targets): (UInt64, [MMUIntervalNotifier]) = state.withLock { s in
            s.active += 1
            let seq = invalidateSeq.load(ordering: .relaxed) | 1
            invalidateSeq.store(seq, ordering: .releasing)
            return (seq, s.intervals.filter { $0.start < range.end && range.start < $0.end })
        }
        for sub in targets { _ = sub.ops.invalidate(sub, range: range, currentSeq: seq) }
    }

    /// `mmu_notifier_invalidate_range_end()`.
    func invalidateRangeEnd(_ range: MMUNotifierRange) {
        state.withLock { s in
            s.active -= 1
            if s.active == 0 {
                invalidateSeq.store(invalidateSeq.load(ordering: .relaxed) + 1, ordering: .releasing)
            }
        }
    }
}
