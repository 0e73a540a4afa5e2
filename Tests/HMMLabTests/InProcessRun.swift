import Glibc
import Testing

@testable import HMMLab

/// A small run in process with verify, on 4 KiB pages, without counters or warm-up (the options
/// given win over those), with a 30 s `hmm_range_fault` budget for a busy machine (120 s in the
/// thread-sanitizer build, `HMM_LAB_TSAN`, several times slower: two jobs whose migrations
/// invalidate each other's walks restart them from the start each time, as drivers do): its rows
/// and its runner, and no warning (a warning is a test failure).
func runInProcess(
    _ options: [String: String], sourceLocation: SourceLocation = #_sourceLocation
) throws -> (rows: [ResultRow], runner: Runner) {
    var config = try RunConfig.parse(options.merging(["counters": "none", "warmup": "0"]) { a, _ in a }, nodes: [0])
    config.verify = true
    config.backing = .small
    config.rangeTimeoutNanoseconds = getenv("HMM_LAB_TSAN") == nil ? 30_000_000_000 : 120_000_000_000
    let runner = try Runner(config: config)
    var warnings: [String] = []
    runner.onWarning = { warnings.append($0) }
    let rows = try runner.run()
    #expect(warnings.isEmpty, "\(warnings)", sourceLocation: sourceLocation)
    return (rows, runner)
}
