import Synchronization

/// Where a run's threads run: on the CPUs of the node its system memory lives on, as a GPU driver's
/// fault handler runs near its memory; when that node has no CPUs (a memory-only node: CXL, HBM, a
/// guest's CPU-less node), on the CPUs of the nearest node that has some. On a machine with one node
/// threads are not pinned.
///
/// Every thread of a run (the main thread, the op thread, copy workers, mutators) calls
/// ``pinCallingThread()``; the first result is what the run reports, the failures of the others are
/// counted (``failedPins``) for the run to report: a failure is said, never hidden.
public struct ThreadPlacement: Sendable, Equatable {
    /// The node the run's system memory is on.
    public var systemNode: Int
    /// The node whose CPUs threads run on; nil when they are not pinned (one node, or no node lists
    /// CPUs).
    public var node: Int?
    /// Those CPUs.
    public var cpus: [Int]
    /// Why this node, in a few words.
    public var reason: String
    /// Pinnings that failed, over every thread that tried.
    private let failures = PinFailures()
    var failedPins: Int { failures.count.load(ordering: .relaxed) }

    public static func == (a: ThreadPlacement, b: ThreadPlacement) -> Bool {
        a.systemNode == b.systemNode && a.node == b.node && a.cpus == b.cpus && a.reason == b.reason
    }

    /// Decides from `table`.
    public init(systemNode: Int, table: NodeTable) {
        self.systemNode = systemNode
        if table.nodes.count <= 1 {
            node = nil
            cpus = []
            reason = "one NUMA node: threads are not pinned"
            return
        }
        guard let chosen = table.nearestNodeWithCPUs(to: systemNode), let n = table.node(chosen) else {
            node = nil
            cpus = []
            reason = "no node lists CPUs: threads are not pinned"
            return
        }
        node = chosen
        cpus = n.cpus
        reason =
            chosen == systemNode
            ? "the system node's CPUs"
            : "node \(systemNode) has no CPUs; node \(chosen) is the nearest with CPUs, distance \(table.distance(systemNode, chosen))"
    }

    /// Pins the calling thread to ``cpus`` and checks it took: nil when it did (or when there is
    /// nothing to pin), else why not.
    @discardableResult
    public func pinCallingThread() -> String? {
        guard node != nil else { return nil }
        let failure = NUMA.pinCallingThread(toCPUs: cpus)
        if failure != nil { failures.count.wrappingAdd(1, ordering: .relaxed) }
        return failure
    }

    /// `0-1`, the CPU list as the kernel writes it; empty when not pinned.
    var cpuList: String { node == nil ? "" : Sysfs.formatList(cpus) }

    /// One line for a run's header, given the result of pinning the main thread.
    public func describe(failure: String?) -> String {
        guard let node else { return reason }
        if let failure { return "pinning to node \(node)'s CPUs \(cpuList) failed (\(failure)): threads run anywhere" }
        return "threads pinned to node \(node)'s CPUs \(cpuList) (\(reason))"
    }
}

/// The count of failed pinnings, shared by every copy of a ``ThreadPlacement``.
final class PinFailures: Sendable {
    let count = Atomic<Int>(0)
}
