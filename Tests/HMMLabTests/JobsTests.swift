import Synchronization
import Testing

@testable import HMMLab

/// Several op threads (`--jobs`) on one address space: the same per-page work as one job, except the
/// notifier retries contention forces, which are counted.
@Suite("Jobs")
struct JobsTests {
    /// A small run in process with verify, on 4 KiB pages.
    func run(_ options: [String: String]) throws -> [ResultRow] {
        try runInProcess(options).rows
    }

    /// Rows by strategy and direction.
    func byStrategy(_ rows: [ResultRow]) -> [String: ResultRow] {
        Dictionary(uniqueKeysWithValues: rows.map { ($0.strategy + " " + $0.direction, $0) })
    }

    @Test("the job threads run one body on every job, as often as asked")
    func jobThreads() {
        let started = Atomic<Int>(0)
        let jobs = JobThreads(count: 3) { started.wrappingAdd(1, ordering: .relaxed) }
        defer { jobs.stop() }
        let seen = LabMutex<[Int]>([])  // a pthread mutex the thread sanitizer sees in its build
        for _ in 0..<5 { jobs.run { job in seen.withLock { $0.append(job) } } }
        #expect(started.load(ordering: .relaxed) == 2, "the start hook runs once per extra thread")
        #expect(seen.withLock { $0.sorted() } == (0..<3).flatMap { Array(repeating: $0, count: 5) })
    }

    @Test(
        "present pages: 2 and 4 jobs walk, fault, flush and move exactly what one job does, with no retry",
        arguments: [2, 4])
    func presentCountsEqual(jobs: Int) throws {
        let options = ["strategy": "all", "pages": "4096", "reps": "1", "direction": "round-trip"]
        let one = byStrategy(try run(options))
        let many = byStrategy(try run(options.merging(["jobs": String(jobs)]) { _, b in b }))
        #expect(one.count == 6 && many.count == 6)
        for (key, a) in one {
            let b = try #require(many[key])
            #expect(b.notifierRetries == 0 && b.crossJobRetries == 0, "\(key)")
            #expect(
                [b.walks, b.walkRestarts, b.faults, b.pagesMigrated, b.tlbFlushes, b.ptesVisited, b.migrationEntries]
                    == [
                        a.walks, a.walkRestarts, a.faults, a.pagesMigrated, a.tlbFlushes, a.ptesVisited,
                        a.migrationEntries,
                    ], "\(key)")
            #expect(b.verifyFailures == 0 && b.lostStores == 0, "\(key)")
        }
    }

    @Test(
        "every page state: 2 jobs fault and move what one job does; walks differ only by the notifier retries, which are counted"
    )
    func mixedCountsEqualBarRetries() throws {
        let options = [
            "strategy": "all", "pages": "4096", "reps": "2", "mix": "none=0.1,zero=0.1,present=0.5,cow=0.1,swap=0.2",
        ]
        let one = try run(options)
        let two = try run(options.merging(["jobs": "2"]) { _, b in b })
        for (a, b) in zip(one, two) {
            let key = "\(a.strategy) rep \(a.rep)"
            #expect(a.strategy == b.strategy && a.rep == b.rep)
            #expect(
                [b.faults, b.pagesMigrated, b.swapins, b.cowBreaks] == [
                    a.faults, a.pagesMigrated, a.swapins, a.cowBreaks,
                ], "\(key)")
            #expect(
                b.walks - b.notifierRetries == a.walks - a.notifierRetries,
                "\(key): walks \(a.walks)/\(b.walks), retries \(a.notifierRetries)/\(b.notifierRetries)")
            #expect(a.crossJobRetries == 0 && b.crossJobRetries <= b.notifierRetries, "\(key)")
            #expect(b.verifyFailures == 0 && b.lostStores == 0, "\(key)")
        }
    }

    @Test("2 jobs with a mutator, there and back: data intact, no store lost, nothing leaked")
    func jobsWithMutators() throws {
        let rows = try run([
            "strategy": "all", "pages": "2048", "reps": "2", "jobs": "2", "mutators": "1", "direction": "round-trip",
            "mix": "none=0.1,zero=0.1,present=0.4,cow=0.1,swap=0.2,device=0.1",
        ])
        #expect(rows.count == 12)
        for row in rows {
            #expect(row.verifyFailures == 0 && row.lostStores == 0, "\(row.strategy) \(row.direction) rep \(row.rep)")
        }
        #expect(
            rows.allSatisfy {
                $0.mmapLockWaitNs >= 0 && $0.ptlWaitNs >= 0 && $0.lruLockWaitNs >= 0 && $0.allocLockWaitNs >= 0
            })
    }
}
