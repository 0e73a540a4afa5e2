import ArgumentParser
import Glibc
import HMMLab
import Synchronization

/// The options that define a run, shared by `bench` (run) and `bench sweep`: one `--NAME VALUE`
/// option per ``RunOption`` of ``RunOption/all`` (its name and help from there, in its order), and the
/// `--verify` flag. Values are taken as typed and validated by ``RunConfig/parse(_:nodes:)``, which
/// names the bad value and what is allowed.
///
/// ArgumentParser finds a type's arguments by reflecting an instance with `Mirror` and decodes them by
/// the same names, so ``customMirror`` lists the table's options as `Option` values and
/// ``init(from:)`` decodes each by its name: the options are declared once, in the table, and
/// ArgumentParser still parses them (`--pages 512`, `--pages=512`, unknown and missing values) and
/// lists them in `--help`. `RunOptionsTests` checks that every table option is parsed and listed.
struct RunOptions: ParsableArguments, CustomReflectable {
    /// The run options given, name (without dashes) → value as typed.
    var given: [String: String] = [:]
    /// `--verify`.
    var verify = false

    /// `--verify`'s help.
    static let verifyHelp = "Check every migrated byte, every page's content and every frame after each repetition."

    /// No option given (the instance ArgumentParser reflects).
    init() {}

    /// Decodes every run option of the table, and `--verify`, by the names ``customMirror`` gives them.
    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: Name.self)
        for option in RunOption.all {
            if let value = try container.decode(Option<String?>.self, forKey: Name(option.name)).wrappedValue {
                given[option.name] = value
            }
        }
        verify = try container.decode(Flag<Bool>.self, forKey: Name("verify")).wrappedValue
    }

    /// The arguments ArgumentParser sees: an optional `--NAME` for each run option, then `--verify`.
    var customMirror: Mirror {
        let options: [Mirror.Child] = RunOption.all.map { option in
            (
                label: option.name,
                value: Option<String?>(name: .customLong(option.name), help: ArgumentHelp(option.help))
            )
        }
        return Mirror(
            self,
            children: options + [
                (label: "verify", value: Flag(wrappedValue: false, help: ArgumentHelp(Self.verifyHelp)))
            ])
    }

    /// An argument's name as ArgumentParser decodes it.
    struct Name: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// The configuration of the options given, with `overrides` (a sweep's combination) on top; bad
    /// input (exit 64) naming the first bad value.
    func config(overriding overrides: [String: String] = [:]) throws -> RunConfig {
        do {
            var c = try RunConfig.parse(given.merging(overrides) { _, new in new })
            c.verify = verify
            return c
        } catch {
            throw badInput(error.message)
        }
    }
}

/// Output options shared by run and sweep.
struct OutputOptions: ParsableArguments {
    @Option(help: "CSV file for the rows (default results/<UTC date-time>-<strategy>.csv).")
    var out: String?
    @Option(help: "Summary format on stdout: text, csv or json.")
    var format: SummaryFormat = .text
    @Flag(help: "No progress bar and no notes on stderr.")
    var quiet = false
    @Flag(help: "Text summary with every column on one line and header lines unwrapped (wider than 80 columns).")
    var wide = false
}

enum SummaryFormat: String, ExpressibleByArgument, CaseIterable {
    case text, csv, json
}

/// Set by SIGINT; the run stops between ops and keeps its finished rows.
let interruptRequested = Atomic<Bool>(false)

/// Installs the SIGINT handler: the first ^C asks the run to stop, a second one kills it.
func installInterruptHandler() {
    // A parent may have started us with SIGINT blocked (a test harness, a job runner): unblock it.
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigprocmask(SIG_UNBLOCK, &set, nil)
    signal(SIGINT) { _ in
        interruptRequested.store(true, ordering: .relaxed)
        signal(SIGINT, SIG_DFL)
    }
}

/// A progress bar on stderr, redrawn at most ten times a second, only on a terminal.
final class ProgressBar {
    let enabled: Bool
    private var last: UInt64 = 0
    init(enabled: Bool) { self.enabled = enabled && isatty(2) != 0 }

    func update(_ p: Runner.Progress, label: String = "") {
        guard enabled else { return }
        let now = monotonicNanoseconds()
        guard now - last > 100_000_000 else { return }
        last = now
        let fraction = (Double(p.done) + Double(p.op) / Double(max(p.ops, 1))) / Double(max(p.total, 1))
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let rep = p.warmup ? "warm-up \(p.rep)/\(p.reps)" : "rep \(p.rep)/\(p.reps)"
        printError(
            "\r\u{1B}[K\(label)\(p.strategy) \(p.direction.rowLabel) \(rep) [\(bar)] \(Int(fraction * 100))%",
            newline: false)
    }

    func clear() {
        if enabled { printError("\r\u{1B}[K", newline: false) }
    }
}

