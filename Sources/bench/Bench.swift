import ArgumentParser
import Glibc
import HMMLab

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "hmm-lab: measure the kernel's HMM device-memory paths on real memory.",
        version: BuildInfo.versionLine,
        subcommands: [
            Run.self, Sweep.self, ThpTableCommand.self, CompareCommand.self, ReportCommand.self, Topology.self,
            Calibrate.self, StressCommand.self,
        ],
        defaultSubcommand: Run.self)

    /// Parses and runs, printing any error as one line (no usage dump) with ArgumentParser's exit code
    /// (64 for bad input).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            let message = self.message(for: error)
            if !message.isEmpty { printError("bench: \(message)") }
            Glibc.exit(code.rawValue)
        }
    }
}
