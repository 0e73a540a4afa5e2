import ArgumentParser
import Glibc
import HMMLab

/// `bench sweep`: a grid over run options into one CSV.
struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a grid of configurations (every combination of the --vary values) into one CSV.",
        discussion: """
            --vary OPTION=V1,V2,... varies a run option (e.g. --vary threads=1,2 --vary strategy=unified,fault-then-migrate); \
            --vary STATE=F1,F2,... varies the fraction of a page state of --mix (e.g. --vary swap=0,0.05,0.1,0.2), \
            taking it from the present pages. A value of a list option writes its commas as + \
            (e.g. --vary device-nodes=1+2,2+3 or --vary costs=none,flush+lru). Repeat --vary for more dimensions.
            """)

    @Option(name: .customLong("vary"), help: "OPTION=V1,V2,... or STATE=F1,F2,... (repeatable).")
    var vary: [String] = []

    @OptionGroup var options: RunOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let configs = try configurations(try dimensions())
        for c in configs { try checkMemory(c.config) }
        if let first = configs.first { noteFewReps(first.config, output) }
        var opened: ResultFile?
        let open = { () throws -> ResultFile in
            if let opened { return opened }
            let file = try openResultFile(
                output, strategy: "sweep", header: ResultRow.header(counters: configs[0].config.counters))
            opened = file
            return file
        }
        installInterruptHandler()
        var notes = Set<String>()
        var written = 0
        for (i, c) in configs.enumerated() {
            let (rows, runner, interrupted) = try runConfiguration(
                c.config, file: open, output: output, label: "[\(i + 1)/\(configs.count)] \(c.label) ", notes: &notes)
            let path = opened?.path ?? ""
            written += rows.count
            if !rows.isEmpty {
                if output.format == .text {
                    print("\n" + (output.wide ? "## \(c.label)" : TextBlock.wrap("## \(c.label)", indent: "##   ")))
                }
                printSummary(rows, runner: runner, output: output, path: path)
            }
            if interrupted {
                try finish(opened, .interrupted)
                printError("bench: interrupted: \(written) finished row\(written == 1 ? "" : "s") kept in \(path)")
                throw ExitCode(130)
            }
        }
        try finish(opened, .complete)
    }
}

extension Sweep {
    /// The `--vary` dimensions, each a run option or a page state with its values, checked.
    func dimensions() throws -> [(key: String, values: [String])] {
        guard !vary.isEmpty else {
            throw badInput("sweep needs at least one --vary OPTION=V1,V2,... (or STATE=F1,F2,...)")
        }
        var dimensions: [(key: String, values: [String])] = []
        let states = PageKind.allCases.map(\.name)
        let varyable = RunConfig.optionNames.filter { $0 != "counters" }
        for spec in vary {
            guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex else {
                throw badInput(
                    "--vary '\(spec)' is not OPTION=V1,V2,...; use e.g. --vary swap=0,0.1 or --vary threads=1,2")
            }
            let key = String(spec[..<eq])
            // `+` stands for the comma inside one value of a list option (device-nodes=1+2,2+3).
            let values = spec[spec.index(after: eq)...].split(separator: ",").map {
                String($0.replacing("+", with: ","))
            }
            guard varyable.contains(key) || states.contains(key) else {
                throw badInput(
                    "--vary '\(key)' is neither a run option nor a page state; use one of \(varyable.joined(separator: ", ")) or \(states.joined(separator: ", "))"
                )
            }
            guard !values.isEmpty else { throw badInput("--vary '\(spec)' gives no values") }
            guard !dimensions.contains(where: { $0.key == key }) else {
                throw badInput("--vary '\(key)' is given twice")
            }
            dimensions.append((key, values))
        }
        return dimensions
    }

    /// Every combination of the dimensions as a run configuration and its label, validated before
    /// anything runs.
    func configurations(_ dimensions: [(key: String, values: [String])]) throws -> [(label: String, config: RunConfig)]
    {
        var grid: [[(String, String)]] = [[]]
        for d in dimensions { grid = grid.flatMap { combo in d.values.map { combo + [(d.key, $0)] } } }
        var baseMix = Mix.allPresent
        if let text = options.given["mix"] {
            do throws(ConfigError) {
                baseMix = try Mix.parse(text)
            } catch {
                throw badInput(error.message)
            }
        }
        return try grid.map { combo in
            let overrides = try Self.overrides(combo, baseMix: baseMix)
            return (combo.map { "\($0.0)=\($0.1)" }.joined(separator: " "), try options.config(overriding: overrides))
        }
    }

