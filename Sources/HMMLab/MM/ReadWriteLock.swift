import Glibc

/// A reader/writer lock: the lab's `mmap_lock` (`mmap_read_lock`, `mmap_write_lock`).
///
/// A `pthread_rwlock_t` at a stable heap address. The kernel's rwsem queues writers fairly; glibc's
/// default prefers readers, which only matters for writer latency under heavy fault load.
public final class ReadWriteLock: @unchecked Sendable {
    private let rwlock: UnsafeMutablePointer<pthread_rwlock_t>

    public init() {
        rwlock = .allocate(capacity: 1)
        rwlock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(rwlock, nil)
    }

    deinit {
        pthread_rwlock_destroy(rwlock)
        rwlock.deallocate()
    }

    @inlinable public func readLock() { lockRead() }
    @inlinable public func writeLock() { lockWrite() }

    @usableFromInline func lockRead() { pthread_rwlock_rdlock(rwlock) }
    @usableFromInline func lockWrite() { pthread_rwlock_wrlock(rwlock) }
    public func unlock() { pthread_rwlock_unlock(rwlock) }

    /// `mmap_read_lock` … `mmap_read_unlock`.
    @inlinable public func withReadLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lockRead()
        defer { unlock() }
        return try body()
    }

    /// `mmap_write_lock` … `mmap_write_unlock`.
    @inlinable public func withWriteLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lockWrite()
        defer { unlock() }
        return try body()
    }
}
