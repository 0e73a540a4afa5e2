import CLinux
import Glibc
import Synchronization

extension Calibration {
    /// What one modelled TLB flush costs here (``TLBShootdown``): alone in the process
    /// (`tlb_flush_local_ns`), and with one other thread of the process spinning on another CPU, which
    /// the shootdown must reach (`tlb_flush_remote_ns`), as a mutator or copy worker would be; and the
    /// cheapest system call (`syscall_ns`, `getppid`), the part of a local flush the kernel, already
    /// in kernel mode, does not pay.
    static func measureTLB(n: Int, _ timer: Timer) -> [Figure] {
        let shootdown = TLBShootdown.host
        let mechanism = "\(shootdown.mechanism.rawValue), \(n) per sample"
        let flushes = { timer.median { timer.time { for _ in 0..<n { shootdown.shootdown() } } } / Double(n) }
        let syscall = timer.median { timer.time { for _ in 0..<n { _ = getppid() } } } / Double(n)
        var figures = [
            Figure(
                name: "syscall_ns", value: syscall, unit: "ns/call",
                detail: "getppid: the entry and exit a host shootdown adds"),
            Figure(
                name: "tlb_flush_local_ns", value: flushes(), unit: "ns/flush", detail: mechanism + ", no other thread"),
        ]
        guard let remote = withSpinnerOnAnotherCPU(flushes) else {
            figures.append(
                Figure(
                    name: "tlb_flush_remote_ns", value: .nan, unit: "ns/flush",
                    detail: "no second CPU to run a thread on"))
            return figures
        }
        figures.append(
            Figure(
                name: "tlb_flush_remote_ns", value: remote, unit: "ns/flush",
                detail: mechanism + ", one thread spinning on another CPU"))
        return figures
    }

    /// Runs `body` while a thread of this process spins on a CPU other than the caller's; nil when no
    /// other CPU can take it.
    static func withSpinnerOnAnotherCPU(_ body: () -> Double) -> Double? {
        let here = clinux_current_cpu()
        let cpus = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let state = SpinnerState()
        guard cpus > 1,
            let thread = PosixThread({
                let pinned = (0..<cpus).contains { $0 != here && clinux_pin_thread_to_cpu(Int32($0)) == 0 }
                state.running.store(pinned ? 1 : -1, ordering: .releasing)
                while pinned, !state.stop.load(ordering: .relaxed) {}
            })
        else { return nil }
        defer {
            state.stop.store(true, ordering: .relaxed)
            thread.join()
        }
        while state.running.load(ordering: .acquiring) == 0 { sched_yield() }
        return state.running.load(ordering: .acquiring) == 1 ? body() : nil
    }

    private final class SpinnerState: Sendable {
        let running = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
    }
}
