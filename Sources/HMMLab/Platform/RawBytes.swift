import CLinux
import Glibc

/// `memcpy`, `memset` and `memcmp` on frames and buffers, as the model's page copies, clears and
/// checks do them, visible to the thread sanitizer.
///
/// The sanitizer checks instrumented loads and stores, but with Swift 6.3 on Linux it does not check
/// what `memcpy`, `memset` and `memcmp` called from Swift touch (a race through them goes unreported
/// where the same race through plain stores is reported). Built with `HMM_LAB_TSAN` (see
/// ``LabMutex``), each function here also reports the bytes it reads and writes with
/// `__tsan_read_range` / `__tsan_write_range`, so races on page contents (a CPU store against a
/// migration copy, a table cleared while a walker reads it) are found. In other builds they are the
/// plain C calls.
enum RawBytes {
    /// `memcpy(destination, source, count)`.
    @inline(__always) static func copy(
        to destination: UnsafeMutableRawPointer, from source: UnsafeRawPointer, count: Int
    ) {
        #if HMM_LAB_TSAN
            __tsan_read_range(UnsafeMutableRawPointer(mutating: source), UInt(count))
            __tsan_write_range(destination, UInt(count))
        #endif
        memcpy(destination, source, count)
    }

    /// `memset(destination, 0, count)`.
    @inline(__always) static func zero(_ destination: UnsafeMutableRawPointer, count: Int) {
        #if HMM_LAB_TSAN
            __tsan_write_range(destination, UInt(count))
        #endif
        memset(destination, 0, count)
    }

    /// `memcmp(a, b, count) == 0`.
    @inline(__always) static func equal(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, count: Int) -> Bool {
        #if HMM_LAB_TSAN
            __tsan_read_range(UnsafeMutableRawPointer(mutating: a), UInt(count))
            __tsan_read_range(UnsafeMutableRawPointer(mutating: b), UInt(count))
        #endif
        return memcmp(a, b, count) == 0
    }
}
