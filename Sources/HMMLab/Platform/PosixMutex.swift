import Glibc

/// A mutual-exclusion lock over a `pthread_mutex_t`, guarding a value: ``LabMutex`` in builds for the
/// thread sanitizer.
///
/// It has the interface of the standard library's `Synchronization.Mutex` (`init(_:)`,
/// `withLock(_:)`), which it replaces there for one reason: on Linux, `Mutex` takes its lock in the
/// standard library's uninstrumented code when it is contended (`_lockSlow`: spinning, then a PI
/// futex, `FUTEX_LOCK_PI`), and releases it there when a waiter is queued, so the thread sanitizer
/// does not see the ordering the lock gives and reports contended critical sections as data races.
/// `pthread_mutex_lock` and `pthread_mutex_unlock` are intercepted by the sanitizer, so their
/// happens-before edges are seen and only real races are reported.
///
/// The mutex and the value live in one heap block allocated at `init` (a `pthread_mutex_t` must not
/// move), so taking the lock allocates nothing. The mutex is glibc's default kind: not recursive
/// (taking it twice on one thread deadlocks, where `Mutex` traps), no priority inheritance.
struct PosixMutex<Value: ~Copyable>: ~Copyable {
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @usableFromInline let value: UnsafeMutablePointer<Value>

    /// A lock guarding `initialValue`.
    public init(_ initialValue: consuming sending Value) {
        let stride =
            (MemoryLayout<pthread_mutex_t>.stride + MemoryLayout<Value>.alignment - 1)
            & ~(MemoryLayout<Value>.alignment - 1)
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: stride + MemoryLayout<Value>.size,
            alignment: max(MemoryLayout<pthread_mutex_t>.alignment, MemoryLayout<Value>.alignment))
        mutex = raw.bindMemory(to: pthread_mutex_t.self, capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        value = (raw + stride).bindMemory(to: Value.self, capacity: 1)
        value.initialize(to: initialValue)
    }

    deinit {
        value.deinitialize(count: 1)
        pthread_mutex_destroy(mutex)
        UnsafeMutableRawPointer(mutex).deallocate()
    }

    /// Runs `body` with exclusive access to the value: `pthread_mutex_lock` … `pthread_mutex_unlock`.
    @inlinable
    public borrowing func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}

extension PosixMutex: @unchecked Sendable where Value: ~Copyable {}

extension PosixMutex where Value: ~Copyable {
    /// Runs `body` if the lock can be had at once (`pthread_mutex_trylock`); nil when it is held.
    @inlinable
    borrowing func withLockIfAvailable<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}
