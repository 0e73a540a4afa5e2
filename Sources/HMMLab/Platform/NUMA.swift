import CLinux
import CNuma
import Glibc

/// NUMA placement through libnuma and the mempolicy system calls.
///
/// On a machine without NUMA support in the kernel (or where libnuma reports it unavailable) every
/// node query answers node 0 and binding is skipped; ``isAvailable`` says which happened, and a
/// ``Region`` records it.
public enum NUMA {
    /// Whether the kernel's NUMA API works here (`numa_available() >= 0`).
    static let isAvailable: Bool = numa_available() >= 0

    /// The nodes that have memory, from `/sys/devices/system/node/has_memory` (else `[0]`).
    public static func nodesWithMemory() -> [Int] {
        if let text = Sysfs.read("/sys/devices/system/node/has_memory") {
            let nodes = Sysfs.parseList(text)
            if !nodes.isEmpty { return nodes }
        }
        return [0]
    }

    /// The online nodes, from `/sys/devices/system/node/online` (else `[0]`).
    static func onlineNodes() -> [Int] {
        if let text = Sysfs.read("/sys/devices/system/node/online") {
            let nodes = Sysfs.parseList(text)
            if !nodes.isEmpty { return nodes }
        }
        return [0]
    }

    /// Pins the calling thread to `cpus` (`sched_setaffinity`) and reads the set back
    /// (`sched_getaffinity`): nil when the thread may now run on exactly those CPUs, else why not.
    public static func pinCallingThread(toCPUs cpus: [Int]) -> String? {
        guard !cpus.isEmpty else { return "no CPUs to pin to" }
        let rc = cpus.map(Int32.init).withUnsafeBufferPointer {
            clinux_pin_thread_to_cpus($0.baseAddress, Int32($0.count))
        }
        if rc < 0 { return "sched_setaffinity: \(SystemError.name(of: -rc))" }
        let allowed = allowedCPUs()
        return allowed == cpus.sorted() ? nil : "sched_getaffinity reads back CPUs \(allowed) after pinning to \(cpus)"
    }

    /// The CPUs the calling thread may run on (`sched_getaffinity`), ascending; empty when unreadable.
    static func allowedCPUs() -> [Int] {
        var out = [Int32](repeating: 0, count: 4096)
        let n = out.withUnsafeMutableBufferPointer { clinux_allowed_cpus($0.baseAddress, Int32($0.count)) }
        return n > 0 ? out.prefix(Int(n)).map(Int.init) : []
    }

    /// Binds `[address, address+length)` to `node` with `MPOL_BIND` (and `MPOL_MF_STRICT|MPOL_MF_MOVE`,
    /// so pages already there are moved or reported).
    ///
    /// The corresponding system call is `mbind(2)`. A no-op when NUMA is unavailable.
    static func bind(_ address: UnsafeMutableRawPointer, length: Int, toNode node: Int) throws(SystemError) {
        guard isAvailable else { return }
        var mask = [UInt](repeating: 0, count: 16)  // 1024 nodes
        guard node >= 0, node < mask.count * UInt.bitWidth else {
            throw SystemError("mbind", errno: EINVAL, "node \(node) is beyond the 1024 nodes the lab handles")
        }
        mask[node / UInt.bitWidth] |= 1 << UInt(node % UInt.bitWidth)
        let maxnode = UInt(mask.count * UInt.bitWidth) + 1
        let rc = mask.withUnsafeBufferPointer {
            mbind(
                address, UInt(length), Int32(MPOL_BIND), $0.baseAddress, maxnode, UInt32(MPOL_MF_STRICT | MPOL_MF_MOVE))
        }
        if rc != 0 { throw SystemError.last("mbind", "MPOL_BIND to node \(node), \(length) bytes") }
    }

    /// The node of each page at `start + i*stride`, as `move_pages(2)` reports it with a NULL node list:
    /// a node number, or a negative errno (`-ENOENT`: not present; `-EFAULT`: not mapped).
    ///
    /// When NUMA is unavailable, present pages report node 0.
    static func nodesOfPages(start: UnsafeMutableRawPointer, count: Int, stride: Int) throws(SystemError) -> [Int32] {
        var status = [Int32](repeating: 0, count: count)
        guard isAvailable else { return status }
        let batch = 4096
        var pages = [UnsafeMutableRawPointer?](repeating: nil, count: min(batch, count))
        var done = 0
        while done < count {
            let n = min(batch, count - done)
            for i in 0..<n { pages[i] = start + (done + i) * stride }
            let rc = pages.withUnsafeMutableBufferPointer { p in
                status.withUnsafeMutableBufferPointer { s in
                    move_pages(0, UInt(n), p.baseAddress, nil, s.baseAddress! + done, 0)
                }
            }
            if rc < 0 { throw SystemError.last("move_pages", "status query of \(n) pages") }
            done += n
        }
        return status
    }
}