    /// One combination as run-option overrides: a page state's fraction is taken from the present
    /// pages of `baseMix`.
    static func overrides(_ combo: [(String, String)], baseMix: Mix) throws -> [String: String] {
        var overrides: [String: String] = [:]
        var mix = baseMix
        for (key, value) in combo {
            guard let kind = PageKind(name: key) else {
                overrides[key] = value
                continue
            }
            guard let f = Double(value), f >= 0, f <= 1 else {
                throw badInput("--vary \(key): '\(value)' is not a fraction from 0 to 1")
            }
            let present = mix[.present] - (f - mix[kind])
            guard present >= -1e-9 else {
                throw badInput(
                    "--vary \(key)=\(value) takes more than the \(mix[.present]) of present pages the mix has")
            }
            mix[.present] = max(0, present)
            mix[kind] = f
            overrides["mix"] = mix.description
        }
        return overrides
    }
}

/// `bench thp-table`: hmm-tests' `benchmark_thp_migration` table.
struct ThpTableCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "thp-table",
        abstract: "hmm-tests' benchmark_thp_migration: THP against 4 KiB, both directions, 512 KiB to 256 MiB.")

    @Option(help: "Timed iterations per size (after one warm-up round trip).")
    var iterations: Int = 5
    @Option(help: "Largest buffer size in MiB (the test goes to 256).")
    var maxMib: Int = 256
    @Option(help: "Copy worker threads.")
    var threads: Int = 1
    @Option(help: "auto, hugetlb, thp or 4k.")
    var backing: String = "auto"
    @Option(help: "Output format: text or csv.")
    var format: OutputFormat = .text
    @Flag(help: "No progress on stderr.")
    var quiet = false
    @Option(
        help: "model (default) or kernel: the running kernel's test driver, /dev/hmm_dmirror0, as hmm-tests runs it.")
    var engine: String?

    func run() throws {
        let (kernel, request) = try checkedOptions()
        let sizes = ThpTable.sizes.filter { $0 <= maxMib << 20 }
        var config = RunConfig()
        config.pages = (sizes.max() ?? 0) / PageSize.bytes
        try checkMemory(config)
        let showProgress = !quiet && isatty(2) != 0
        let table: ThpTable
        let progress = { (size: Int, thp: Bool) in
            if showProgress {
                printError(
                    "\r\u{1B}[Kthp-table: \(Region.formatBytes(size)) \(thp ? "with" : "without") THP", newline: false)
            }
        }
        do {
            table =
                kernel
                ? try ThpTable.measureKernel(sizes: sizes, iterations: iterations, progress: progress)
                : try ThpTable.measure(
                    sizes: sizes, iterations: iterations, backing: request, threads: threads, progress: progress)
        } catch {
            throw failure(error.description)
        }
        if showProgress { printError("\r\u{1B}[K", newline: false) }
        switch format {
        case .text:
            printText(table, kernel: kernel)
        case .csv:
            for line in ResultFile.metadataLines(command: CommandLine.arguments, version: BuildInfo.versionLine) {
                print(line)
            }
            print(table.csv, terminator: "")
        }
    }

    /// The options checked: whether the kernel engine runs, and the backing asked.
    func checkedOptions() throws -> (kernel: Bool, backing: BackingRequest) {
        let kernel = try Engine.parse(engine) == .kernel
        if kernel {
            if threads != 1 {
                throw badInput("--engine kernel: --threads \(threads): test_hmm copies on the ioctl's thread; use 1")
            }
            if backing != "auto" {
                throw badInput(
                    "--engine kernel: --backing \(backing): the kernel engine's buffer is an anonymous mapping; leave --backing out"
                )
            }
            if !DmirrorDevice.present {
                throw badInput(
                    "--engine kernel: /dev/hmm_dmirror0 is not there: this kernel has no test_hmm module loaded (CONFIG_TEST_HMM); scripts/kernel-vm boots one that has"
                )
            }
        }
        guard (1...1000).contains(iterations) else {
            throw badInput("--iterations \(iterations) is not allowed; use 1 to 1000")
        }
        let mibSizes = ThpTable.sizes.filter { $0 >= 1 << 20 }.map { $0 >> 20 }
        guard mibSizes.contains(maxMib) else {
            throw badInput(
                "--max-mib \(maxMib) is not one of the table's sizes; use \(mibSizes.map(String.init).joined(separator: ", ")) (the largest size measured)"
            )
        }
        guard (1...256).contains(threads) else { throw badInput("--threads \(threads) is not allowed; use 1 to 256") }
        return (kernel, try parseBacking(backing))
    }

    /// The table as text, after comment lines naming the tool, the machine, the backing and the
    /// iterations.
    func printText(_ table: ThpTable, kernel: Bool) {
        let m = RunMetadata.read(systemNode: 0, deviceNode: 0, backing: "")
        print(
            "# hmm-lab \(m.toolVersion) thp-table (benchmark_thp_migration)\(kernel ? ", --engine kernel (/dev/hmm_dmirror0)" : "")"
        )
        print("# \(m.host): \(m.cpuModel), kernel \(m.kernel)")
        print(
            "# " + (kernel ? "anonymous mapping" : "backing \(table.backing) (asked \(backing))")
                + ", THP \(m.thpMode), \(threads) copy thread\(threads == 1 ? "" : "s")")
        print("# \(iterations) iterations per size after a warm-up: their mean, ± half their range")
        print(table.text)
    }
}
