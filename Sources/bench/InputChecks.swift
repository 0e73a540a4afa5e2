import ArgumentParser
import HMMLab

/// The checks `bench compare` and `bench report` make on the result files they read, and the flags
/// that relax them.
struct InputChecks: ParsableArguments {
    @Flag(name: .customLong("accept-unfinished"), help: "Use a file whose run did not finish without a warning.")
    var acceptUnfinished = false

    @Flag(
        name: .customLong("allow-mismatch"),
        help: "Compare rows whose backing, tool version, host, CPU, kernel or shootdown mechanism differ.")
    var allowMismatch = false

    /// Refuses two files produced differently (backing, version, host, …) unless `--allow-mismatch`,
    /// which turns the refusal into a note; `verb` says what `command` would do with them.
    func checkAlike(_ comparison: Compare, _ files: [String], command: String, verb: String) throws {
        guard !comparison.mismatches.isEmpty else { return }
        let what = comparison.mismatches.joined(separator: "; ")
        guard allowMismatch else {
            throw badInput(
                "\(files[0]) and \(files[1]) were not produced alike (\(what)); use --allow-mismatch to \(verb) them anyway"
            )
        }
        printError("bench \(command): note: the inputs differ in \(what)")
    }

    /// One line for each input whose run did not finish, unless `--accept-unfinished`.
    func warnUnfinished(_ tables: [ResultTable], command: String) {
        guard !acceptUnfinished else { return }
        for table in tables {
            guard let why = table.unfinished else { continue }
            printError(
                "bench \(command): warning: \(table.path): \(why); its rows are those written before it stopped (--accept-unfinished to use it without this warning)"
            )
        }
    }
}
