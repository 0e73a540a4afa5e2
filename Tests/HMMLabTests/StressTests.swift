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
        let report = stress.run()
        let replay = "seed \(c.seed) (replay: HMM_LAB_STRESS_SEED=\(c.seed) swift test --filter StressTests)"
        #expect(report.violationCount == 0, "\(replay): \(report.violations.prefix(10).joined(separator: "\n"))")
        #expect(report.seconds < c.seconds + 10, "\(replay): the time cap holds (\(report.seconds) s)")
        #expect(report.totalOps <= c.maxOps!)
        #expect(report.rounds >= 1)
        // The loop did what it claims: every kind of op, every injection point, device failures, and
        // injected CPU faults that found a migration entry and waited.
        for op in Stress.Op.allCases { #expect(report.count(op) > 0, "\(replay): no \(op.rawValue) op ran") }
        for p in FaultInjector.Point.allCases { #expect(report.injected(p) > 0, "\(replay): nothing injected at \(p.name)") }
        #expect(report.deviceAllocFailures > 0, "\(replay)")
        #expect(report.cpuFaultWaits > 0, "\(replay)")
        #expect(report.mutatorStores > 0, "\(replay)")
    }

    @Test("a bad configuration is refused with a message")
    func badPages() {
        var c = Stress.Configuration()
        c.pages = 1000
        #expect(throws: Stress.StressError.self) { try Stress(c) }
    }
}
