import Glibc

/// A reader/writer lock: the lab's `mmap_lock` (`mmap_read_lock`, `mmap_write_lock`).
///
/// A `pthread_rwlock_t` at a stable heap address. The kernel's rwsem queues writers fairly; glibc's
/// default prefers readers, which only matters for writer latency under heavy fault load.
///
/// Each acquisition tries first (`pthread_rwlock_tryrdlock`/`trywrlock`, as `down_read_trylock`);
/// only when that fails is the wait timed into ``wait`` (`mmap_lock_wait_ns`, both modes), so an
/// uncontended lock reads no clock.
final class ReadWriteLock: @unchecked Sendable {
    private let rwlock: UnsafeMutablePointer<pthread_rwlock_t>
    /// Time spent waiting for the lock in either mode, contended acquisitions only.
    let wait = LockWait.make()

    public init() {
        rwlock = .allocate(capacity: 1)
        rwlock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(rwlock, nil)
    }

    deinit {
        pthread_rwlock_destroy(rwlock)
        rwlock.deallocate()
        wait.free()
    }

    @inlinable func readLock() { lockRead() }
    @inlinable func writeLock() { lockWrite() }

    @usableFromInline func lockRead() {
        guard pthread_rwlock_tryrdlock(rwlock) != 0 else { return }
        let started = monotonicNanoseconds()
        pthread_rwlock_rdlock(rwlock)
        wait.add(since: started)
    }

    @usableFromInline func lockWrite() {
        guard pthread_rwlock_trywrlock(rwlock) != 0 else { return }
        let started = monotonicNanoseconds()
        pthread_rwlock_wrlock(rwlock)
        wait.add(since: started)
    }
    public func unlock() { pthread_rwlock_unlock(rwlock) }

    /// `mmap_read_lock` … `mmap_read_unlock`.
    @inlinable func withReadLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lockRead()
        defer { unlock() }
        return try body()
    }

    /// `mmap_write_lock` … `mmap_write_unlock`.
    @inlinable func withWriteLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lockWrite()
        defer { unlock() }
        return try body()
    }
}
