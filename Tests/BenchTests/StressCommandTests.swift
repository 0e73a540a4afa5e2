import Foundation
import Glibc
import Testing

@Suite("bench stress: bad input, summary, interruption (end to end)")
struct StressCommandTests {
    /// Each bad value: the option, the value, and a word the one-line message must contain.
    static let badValues: [(String, String, String)] = [
        ("--seconds", "-1", "--seconds '-1'"), ("--seconds", "0", "--seconds '0'"),
        ("--seconds", "abc", "--seconds 'abc'"),
        ("--seconds", "nan", "--seconds 'nan'"), ("--seed", "-5", "--seed '-5'"), ("--seed", "12x", "--seed '12x'"),
        ("--seed", "0xZZ", "--seed '0xZZ'"),
        ("--pages", "1000", "multiple of 512"), ("--pages", "0", "--pages '0'"), ("--mutators", "-1", "--mutators"),
        ("--mutators", "x", "--mutators"),
        ("--max-ops", "0", "--max-ops"), ("--backing", "huge", "huge"), ("--inject", "lock=0.1", "lock"),
        ("--inject", "cpufault=2", "cpufault"),
        ("--device-large-fail", "1.5", "--device-large-fail"),
    ]

    @Test("every bad value: one line naming it and what is allowed, exit status 64", arguments: badValues)
    func badInput(_ bad: (String, String, String)) throws {
        let (option, value, word) = bad
        let r = try BenchProcess.run(["stress", "\(option)=\(value)"])
        #expect(r.status == 64, "\(option) \(value): status \(r.status), stderr \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1, "\(option) \(value): one line, got \(r.stderr)")
        #expect(r.stderr.contains(word), "\(option) \(value): the message names it: \(r.stderr)")
        #expect(r.stderr.contains("use ") || r.stderr.contains("from 0 to 1"), "and says what is allowed: \(r.stderr)")
        #expect(r.stdout.isEmpty)
    }

    @Test(
        "a short run prints ops by kind, injections by point, seconds, no violation and the seed; exit 0; --rounds has a line per round"
    )
    func shortRun() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stress-rounds-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/rounds.csv"
        let r = try BenchProcess.run([
            "stress", "--seconds", "2", "--seed", "0x2a", "--pages", "512", "--backing", "4k", "--quiet", "--rounds",
            path,
        ])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("violations: 0"))
        #expect(r.stdout.contains("seed: 42"))
        for word in [
            "unified", "fault-then-migrate", "migrate-then-fault", "swap-out", "mremap", "trylock", "cpufault",
            "device-alloc", "seconds: ",
        ] {
            #expect(r.stdout.contains(word), "\(word) in \(r.stdout)")
        }
        let ops = r.stdout.split(separator: "\n").first { $0.hasPrefix("operations: ") }
        let count = ops.flatMap { Int($0.dropFirst("operations: ".count).split(separator: " ")[0]) } ?? 0
        #expect(count > 0, "\(r.stdout)")
        try Self.checkRounds(path, ops: count, stdout: r.stdout, end: "complete")
    }

    /// The `--rounds` file: the command first, the header, a line per round the summary counts with
    /// the ops adding up to its total, and the end line.
    static func checkRounds(_ path: String, ops: Int, stdout: String, end: String) throws {
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.first?.hasPrefix("# command: bench stress") == true, "\(lines.prefix(3))")
        let header = lines.first { !$0.hasPrefix("#") }
        #expect(header?.hasPrefix("round,ops,total_ops,seconds,") == true)
        let rows = lines.filter { !$0.hasPrefix("#") }.dropFirst().map { $0.split(separator: ",").map(String.init) }
        let rounds = stdout.split(separator: "\n").first { $0.hasPrefix("operations: ") }.flatMap {
            Int($0.split(separator: " ")[3])
        }
        #expect(rows.count == rounds, "\(rows.count) lines for \(rounds ?? -1) rounds")
        #expect(rows.map { Int($0[0]) } == Array(1...max(1, rows.count)), "rounds numbered from 1")
        #expect(
            rows.reduce(0) { $0 + (Int($1[1]) ?? 0) } == ops && rows.last.flatMap { Int($0[2]) } == ops,
            "ops add up to \(ops)")
        #expect(lines.last?.hasPrefix("# end: \(end), \(rows.count) row") == true, "\(lines.last ?? "")")
    }

    @Test("a --rounds file that cannot be written: one line naming it, status 64, before the run")
    func roundsUnwritable() throws {
        let r = try BenchProcess.run(["stress", "--seconds", "600", "--rounds", "/proc/no-such-dir/rounds.csv"])
        #expect(r.status == 64, "\(r.stderr)")
        #expect(
            r.stderr.split(separator: "\n").count == 1
                && r.stderr.contains("--rounds '/proc/no-such-dir/rounds.csv' cannot be written"), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
    }

    @Test("SIGINT stops it cleanly with the summary: status 130")
    func interrupted() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("stress-interrupted-\(getpid()).csv")
            .path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (process, stdout, stderr) = try BenchProcess.start([
            "stress", "--seconds", "600", "--pages", "512", "--backing", "4k", "--quiet", "--rounds", path,
        ])
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        usleep(2_500_000)
        kill(process.processIdentifier, SIGINT)
        let out = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130, "\(out)\n\(err)")
        #expect(out.contains("violations: 0") && out.contains("seed: 1"), "\(out)")
        #expect(err.contains("interrupted"), "\(err)")
        let ops =
            out.split(separator: "\n").first { $0.hasPrefix("operations: ") }.flatMap {
                Int($0.split(separator: " ")[1])
            } ?? -1
        try Self.checkRounds(path, ops: ops, stdout: out, end: "interrupted")
    }
}
