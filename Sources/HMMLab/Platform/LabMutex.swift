import Synchronization

/// The lock the model uses for shared state other than page descriptors and page-table entries (the
/// frame allocator's `zone->lock`, the swap map, the device page table, the notifier list, scratch
/// lists, injection generators).
///
/// In a normal build it is the standard library's `Synchronization.Mutex`. Built for the thread
/// sanitizer (`HMM_LAB_TSAN=1` in the environment of `swift build`/`swift test`, which Package.swift
/// turns into the `HMM_LAB_TSAN` compilation condition; `scripts/tsan` sets it) it is ``PosixMutex``,
/// a `pthread_mutex_t` the sanitizer intercepts. `Mutex` takes a contended lock in the standard
/// library's uninstrumented code (a PI futex), so the sanitizer cannot see the ordering it gives and
/// reports contended critical sections as races; ``PosixMutex`` costs about 4–5 ns more per
/// lock and unlock on the frame allocator's path (`bench calibrate --only allocation`: 1.5× per
/// order-0 frame), which is why normal builds keep `Mutex`. Both have the same interface
/// (`init(_:)`, `withLock(_:)`), and the code that uses the lock is the same in both builds.
#if HMM_LAB_TSAN
    typealias LabMutex<Value: ~Copyable> = PosixMutex<Value>
#else
    typealias LabMutex<Value: ~Copyable> = Mutex<Value>
#endif
