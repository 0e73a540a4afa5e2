import Glibc
import Synchronization

/// CPU threads that store into random pages of a workload while it migrates (`--mutators N`).
///
/// Mutator `m` owns the pages `k` with `k % N == m` and stores an 8-byte version stamp
/// (`(m + 1) << 48 | sequence`) at ``Workload/stampOffset`` of a random one of them, as fast as it
/// can, through the page table: a store to a page under migration waits for the migration entry to
/// go, a store to a device page faults it back (`migrate_to_ram`), a store to a swapped page swaps it
/// in. Each mutator remembers the last stamp it stored per page, so after the run every page must hold
/// its last stamp wherever it lives; a page that does not is a lost store.
final class Mutators: @unchecked Sendable {
    private let workload: Workload
    private let count: Int
    private let seed: UInt64
    /// Last stamp stored per page (0: never); element `k` is written only by its owner thread.
    private let lastStamp: UnsafeMutablePointer<UInt64>
    private let stop = Atomic<Bool>(false)
    private let stores = Atomic<Int>(0)
    private let failures = Atomic<Int>(0)
    private var threads: [PosixThread] = []

    private let placement: ThreadPlacement?

    /// `placement`: where the threads run (nil: anywhere).
    public init(workload: Workload, count: Int, seed: UInt64, placement: ThreadPlacement? = nil) {
        self.placement = placement
        self.workload = workload
        self.count = count
        self.seed = seed
        lastStamp = .allocate(capacity: workload.pages)
        lastStamp.initialize(repeating: 0, count: workload.pages)
    }

    deinit {
        if !threads.isEmpty { finish() }
        lastStamp.deallocate()
    }

    /// The first thread that could not be started (`pthread_create`'s error), if one could not: the
    /// run then has fewer mutators than asked, which its caller reports.
    public private(set) var startFailure: SystemError?

    /// Starts the threads (again after ``finish()``: the last stamps are kept).
    public func start() {
        guard count > 0, threads.isEmpty else { return }
        stop.store(false, ordering: .relaxed)
        for m in 0..<count {
            do {
                threads.append(try PosixThread.start { [self] in loop(m) })
            } catch {
                if startFailure == nil { startFailure = error }
            }
        }
    }

    private func loop(_ m: Int) {
        placement?.pinCallingThread()
        let pages = workload.pages
        let owned = (pages - m + count - 1) / count
        guard owned > 0 else { return }
        var rng = SplitMix64(seed: seed ^ (UInt64(m + 1) &* 0xA24B_AED4_963E_E407))
        var sequence: UInt64 = 0
        var done = 0
        while !stop.load(ordering: .relaxed) {
            let k = m + Int(rng.next() % UInt64(owned)) * count
            sequence += 1
            let stamp = UInt64(m + 1) << 48 | sequence
            do {
                try workload.mm.store(stamp, at: workload.address(k) + Workload.stampOffset) {
                    self.stop.load(ordering: .relaxed)
                }
                lastStamp[k] = stamp
                done += 1
                if done & 63 == 0 {
                    stores.wrappingAdd(64, ordering: .relaxed)
                    sched_yield()
                }
            } catch .interrupted {
                break
            } catch {
                failures.wrappingAdd(1, ordering: .relaxed)
            }
        }
        stores.wrappingAdd(done & 63, ordering: .relaxed)
    }

    /// Stores made so far (published every 64 stores per thread, exact after ``finish()``).
    var storesSoFar: Int { stores.load(ordering: .relaxed) }

    /// Stops and joins the threads; returns the stores made and the stores that faulted with an error.
    @discardableResult
    public func finish() -> (stores: Int, failed: Int) {
        stop.store(true, ordering: .relaxed)
        for t in threads { t.join() }
        threads = []
        return (stores.load(ordering: .relaxed), failures.load(ordering: .relaxed))
    }

    /// The stamp page `k` must hold (0 when no mutator stored to it).
    func expectedStamp(_ k: Int) -> UInt64 { lastStamp[k] }
}
