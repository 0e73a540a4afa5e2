import Foundation
import Glibc
import Testing

@Suite("bench stress: bad input, summary, interruption (end to end)")
struct StressCommandTests {
    /// Each bad value: the option, the value, and a word the one-line message must contain.
    static let badValues: [(String, String, String)] = [
        ("--seconds", "-1", "--seconds '-1'"), ("--seconds", "0", "--seconds '0'"), ("--seconds", "abc", "--seconds 'abc'"),
        ("--seconds", "nan", "--seconds 'nan'"), ("--seed", "-5", "--seed '-5'"), ("--seed", "12x", "--seed '12x'"), ("--seed", "0xZZ", "--seed '0xZZ'"),
        ("--pages", "1000", "multiple of 512"), ("--pages", "0", "--pages '0'"), ("--mutators", "-1", "--mutators"), ("--mutators", "x", "--mutators"),
        ("--max-ops", "0", "--max-ops"), ("--backing", "huge", "huge"), ("--inject", "lock=0.1", "lock"), ("--inject", "cpufault=2", "cpufault"),
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

    @Test("a short run prints ops by kind, injections by point, seconds, no violation and the seed; exit 0")
    func shortRun() throws {
        let r = try BenchProcess.run(["stress", "--seconds", "2", "--seed", "0x2a", "--pages", "512", "--backing", "4k", "--quiet"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("violations: 0"))
        #expect(r.stdout.contains("seed: 42"))
        for word in ["unified", "fault-then-migrate", "migrate-then-fault", "swap-out", "mremap", "trylock", "cpufault", "device-alloc", "seconds: "] {
            #expect(r.stdout.contains(word), "\(word) in \(r.stdout)")
        }
        let ops = r.stdout.split(separator: "\n").first { $0.hasPrefix("operations: ") }
        let count = ops.flatMap { Int($0.dropFirst("operations: ".count).split(separator: " ")[0]) } ?? 0
        #expect(count > 0, "\(r.stdout)")
    }

    @Test("SIGINT stops it cleanly with the summary: status 130")
    func interrupted() throws {
        let (process, stdout, stderr) = try BenchProcess.start(["stress", "--seconds", "600", "--pages", "512", "--backing", "4k", "--quiet"])
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        usleep(2_500_000)
        kill(process.processIdentifier, SIGINT)
        let out = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130, "\(out)\n\(err)")
        #expect(out.contains("violations: 0") && out.contains("seed: 1"), "\(out)")
        #expect(err.contains("interrupted"), "\(err)")
    }
}
