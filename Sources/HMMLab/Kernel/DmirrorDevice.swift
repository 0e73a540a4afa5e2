import CLinux
import Glibc

/// One device file of the kernel's HMM test driver, `/dev/hmm_dmirrorN` (lib/test_hmm.c), and its
/// ioctls (lib/test_hmm_uapi.h). Opening the file binds the device's mirror to this process's mm
/// (`dmirror_fops_open` → `mmu_interval_notifier_insert`).
///
/// What each ioctl does in the kernel, as `--engine kernel` uses it:
/// - ``read(_:pages:into:)``, `HMM_DMIRROR_READ` → `dmirror_read`: copies the device's mirror of the
///   range; where a page is not mirrored (`-ENOENT`), `dmirror_fault` from that page to the end, in
///   `hmm_range_fault` calls of 32 pages (`HMM_PFN_REQ_FAULT`, no `REQ_WRITE`), then reads again.
/// - ``migrateToDevice(_:pages:into:)``, `HMM_DMIRROR_MIGRATE_TO_DEV` → `dmirror_migrate_to_device`:
///   per 512 pages `migrate_vma_setup(SELECT_SYSTEM|SELECT_COMPOUND)`, alloc and copy,
///   `migrate_vma_pages`, map on the device, `migrate_vma_finalize`; then reads the mirror of the whole
///   range back, which fails with `-ENOENT` when a page did not move.
/// - ``setFailAllocation()``, `HMM_DMIRROR_FLAGS(HMM_DMIRROR_FLAG_FAIL_ALLOC)`: the next 2 MiB device
///   allocation fails (the flag is cleared by that failure), so the folio is split.
public final class DmirrorDevice {
    public let path: String
    let fd: Int32
    /// The bounce target of READ and MIGRATE_TO_DEV: one window's bytes, pre-faulted.
    private let buffer: UnsafeMutableRawPointer
    private let bufferBytes: Int

    /// What one ioctl reported: `cpages` (pages read or mirrored) and `faults` (`dmirror_fault` calls).
    public struct Reply: Sendable {
        public var errno: Int32
        var cpages: Int
        public var faults: Int
    }

    /// Opens `/dev/hmm_dmirror<index>` with a pre-faulted bounce buffer for windows of up to `maxPages`.
    public init(index: Int, maxPages: Int) throws(SystemError) {
        path = "/dev/hmm_dmirror\(index)"
        fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.last("open", path) }
        bufferBytes = maxPages * PageSize.bytes
        guard let p = mmap(nil, bufferBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0),
            p != MAP_FAILED
        else {
            let e = SystemError.last("mmap", "bounce buffer of \(maxPages) pages")
            close(fd)
            throw e
        }
        buffer = p
        memset(buffer, 1, bufferBytes)
    }

    deinit {
        munmap(buffer, bufferBytes)
        close(fd)
    }

    /// Whether this kernel has the test driver's device files.
    public static var present: Bool { access("/dev/hmm_dmirror0", F_OK) == 0 }

    public func read(_ start: UInt64, pages: Int) -> Reply { command(CLINUX_DMIRROR_READ, start, pages) }

    func migrateToDevice(_ start: UInt64, pages: Int) -> Reply { command(CLINUX_DMIRROR_MIGRATE_TO_DEV, start, pages) }

    func migrateToSystem(_ start: UInt64, pages: Int) -> Reply { command(CLINUX_DMIRROR_MIGRATE_TO_SYS, start, pages) }

    /// Makes the device's next 2 MiB allocation fail (`HMM_DMIRROR_FLAG_FAIL_ALLOC`).
    func setFailAllocation() -> Int32 {
        var cmd = clinux_dmirror_cmd(addr: 0, ptr: 0, npages: 1, cpages: 0, faults: 0)
        return -clinux_dmirror_ioctl(fd, CLINUX_DMIRROR_FLAGS.rawValue, &cmd)
    }

    /// Whether page `i` of the last READ's bounce buffer holds header `(a, b)` in its first 16 bytes and
    /// zeros in the rest.
    func bounce(page i: Int, holds header: (UInt64, UInt64)) -> Bool {
        let base = buffer + i * PageSize.bytes
        guard base.load(as: UInt64.self) == header.0, base.load(fromByteOffset: 8, as: UInt64.self) == header.1 else {
            return false
        }
        var rest: UInt64 = 0
        for j in 2..<(PageSize.bytes / 8) { rest |= base.load(fromByteOffset: j * 8, as: UInt64.self) }
        return rest == 0
    }

    /// One ioctl on `[start, start + pages)` with the bounce buffer as `ptr`; errno 0 on success.
    func command(_ op: clinux_dmirror_op, _ start: UInt64, _ pages: Int) -> Reply {
        precondition(pages * PageSize.bytes <= bufferBytes, "window larger than the bounce buffer")
        var cmd = clinux_dmirror_cmd(
            addr: start, ptr: UInt64(UInt(bitPattern: buffer)), npages: UInt64(pages), cpages: 0, faults: 0)
        let r = clinux_dmirror_ioctl(fd, op.rawValue, &cmd)
        return Reply(errno: -r, cpages: Int(cmd.cpages), faults: Int(cmd.faults))
    }
}