/// Runs one configuration into a result file, which `file` opens (or returns open) only once the
/// run's memory is allocated, so a run that cannot start leaves an existing file as it was; returns
/// the rows and whether the run was interrupted.
func runConfiguration(
    _ config: RunConfig, file openFile: () throws -> ResultFile, output: OutputOptions, label: String = "",
    notes: inout Set<String>
) throws -> (rows: [ResultRow], runner: Runner, interrupted: Bool) {
    let runner: Runner
    do {
        runner = try Runner(config: config)
    } catch {
        throw failure(error.description)
    }
    let file = try openFile()
    if let counters = runner.counters {
        for (name, reason) in counters.unavailable where !notes.contains(name) {
            notes.insert(name)
            if !output.quiet {
                printError("bench: note: counter \(name) cannot be opened here (\(reason)); its column is left empty")
            }
        }
    }
    let rows = try drive(runner, file: file, quiet: output.quiet, label: label)
    return (rows, runner, runner.interrupted)
}

/// What ``drive(_:file:quiet:label:)`` needs of a runner: the model's ``Runner`` or ``KernelRunner``.
protocol DrivenRunner: AnyObject {
    var onRow: (ResultRow) throws -> Void { get set }
    var onProgress: ((Runner.Progress) -> Void)? { get set }
    var shouldStop: () -> Bool { get set }
    var onWarning: (String) -> Void { get set }
    func runRepetitions() throws -> [ResultRow]
}

extension Runner: DrivenRunner {
    func runRepetitions() throws -> [ResultRow] { try run() }
}

extension KernelRunner: DrivenRunner {
    func runRepetitions() throws -> [ResultRow] { try run() }
}

/// Runs `runner` with a progress bar on a terminal, `^C` stopping it between ops, warnings on stderr
/// and every finished row appended to `file`; a failure is one line and exit 1.
func drive(_ runner: some DrivenRunner, file: ResultFile, quiet: Bool, label: String) throws -> [ResultRow] {
    let bar = ProgressBar(enabled: !quiet)
    runner.onProgress = { bar.update($0, label: label) }
    runner.shouldStop = { interruptRequested.load(ordering: .relaxed) }
    runner.onWarning = { message in
        bar.clear()
        printError("bench: warning: \(message)")
    }
    runner.onRow = { try file.append($0) }
    defer { bar.clear() }
    do {
        return try runner.runRepetitions()
    } catch {
        bar.clear()
        throw failure("\(error)")
    }
}

/// Prints the summary in the chosen format; in text, `header` and `footer` comment lines around it,
/// each wrapped to 80 columns unless `wide`.
func printSummary(
    _ rows: [ResultRow], format: SummaryFormat, path: String, header: [String], footer: [String] = [],
    wide: Bool = false
) {
    let summary = Summary(rows: rows)
    switch format {
    case .csv: print(summary.csv, terminator: "")
    case .json: print(summary.json)
    case .text:
        let comment = { (line: String) in wide ? line : TextBlock.wrap(line, indent: "#   ") }
        for line in header { print(comment(line)) }
        print(summary.text(wide: wide))
        for line in footer { print(comment(line)) }
        print(comment("# rows: \(path)"))
    }
}

/// The model run's summary: the machine, the floors and the pools' placement as comments in text.
func printSummary(_ rows: [ResultRow], runner: Runner, output: OutputOptions, path: String) {
    let m = runner.metadata
    let c = runner.config
    let medianOp = Summary.median(rows.map(\.opMeanNs))
    let overhead = runner.overheadPerOpNs + runner.overheadPerRepNs / Double(max(c.pages / c.windowPages, 1))
    let header =
        [
            "# hmm-lab \(m.toolVersion) bench, run \(m.runId): \(c.settingsLine)",
            "# \(m.host): \(m.cpuModel), \(m.cpus) cpus, \(m.numaNodes) NUMA node\(m.numaNodes == 1 ? "" : "s"), kernel \(m.kernel)",
            "# nodes: system \(m.systemNode), device \(m.deviceNode) ("
                + MachineTopology.deviceNodeReason(
                    table: NodeTable.read(), systemNode: m.systemNode, deviceNode: m.deviceNode,
                    asked: c.deviceNode != nil)
                + "); " + runner.placement.describe(failure: runner.pinFailure),
            "# backing: system pool \(m.systemBacking), device pool \(m.deviceBacking), THP \(m.thpMode)"
                + (m.systemBacking == m.deviceBacking ? "" : " (the pools differ: compare matches on both)"),
        ] + fallbackLine(runner.memory) + [
            "# floors: memcpy \(Summary.fixed(m.memcpyGBps, 2)) GB/s between the pools, kernel mincore \(Summary.fixed(m.kernelWalkNs, 2)) ns/page; "
                + "harness overhead \(Summary.fixed(overhead, 0)) ns/op (\(Summary.fixed(overhead / medianOp * 100, 3))% of the mean op)",
            "# pools read back with move_pages when made: " + placement(runner.memory),
        ]
    var footer: [String] = []
    if runner.injecting {
        let counts = FaultInjector.Point.allCases.map { "\($0.name) \(runner.injected[$0.rawValue])" }.joined(
            separator: ", ")
        footer.append(
            "# injected over the timed repetitions: \(counts); ops that failed because of them: \(runner.failedOps)")
    }
    printSummary(rows, format: output.format, path: path, header: header, footer: footer, wide: output.wide)
}

