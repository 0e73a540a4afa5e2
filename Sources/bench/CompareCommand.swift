import ArgumentParser
import HMMLab

/// `bench compare`: is a change real, and how big (benchstat for result CSVs).
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare two result CSVs (BASE NEW), or the strategies within one (--by strategy FILE).",
        discussion: """
            For each configuration in both files and each metric (op p50 and p99, throughput, walks, walk restarts, \
            faults, TLB flushes, bytes copied, every counter in both): the median of each side with its 95% confidence \
            interval, the change, and a two-sided Mann-Whitney U test; a change with p > 0.05 prints ~.
            """)

    @Argument(help: "BASE.csv NEW.csv, or one file with --by strategy.")
    var files: [String] = []

    @Option(help: "Compare within one file by this column (only 'strategy').")
    var by: String?

    @Option(name: .customLong("base"), help: "With --by strategy: the strategy the others are compared with.")
    var baseStrategy: String = "fault-then-migrate"

    @Option(help: "text (fits 80 columns), markdown or csv.")
    var format: CompareFormat = .text

    @OptionGroup var checks: InputChecks

    func run() throws {
        let comparison: Compare
        if let by {
            guard by == "strategy" else { throw badInput("--by '\(by)' is not allowed; use --by strategy") }
            guard files.count == 1 else { throw badInput("--by strategy takes one CSV file, got \(files.count)") }
            let table = try load(files[0])
            guard table.rows.contains(where: { $0.fields["strategy"] == baseStrategy }) else {
                let present = Set(table.rows.compactMap { $0.fields["strategy"] }).sorted().joined(separator: ", ")
                throw badInput("--base '\(baseStrategy)' has no rows in \(files[0]); it has \(present)")
            }
            comparison = Compare(byStrategy: table, baseStrategy: baseStrategy)
            checks.warnUnfinished([table], command: "compare")
        } else {
            guard files.count == 2 else {
                throw badInput("compare takes two CSV files (BASE NEW), got \(files.count); or one with --by strategy")
            }
            let (base, new) = (try load(files[0]), try load(files[1]))
            comparison = Compare(base: base, new: new)
            try checks.checkAlike(comparison, files, command: "compare", verb: "compare")
            checks.warnUnfinished([base, new], command: "compare")
        }
        switch format {
        case .text: print(comparison.text, terminator: "")
        case .markdown: print(comparison.markdown, terminator: "")
        case .csv: print(comparison.csv, terminator: "")
        }
        if comparison.blocks.isEmpty { throw failure("no configuration is in both inputs") }
    }

    func load(_ path: String) throws -> ResultTable { try loadResultTable(path) }
}

/// A result CSV, or bad input naming the file, line and column that is wrong.
func loadResultTable(_ path: String) throws -> ResultTable {
    do {
        return try ResultTable.load(path)
    } catch {
        throw badInput(error.description)
    }
}

/// One line for each input whose run did not finish, unless `accept`.
enum CompareFormat: String, ExpressibleByArgument, CaseIterable {
    case text, markdown, csv
}
