import Glibc
import Synchronization

/// Seeded failures at the points where the kernel's device-memory paths can fail, for an address
/// space (`AddressSpace.injector`). Each point has its own probability; one generator, seeded, decides,
/// so a run with the same seed and the same interleaving injects the same failures. Device allocation
/// failures (4 KiB and 2 MiB) are injected by the device (``Device/setAllocationFailure(_:)``).
///
/// Whatever is injected, migration stays best effort and never loses data: a page either migrates
/// whole or stays where it was, whole, and is counted as skipped.
public final class FaultInjector: @unchecked Sendable {
    public enum Point: Int, CaseIterable, Sendable, CustomStringConvertible {
        /// `folio_trylock` fails in collect or in the unified walk: the page is skipped.
        case trylock
        /// A reference appears between collect and `migrate_vma_pages` (a concurrent GUP pin): the
        /// expected-refcount check refuses the page and finalize restores it.
        case pin
        /// An invalidation of the walked range races `hmm_range_fault` (another thread's munmap or
        /// mprotect of a neighbour): the notifier sequence moves and the caller walks again.
        case invalidate
        /// `do_swap_page` cannot read the slot (an I/O error: `VM_FAULT_SIGBUS`): `hmm_range_fault`
        /// returns `-EFAULT`, a CPU access fails, the page stays in swap.
        case swapin
        /// A CPU on another thread stores to a page while its migration entry is installed (between
        /// the unmap of `migrate_vma_setup` or the unified walk and `migrate_vma_finalize`, in every
        /// direction): the fault finds the migration entry and waits (`migration_entry_wait()`,
        /// mm/migrate.c), then retries and lands wherever the page ended up, faulting a device page
        /// back through `migrate_to_ram`. See ``injectCPUFault(_:mm:)``.
        case cpufault

        public var name: String {
            switch self {
            case .trylock: "trylock"
            case .pin: "pin"
            case .invalidate: "invalidate"
            case .swapin: "swapin"
            case .cpufault: "cpufault"
            }
        }
        public var description: String { name }
        public init?(name: String) {
            guard let p = Self.allCases.first(where: { $0.name == name }) else { return nil }
            self = p
        }
    }

    private let probabilities: [Double]
    private let state: LabMutex<(rng: SplitMix64, counts: [Int])>
    /// Where in the page the injected CPU store writes its 8-byte stamp.
    let cpuFaultStampOffset: UInt64
    /// The injected CPU faults not yet joined, and what the finished ones did.
    private let cpuFaults = LabMutex(CPUFaultState())
    private let cpuFaultsPending = Atomic<Int>(0)

    /// The default ``cpuFaultStampOffset``: after a page's 16-byte header and the mutators' stamp
    /// (``Workload/stampOffset``), so the injected store and the mutators never write the same bytes.
    public static let defaultCPUFaultStampOffset: UInt64 = 24

    /// Probabilities per point (missing: 0) and the seed.
    public init(
        _ probabilities: [Point: Double], seed: UInt64,
        cpuFaultStampOffset: UInt64 = FaultInjector.defaultCPUFaultStampOffset
    ) {
        self.probabilities = Point.allCases.map { probabilities[$0] ?? 0 }
        self.cpuFaultStampOffset = cpuFaultStampOffset
        state = LabMutex((SplitMix64(seed: seed ^ 0x696E_6A65_6374), Array(repeating: 0, count: Point.allCases.count)))
    }

    /// Whether to fail at `point` now (counted when it does).
    @inline(__always)
    func fire(_ point: Point) -> Bool {
        let p = probabilities[point.rawValue]
        guard p > 0 else { return false }
        return state.withLock { s in
            let hit = s.rng.nextUnit() < p
            if hit { s.counts[point.rawValue] += 1 }
            return hit
        }
    }

    /// A number from the injector's generator below `bound` (> 0).
    private func random(below bound: Int) -> Int {
        state.withLock { s in Int(s.rng.next() % UInt64(bound)) }
    }

    /// Failures injected at `point` so far.
    public func injected(_ point: Point) -> Int { state.withLock { $0.counts[point.rawValue] } }

