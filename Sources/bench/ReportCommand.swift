import ArgumentParser
import HMMLab

/// `bench report`: one or two result CSVs as a block to paste into a review mail.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "A review-mail block (80 columns) from one result CSV, or from two compared (BASE NEW).",
        discussion: """
            The commands that wrote the files, the machine, the floors, the comparison table of bench compare \
            (or, with one file, the run's summary), one sentence per significant change, and the commands that \
            reproduce it. Options that differ between BASE and NEW (one value in each file) are the change \
            under test: rows are matched without them.
            """)

    @Argument(help: "BASE.csv, or BASE.csv NEW.csv (NEW compared with BASE, as bench compare takes them).")
    var files: [String] = []

    @Option(help: "text (fits 80 columns) or markdown.")
    var format: ReportFormat = .text

    @OptionGroup var checks: InputChecks

    func run() throws {
        guard (1...2).contains(files.count) else {
            throw badInput("report takes one or two result CSV files (BASE [NEW]), got \(files.count)")
        }
        let tables = try files.map(loadResultTable)
        let invocation =
            (["bench", "report"] + files.map(ResultFile.shellQuoted)
            + (format == .markdown ? ["--format", "markdown"] : [])).joined(separator: " ")
        let report = Report(base: tables[0], new: tables.count == 2 ? tables[1] : nil, reportCommand: invocation)
        if let comparison = report.comparison { try check(comparison) }
        checks.warnUnfinished(tables, command: "report")
        print(format == .markdown ? report.markdown : report.text, terminator: "")
    }

    /// Refuses two files that cannot be compared: produced differently (without `--allow-mismatch`),
    /// or with no configuration in common.
    func check(_ comparison: Compare) throws {
        try checks.checkAlike(comparison, files, command: "report", verb: "report")
        if comparison.blocks.isEmpty {
            throw badInput(
                "\(files[0]) and \(files[1]) share no configuration (strategy, direction and the options other than the one changed); report runs of the same command with one option changed"
            )
        }
    }
}

enum ReportFormat: String, ExpressibleByArgument, CaseIterable {
    case text, markdown
}
