import Synchronization

/// Nanoseconds threads spent waiting for one kind of lock, counted only when the uncontended fast
/// path failed: a lock taken at the first try reads no clock and touches no counter, so a single op
/// thread pays nothing for it. Lives at a stable address allocated once (``make()``), so hot-path
/// lock structs hold a plain pointer: no reference counting per acquisition.
///
/// Models nothing in the kernel by itself; it is what `lock_stat` (`CONFIG_LOCK_STAT`'s
/// `waittime-total`) reports per lock class, kept per lock kind here.
struct LockWait: @unchecked Sendable {
    @usableFromInline let counter: UnsafeMutablePointer<Atomic<Int>>

    private init(_ counter: UnsafeMutablePointer<Atomic<Int>>) { self.counter = counter }

    /// A counter at 0; free it with ``free()``.
    public static func make() -> LockWait {
        let p = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: 1)
        p.initialize(to: Atomic<Int>(0))
        return LockWait(p)
    }

    public func free() {
        counter.deinitialize(count: 1)
        counter.deallocate()
    }

    /// Total nanoseconds waited so far.
    var nanoseconds: Int { counter.pointee.load(ordering: .relaxed) }

    /// Adds the time since `started` (a ``monotonicNanoseconds()`` reading).
    @usableFromInline func add(since started: UInt64) {
        counter.pointee.wrappingAdd(Int(monotonicNanoseconds() &- started), ordering: .relaxed)
    }
}