    /// `trylock=0.05,pin=0.01,…`: the probabilities given, for logs.
    public var description: String {
        Point.allCases.compactMap { p in probabilities[p.rawValue] > 0 ? "\(p.name)=\(probabilities[p.rawValue])" : nil
        }.joined(separator: ",")
    }

    // MARK: - A CPU fault on a page under migration

    /// One injected CPU store: an 8-byte stamp stored at ``address`` (the page's address plus
    /// ``cpuFaultStampOffset``) by another thread through the address space's store path. The stores
    /// are listed in the order they reached memory (each is recorded under the page's table lock).
    struct CPUFaultStore: Sendable, Equatable {
        public var address: UInt64
        var stamp: UInt64
        /// Whether the store found the migration entry and waited for it (`migration_entry_wait`).
        public var waited: Bool
    }

    private struct CPUFaultState {
        var pending: [CPUFault] = []
        var stores: [CPUFaultStore] = []
        var failures: [String] = []
        var sequence: UInt64 = 0
    }

    /// The thread of one injected CPU fault.
    private final class CPUFault: @unchecked Sendable {
        let injector: FaultInjector
        let mm: AddressSpace
        let address: UInt64
        let stamp: UInt64
        /// The thread that injected it (it joins it).
        let spawner: pthread_t
        /// Written once by the thread itself, under the injector's `cpuFaults` lock.
        var me = pthread_t()
        var registered = false
        /// Set by the spawner once started; only the spawner reads it (to join).
        var thread: PosixThread?
        /// 0 starting, 1 waiting on the migration entry, 2 done.
        let progress = Atomic<Int>(0)
        let waited = Atomic<Bool>(false)

        init(injector: FaultInjector, mm: AddressSpace, address: UInt64, stamp: UInt64, spawner: pthread_t) {
            self.injector = injector
            self.mm = mm
            self.address = address
            self.stamp = stamp
            self.spawner = spawner
        }

        func run() {
            injector.cpuFaults.withLock { _ in
                me = pthread_self()
                registered = true
            }
            do {
                // AddressSpace.store's path, with the store recorded while the translation is held (under
                // the PTE lock), so the record's order is the order of the stores to the page.
                try mm.access(address: address, count: 8, write: true) { host, _, _ in
                    host.storeBytes(of: self.stamp.littleEndian, as: UInt64.self)
                    let w = self.waited.load(ordering: .acquiring)
                    self.injector.cpuFaults.withLock {
                        $0.stores.append(CPUFaultStore(address: self.address, stamp: self.stamp, waited: w))
                    }
                }
            } catch {
                injector.cpuFaults.withLock { $0.failures.append("store at 0x\(String(address, radix: 16)): \(error)") }
            }
            progress.store(2, ordering: .releasing)
        }
    }

    /// Whether the calling thread is an injected CPU fault (which never injects another).
    private func callerIsInjected() -> Bool {
        guard cpuFaultsPending.load(ordering: .acquiring) > 0 else { return false }
        let me = pthread_self()
        return cpuFaults.withLock { s in s.pending.contains { $0.registered && pthread_equal($0.me, me) != 0 } }
    }

