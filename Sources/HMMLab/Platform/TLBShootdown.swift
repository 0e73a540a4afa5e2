import CLinux
import Glibc

/// A real host TLB shootdown: what one modelled TLB flush (`flush_tlb_range`, `ptep_clear_flush`,
/// `flush_tlb_page`, the batched `try_to_unmap_flush`) costs the lab.
///
/// In the kernel a flush invalidates the local TLB and, through `flush_tlb_multi`, sends an IPI to every
/// other CPU in the mm's cpumask and waits for each to acknowledge. The modelled process is this
/// process, so its CPUs are the ones running the lab's threads (op thread, mutators, copy workers).
///
/// Mechanisms, in order of preference (``mechanism`` says which one this process uses):
/// - `membarrier`: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` IPIs every other CPU currently
///   running a thread of this process and waits for them, as `flush_tlb_multi` does. What it adds that
///   the kernel would not pay: one syscall entry and exit (about 130 ns here). What it leaves out: the
///   local `invlpg` and the TLB refills afterwards (the lab's page tables are not the CPU's).
/// - `mprotect`: where the kernel has no membarrier (`CONFIG_MEMBARRIER=n`), the write bit of a touched
///   page of this process is dropped and restored (two `mprotect` calls). The first makes the host kernel
///   flush that page on every CPU in this mm's cpumask, lazy ones included; it adds two syscalls and a
///   VMA walk each, so it costs several times what the kernel's flush does.
final class TLBShootdown: @unchecked Sendable {
    enum Mechanism: String, Sendable {
        case membarrier, mprotect
    }

    /// The mechanism this process uses.
    public let mechanism: Mechanism
    private let shadow: UnsafeMutableRawPointer?

    /// The process's shootdown, chosen on first use.
    public static let host = TLBShootdown()

    /// `forcing` `.mprotect` skips membarrier (for tests of the fallback).
    init(forcing: Mechanism? = nil) {
        let query = clinux_membarrier(clinux_membarrier_cmd_query(), 0)
        let expedited = clinux_membarrier_cmd_private_expedited()
        if forcing != .mprotect, query >= 0, query & expedited != 0,
            clinux_membarrier(clinux_membarrier_cmd_register_private_expedited(), 0) == 0
        {
            mechanism = .membarrier
            shadow = nil
            return
        }
        mechanism = .mprotect
        let page = mmap(nil, PageSize.bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if let page, page != MAP_FAILED {
            page.storeBytes(of: 1, as: UInt8.self)  // present and writable: dropping write needs a flush
            shadow = page
        } else {
            shadow = nil
        }
    }

    deinit {
        if let shadow { munmap(shadow, PageSize.bytes) }
    }

    /// One shootdown.
    @inline(__always)
    public func shootdown() {
        switch mechanism {
        case .membarrier:
            _ = clinux_membarrier(clinux_membarrier_cmd_private_expedited(), 0)
        case .mprotect:
            guard let shadow else { return }
            mprotect(shadow, PageSize.bytes, PROT_READ)
            mprotect(shadow, PageSize.bytes, PROT_READ | PROT_WRITE)
        }
    }
}