/// `bench` / `bench run`: the measurement harness.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Make a range resident in device memory with a strategy, window by window; write one CSV row per strategy, repetition and direction."
    )

    @OptionGroup var options: RunOptions
    @OptionGroup var output: OutputOptions
    @Option(
        help:
            "model (default: the lab) or kernel (the running kernel's test_hmm driver, /dev/hmm_dmirror0; see scripts/kernel-vm)."
    )
    var engine: String?

    func run() throws {
        let config = try options.config()
        if try Engine.parse(engine) == .kernel {
            // test_hmm's READ is the kernel engine's fault: REQ_FAULT in calls of 32 pages.
            if config.deviceAccess == .write {
                throw badInput("--engine kernel: --device-access write: test_hmm's READ faults for read only; use read")
            }
            if let p = options.given["fault-pages"], p != String(Device.faultWindow) {
                throw badInput(
                    "--engine kernel: --fault-pages \(p): test_hmm's READ faults \(Device.faultWindow) pages a call; use \(Device.faultWindow)"
                )
            }
            return try runKernel(config, output: output)
        }
        try checkMemory(config)
        noteFewReps(config, output)
        installInterruptHandler()
        var notes = Set<String>()
        var opened: ResultFile?
        let (rows, runner, interrupted) = try runConfiguration(
            config,
            file: {
                let file = try openResultFile(
                    output, strategy: config.strategyName, header: ResultRow.header(counters: config.counters))
                opened = file
                return file
            }, output: output, notes: &notes)
        let path = opened?.path ?? ""
        try finish(opened, interrupted ? .interrupted : .complete)
        if !rows.isEmpty { printSummary(rows, runner: runner, output: output, path: path) }
        if interrupted {
            printError("bench: interrupted: \(rows.count) finished row\(rows.count == 1 ? "" : "s") kept in \(path)")
            throw ExitCode(130)
        }
    }
}

/// With fewer repetitions than `compare` needs to call any change significant, says so once.
func noteFewReps(_ config: RunConfig, _ output: OutputOptions) {
    let needed = Compare.minimumRepsForSignificance
    guard config.reps < needed, !output.quiet else { return }
    printError(
        "bench: note: --reps \(config.reps): compare cannot call a change significant at p < 0.05 with fewer than \(needed) repetitions a side"
    )
}

/// Writes the result file's completion record; a failure to write it is one line and exit 1.
func finish(_ file: ResultFile?, _ completion: ResultFile.Completion) throws {
    guard let file else { return }
    do {
        try file.finish(completion)
    } catch {
        throw failure("\(file.path): the completion record cannot be written: \(error)")
    }
}

/// Refuses a run larger than the memory available, before allocating anything.
func checkMemory(_ config: RunConfig) throws {
    do {
        try Runner.checkMemory(config)
    } catch {
        throw badInput(error.description)
    }
}

/// Every pool that fell back from the backing it asked for first, in one line (none when none did).
func fallbackLine(_ memory: PhysicalMemory) -> [String] {
    let fallbacks = memory.notes.filter { $0.contains("fell back") }
    return fallbacks.isEmpty ? [] : ["# " + fallbacks.joined(separator: "; ")]
}

/// Where the pools' host pages are, as `move_pages` reported each of them when the pool was made
/// (``Region`` refuses a pool with a page off its node).
func placement(_ memory: PhysicalMemory) -> String {
    func pool(_ name: String, _ r: Region) -> String {
        let v = r.verification
        guard v.nodeChecked else { return "\(name) not checked (no NUMA API)" }
        let size = Region.formatBytes(r.backing == .hugetlb ? r.backing.hostPageSize : PageSize.bytes)
        return "\(name) (\(r.backing.rawValue)) "
            + v.pagesPerNode.sorted { $0.key < $1.key }.map { "\($0.value) pages of \(size) on node \($0.key)" }.joined(
                separator: ", ")
    }
    let devices = memory.devicePools.enumerated().map { i, p in
        pool(memory.devicePools.count == 1 ? "device" : "device \(i)", p.region)
    }
    return ([pool("system", memory.system.region)] + devices).joined(separator: "; ")
}

/// Opens the rows file before the run starts: `--out` (locked, so a second bench writing it is
/// refused), or a new `results/<UTC>-<strategy>[-N].csv` no other run has; bad input when it cannot
/// be written. The file starts with the command line and the build (``ResultFile/metadataLines(command:version:)``).
func openResultFile(_ output: OutputOptions, strategy: String, header: [String]) throws -> ResultFile {
    let metadata = ResultFile.metadataLines(command: CommandLine.arguments, version: BuildInfo.versionLine)
    do {
        if let out = output.out { return try ResultFile(path: out, header: header, metadata: metadata) }
        return try ResultFile.createDefault(strategy: strategy, header: header, metadata: metadata)
    } catch {
        throw badInput("--out '\(output.out ?? "results/")' cannot be written: \(error)")
    }
}