    /// Called by `migrate_vma_pages` (``AddressSpace/migrateVMAPages(_:)``), when every source of
    /// `args` still migrating is locked and unmapped, its migration entries installed: with the
    /// `cpufault` probability (once per call, that is per window), starts a thread that stores a new
    /// stamp into one of those pages, chosen at random, through the address space's normal store path
    /// (mmap lock for reading, translation, ``AddressSpace/handleFault(at:write:)``), and waits until
    /// that thread has found the migration entry and is waiting on it (`migration_entry_wait()`,
    /// mm/migrate.c, which waits for the folio lock), so the fault really races the migration. The
    /// thread is joined after `migrate_vma_finalize` (``joinCPUFaults()``): once the folios are
    /// unlocked its store proceeds, in system memory, or, when the page went to the device, through
    /// the device-private entry and `migrate_to_ram` first (as `do_swap_page()` does).
    ///
    /// Departures from the kernel, said here: the racing access is a thread the migrating thread
    /// starts and joins, rather than an independent CPU; the migrating thread holds the mmap lock for
    /// reading and the store takes it for reading too, which relies on the lab's lock admitting a
    /// reader while a writer waits (glibc's default, ``ReadWriteLock``); a page of a VMA that is not
    /// writable is not chosen (the store would fail its access check without waiting). If the thread
    /// has not reached the migration entry after 5 s (a page whose entry is not a migration entry), the
    /// migration goes on without waiting for it; its store then is not counted as `waited`.
    func injectCPUFault(_ args: MigrateVMA, mm: AddressSpace) {
        guard probabilities[Point.cpufault.rawValue] > 0, args.vma?.isWritable == true, !callerIsInjected() else {
            return
        }
        var candidates = 0
        for i in 0..<args.npages where args.src[i] & MigratePfn.migrate != 0 && MigratePfn.pfn(args.src[i]) != nil {
            candidates += 1
        }
        guard candidates > 0, fire(.cpufault) else { return }
        var n = random(below: candidates)
        var index = 0
        for i in 0..<args.npages where args.src[i] & MigratePfn.migrate != 0 && MigratePfn.pfn(args.src[i]) != nil {
            if n == 0 {
                index = i
                break
            }
            n -= 1
        }
        if args.src[index] & MigratePfn.compound != 0 {
            index = min(args.npages - 1, index + random(below: PageSize.pmdPages))
        }
        let stamp = cpuFaults.withLock { s -> UInt64 in
            s.sequence += 1
            return 0xC0FA << 48 | s.sequence
        }
        let fault = CPUFault(
            injector: self, mm: mm, address: pageAddress(args.start, index) + cpuFaultStampOffset, stamp: stamp,
            spawner: pthread_self())
        cpuFaults.withLock { $0.pending.append(fault) }
        cpuFaultsPending.wrappingAdd(1, ordering: .releasing)
        do {
            fault.thread = try PosixThread.start { fault.run() }
        } catch {
            cpuFaults.withLock { s in
                s.pending.removeAll { $0 === fault }
                s.failures.append("\(error)")
            }
            cpuFaultsPending.wrappingAdd(-1, ordering: .releasing)
            return
        }
        let deadline = monotonicNanoseconds() + 5_000_000_000
        while fault.progress.load(ordering: .acquiring) == 0, monotonicNanoseconds() < deadline { sched_yield() }
    }

    /// Called by ``AddressSpace/waitForMigration(_:)``: if the calling thread is an injected CPU fault,
    /// it has found its migration entry and waits now.
    func willWaitForMigration() {
        guard cpuFaultsPending.load(ordering: .acquiring) > 0 else { return }
        let me = pthread_self()
        cpuFaults.withLock { s in
            for f in s.pending where f.registered && pthread_equal(f.me, me) != 0 {
                f.waited.store(true, ordering: .releasing)
                f.progress.store(1, ordering: .releasing)
            }
        }
    }

    /// Joins the injected CPU faults the calling thread started; called once the folios they wait on
    /// are unlocked: at the end of `migrate_vma_finalize`, or, when the migration was a
    /// `migrate_to_ram` (whose fault page stays locked until `do_swap_page` unlocks it), after that.
    func joinCPUFaults() {
        guard cpuFaultsPending.load(ordering: .acquiring) > 0 else { return }
        let me = pthread_self()
        let mine = cpuFaults.withLock { s in s.pending.filter { pthread_equal($0.spawner, me) != 0 } }
        guard !mine.isEmpty else { return }
        for f in mine { f.thread?.join() }
        cpuFaults.withLock { s in s.pending.removeAll { f in mine.contains { $0 === f } } }
        cpuFaultsPending.wrappingAdd(-mine.count, ordering: .releasing)
    }

    /// The injected CPU stores that completed since the last call, in the order they completed, and
    /// the ones that failed (one line each: an access error, a failed `migrate_to_ram`).
    func takeCPUFaultStores() -> (stores: [CPUFaultStore], failures: [String]) {
        cpuFaults.withLock { s in
            defer {
                s.stores.removeAll()
                s.failures.removeAll()
            }
            return (s.stores, s.failures)
        }
    }
}
