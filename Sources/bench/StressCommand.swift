import ArgumentParser
import Glibc
import HMMLab

/// `bench stress`: the bounded randomised stress loop (``Stress``) for a time budget; prints what it
/// did and what it found, and exits 1 when it found a violation (130 when interrupted, 64 for bad input).
struct StressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stress",
        abstract:
            "Randomised ops (all strategies, migration back, swap, fork, munmap, mremap, mprotect) with mutators and injected failures; the invariant checker after every op."
    )

    @Option(help: "Time budget in seconds for the ops (the last round still runs its checks).")
    var seconds: String = "10"

    @Option(help: "Seed of the ops, the workloads and the injected failures (decimal or 0x hex).")
    var seed: String = "1"

    @Option(help: "Pages per round's range (a multiple of 512, at most 65536).")
    var pages: String = "2048"

    @Option(help: "CPU threads storing stamps during the ops that keep the VMAs.")
    var mutators: String = "2"

    @Option(help: "Op threads: each strategy op makes this many random windows resident at once (default 1).")
    var jobs: String = "1"

    @Option(help: "Devices mirroring the range, each with its own pool; ops pick one at random (default 1).")
    var devices: String = "1"

    @Option(name: .customLong("max-ops"), help: "Stop after this many ops as well.")
    var maxOps: String?

    @Option(help: "Backing of the pools: auto, hugetlb, thp or 4k.")
    var backing: String = "auto"

    @Option(
        help:
            "Injected failures POINT=PROBABILITY,... over trylock, pin, invalidate, swapin, cpufault, device4k (replace the defaults)."
    )
    var inject: String?

    @Option(name: .customLong("device-large-fail"), help: "Probability that a 2 MiB device allocation fails.")
    var deviceLargeFail: String?

    @Option(help: "NUMA node of the system pool; threads run on its CPUs (default 0).")
    var systemNode: String?

    @Option(help: "NUMA node of the device pool (default: the farthest node with memory).")
    var deviceNode: String?

    @Option(
        help:
            "CSV file to write one line per round to as the run goes: its ops, where its time went, the slowest op and content-check read, resident memory."
    )
    var rounds: String?

    @Flag(help: "No progress on stderr.")
    var quiet = false

    @Flag(help: "Summary lines unwrapped (wider than 80 columns).")
    var wide = false

    func run() throws {
        let config = try configuration()
        let stress: Stress
        do {
            stress = try Stress(config)
        } catch {
            throw failure(error.description)
        }
        let roundsFile = try openRoundsFile()
        if let roundsFile { writeRounds(of: stress, to: roundsFile) }
        installInterruptHandler()
        stress.shouldStop = { interruptRequested.load(ordering: .relaxed) }
        let showProgress = !quiet && isatty(2) != 0
        if showProgress { stress.onProgress = Self.progressLine(seconds: config.seconds) }
        let report = stress.run()
        if showProgress { printError("\r\u{1B}[K", newline: false) }
        try? roundsFile?.finish(report.interrupted ? .interrupted : .complete)
        let nodes =
            "# nodes: system \(config.systemNode), device \(stress.memory.configuration.deviceNode); "
            + stress.placement.describe(failure: stress.pinFailure)
        print(Self.summary(report, config, wide: wide))
        print(wide ? nodes : TextBlock.wrap(nodes, indent: "#   "))
        if report.violationCount > 0 { throw ExitCode(1) }
        if report.interrupted {
            printError("bench: interrupted after \(report.totalOps) ops")
            throw ExitCode(130)
        }
    }

    /// The options as typed, checked (``Stress/parse(_:)``) and the pools' plan checked against the
    /// machine's nodes; bad input otherwise.
    func configuration() throws -> Stress.Configuration {
        var options = [
            "seconds": seconds, "seed": seed, "pages": pages, "mutators": mutators, "jobs": jobs, "devices": devices,
            "backing": backing,
        ]
        if let maxOps { options["max-ops"] = maxOps }
        if let inject { options["inject"] = inject }
        if let deviceLargeFail { options["device-large-fail"] = deviceLargeFail }
        if let systemNode { options["system-node"] = systemNode }
        if let deviceNode { options["device-node"] = deviceNode }
        let config: Stress.Configuration
        do {
            config = try Stress.parse(options)
        } catch {
            throw badInput(error.message)
        }
        if let refusal = config.plan(NodeTable.read()).refusal(sizedBy: "--pages \(config.pages)", unit: "pages") {
            throw badInput(refusal)
        }
        return config
    }

    /// Appends each finished round to `file`; a write that fails is said once and ends the writing,
    /// not the run.
    func writeRounds(of stress: Stress, to file: ResultFile) {
        stress.onRound = { record in
            do {
                try file.append(fields: record.fields)
            } catch {
                printError("bench: --rounds: \(error)")
                stress.onRound = nil
            }
        }
    }

    /// The progress line on stderr, redrawn at most every 100 ms.
    static func progressLine(seconds: Double) -> (Stress.Progress) -> Void {
        var last: UInt64 = 0
        return { p in
            let now = monotonicNanoseconds()
            guard now - last > 100_000_000 else { return }
            last = now
            printError(
                "\r\u{1B}[Kstress: round \(p.round), \(p.ops) ops, \(Int(p.seconds)) of \(Int(seconds.rounded(.up))) s, \(p.violations) violations",
                newline: false)
        }
    }

    /// The `--rounds` file, opened before the run with the command line as its first lines; bad input
    /// when it cannot be written.
    func openRoundsFile() throws -> ResultFile? {
        guard let rounds else { return nil }
        do {
            return try ResultFile(
                path: rounds, header: Stress.RoundRecord.columns,
                metadata: ResultFile.metadataLines(command: CommandLine.arguments, version: BuildInfo.versionLine))
        } catch {
            throw badInput("--rounds '\(rounds)' cannot be written: \(error)")
        }
    }

    /// What the run did and found, each line wrapped to 80 columns unless `wide`.
    static func summary(_ r: Stress.Report, _ c: Stress.Configuration, wide: Bool = false) -> String {
        var lines: [String] = []
        lines.append(
            "# hmm-lab bench stress: seed \(r.seed), budget \(Summary.fixed(c.seconds, 1)) s, pages \(c.pages), mutators \(c.mutators), inject \(c.injectDescription)"
        )
        lines.append("operations: \(r.totalOps) in \(r.rounds) round\(r.rounds == 1 ? "" : "s")")
        for op in Stress.Op.allCases {
            lines.append("  \(op.rawValue.padding(toLength: 20)) \(String(r.count(op)).leftPadding(toLength: 8))")
        }
        lines.append("injected failures:")
        for p in FaultInjector.Point.allCases {
            lines.append("  \(p.name.padding(toLength: 20)) \(String(r.injected(p)).leftPadding(toLength: 8))")
        }
        lines.append(
            "  \("device-alloc".padding(toLength: 20)) \(String(r.deviceAllocFailures).leftPadding(toLength: 8))  (4 KiB and 2 MiB allocations that failed)"
        )
        lines.append(
            "cpufault stores landed: \(r.cpuFaultStores), of which waited on the migration entry: \(r.cpuFaultWaits)")
        lines.append("mutator stores: \(r.mutatorStores); ops that ended with an error: \(r.opsWithErrors)")
        if r.checkReadRetries > 0 {
            lines.append("content-check reads tried again after -EBUSY (1 s budget spent): \(r.checkReadRetries)")
        }
        lines.append("seconds: \(Summary.fixed(r.seconds, 2))")
        lines.append("violations: \(r.violationCount)")
        for v in r.violations { lines.append("  \(v)") }
        if r.violationCount > r.violations.count { lines.append("  … \(r.violationCount - r.violations.count) more") }
        lines.append("seed: \(r.seed)")
        return (wide ? lines : lines.map { TextBlock.wrap($0, indent: $0.hasPrefix("#") ? "#   " : "    ") }).joined(
            separator: "\n")
    }
}
