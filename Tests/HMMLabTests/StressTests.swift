import Glibc
import Testing

@testable import HMMLab

/// The bounded randomised stress loop (``Stress``): all three strategies, migration back, eviction,
/// swap-out, fork, munmap, mremap and mprotect interleaved with mutators and every injected failure,
/// the invariant checker after every op, content and leaks after every round.
///
/// Capped at 12 s and 4000 ops. The seed is printed with any failure; `HMM_LAB_STRESS_SEED=S swift
/// test --filter StressTests` replays it (the same ops; the threads' interleaving may differ).
@Suite("Stress: randomised ops with injected failures, invariants after every op")
struct StressTests {
    static var seed: UInt64 {
        if let text = getenv("HMM_LAB_STRESS_SEED"), let s = UInt64(String(cString: text)) { return s }
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return UInt64(t.tv_sec) ^ UInt64(t.tv_nsec)
    }

    @Test("every op kind and injection point runs; no violation, every page holds its last stamp, nothing leaks")
    func stress() throws {
        var c = Stress.Configuration()
        c.seed = Self.seed
        c.seconds = 12
        c.maxOps = 4000
        c.pages = 1024
        c.opsPerRound = 120
        c.mutators = 2
        c.backing = .small
        let stress = try Stress(c)
        var records: [Stress.RoundRecord] = []
        stress.onRound = { records.append($0) }
        let report = stress.run()
        let replay = "seed \(c.seed) (replay: HMM_LAB_STRESS_SEED=\(c.seed) swift test --filter StressTests)"
        // A record per round, its ops adding up, its times inside the round's.
        #expect(records.map(\.round) == Array(1...report.rounds))
        #expect(records.reduce(0) { $0 + $1.ops } == report.totalOps && records.last?.totalOps == report.totalOps)
        for r in records {
            #expect(
                r.checkSeconds > 0 && r.slowestReadSeconds > 0 && r.slowestReadSeconds <= r.checkSeconds,
                "round \(r.round)")
            #expect(
                r.slowestOpSeconds <= r.opSeconds && r.opSeconds + r.invariantSeconds + r.checkSeconds < r.seconds,
                "round \(r.round)")
            #expect(r.residentKiB > 0, "round \(r.round)")
        }
        #expect(report.violationCount == 0, "\(replay): \(report.violations.prefix(10).joined(separator: "\n"))")
        #expect(report.seconds < c.seconds + 10, "\(replay): the time cap holds (\(report.seconds) s)")
        #expect(report.totalOps <= c.maxOps!)
        #expect(report.rounds >= 1)
        // The loop did what it claims: every kind of op, every injection point, device failures, and
        // injected CPU faults that found a migration entry and waited.
        for op in Stress.Op.allCases { #expect(report.count(op) > 0, "\(replay): no \(op.rawValue) op ran") }
        for p in FaultInjector.Point.allCases {
            #expect(report.injected(p) > 0, "\(replay): nothing injected at \(p.name)")
        }
        #expect(report.deviceAllocFailures > 0, "\(replay)")
        #expect(report.cpuFaultWaits > 0, "\(replay)")
        #expect(report.mutatorStores > 0, "\(replay)")
    }

    @Test(
        "two jobs on two devices: strategy ops on overlapping random windows at once, with mutators and every injection; no violation, nothing leaks"
    )
    func jobsAndDevices() throws {
        var c = Stress.Configuration()
        c.seed = Self.seed
        // The thread-sanitizer build (scripts/tsan sets HMM_LAB_TSAN) runs several times slower: the
        // op cap, not the clock, should end the run there too.
        c.seconds = getenv("HMM_LAB_TSAN") == nil ? 8 : 60
        c.maxOps = 2000
        c.pages = 1024
        c.opsPerRound = 100
        c.mutators = 1
        c.jobs = 2
        c.devices = 2
        c.backing = .small
        let stress = try Stress(c)
        #expect(stress.memory.devicePools.count == 2)
        let report = stress.run()
        let replay =
            "seed \(c.seed) (replay: HMM_LAB_STRESS_SEED=\(c.seed) swift test --filter StressTests/jobsAndDevices)"
        #expect(report.violationCount == 0, "\(replay): \(report.violations.prefix(10).joined(separator: "\n"))")
        #expect(report.seconds < c.seconds + 10, "\(replay): the time cap holds (\(report.seconds) s)")
        for op in [Stress.Op.unified, .faultThenMigrate, .migrateThenFault, .release, .toSystem] {
            #expect(report.count(op) > 0, "\(replay): no \(op.rawValue) op ran")
        }
        #expect(report.mutatorStores > 0, "\(replay)")
    }

    @Test(
        "a pin on every migration back (pin=1) cannot hold the run: CPU accesses that keep faulting give up when the budget ends",
        arguments: [1.0, 0.999999])
    func pinAlwaysTerminates(_ p: Double) throws {
        var c = Stress.Configuration()
        c.seed = Self.seed
        c.seconds = 1
        c.pages = 512
        c.mutators = 2
        c.backing = .small
        c.inject = [.pin: p]
        let stress = try Stress(c)
        let started = monotonicNanoseconds()
        let report = stress.run()
        let seconds = Double(monotonicNanoseconds() - started) / 1e9
        #expect(
            seconds < 30,
            "seed \(c.seed): a 1 s budget took \(seconds) s (a livelock never ends; 30 s leaves room for a loaded machine)"
        )
        #expect(report.violationCount == 0, "seed \(c.seed): \(report.violations.prefix(5).joined(separator: "\n"))")
    }

    @Test(
        "an op whose fault never makes progress (every migration back pinned) is a violation once it runs past the op time limit, and the run ends"
    )
    func opTimeLimit() throws {
        var c = Stress.Configuration()
        c.seed = Self.seed
        c.seconds = 60
        c.pages = 512
        c.mutators = 0
        c.backing = .small
        c.inject = [.pin: 1]
        c.opTimeLimit = 0.5
        let stress = try Stress(c)
        let report = stress.run()
        #expect(report.seconds < 30, "seed \(c.seed): the limit ended the run (\(report.seconds) s)")
        #expect(
            report.violations.contains { $0.contains("a fault that makes no progress") },
            "seed \(c.seed): \(report.violations.prefix(5).joined(separator: "\n"))")
    }

    @Test(
        "a store whose fault returns with a fatal signal pending is not made (fault_signal_pending); without one it is")
    func interruptedStore() throws {
        let f = try MMFixture()
        let a = try f.mm.mmap(length: 4096, protection: .readWrite)
        #expect(throws: FaultError.interrupted(a)) { try f.mm.store(UInt64(7), at: a) { true } }
        #expect(try f.mm.load(UInt64.self, from: a) == 0, "the fault was served, the store not made")
        try f.mm.store(UInt64(8), at: a) { false }
        #expect(try f.mm.load(UInt64.self, from: a) == 8)
        f.finish()
    }

    @Test("a bad configuration is refused with a message")
    func badPages() {
        var c = Stress.Configuration()
        c.pages = 1000
        #expect(throws: Stress.StressError.self) { try Stress(c) }
    }
}
