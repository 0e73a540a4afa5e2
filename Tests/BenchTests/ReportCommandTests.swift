import Foundation
import Glibc
@testable import HMMLab
import Testing

@Suite("bench report: a review-mail block from result CSVs")
struct ReportCommandTests {
    static func fixture(_ name: String) -> String { OutputWidthTests.fixture(name) }

    @Test("two recorded CSVs: every section, the comparison table, commands rebuilt from the rows, 80 columns")
    func twoFixtures() throws {
        let r = try BenchProcess.run(["report", Self.fixture("present-a.csv"), Self.fixture("present-b.csv")])
        #expect(r.status == 0, "\(r.stderr)")
        for section in ["Commands", "Machine", "Floors", "Comparison: ", "Significant changes", "Reproduce"] {
            #expect(r.stdout.contains("\n" + section) || r.stdout.hasPrefix(section), "section \(section): \(r.stdout)")
        }
        #expect(r.stdout.contains("records no command") && r.stdout.contains("bench --strategy all --pages 8192"))
        #expect(r.stdout.contains("host vm: ") && r.stdout.contains("memcpy between the pools"))
        #expect(r.stdout.contains("op p50") && r.stdout.contains("Mann-Whitney"), "the compare table: \(r.stdout)")
        #expect(linesOver80(r.stdout).isEmpty, "\(linesOver80(r.stdout))")
    }

    @Test("one CSV: its summary instead of a comparison")
    func oneFixture() throws {
        let r = try BenchProcess.run(["report", Self.fixture("none-all.csv")])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(
            r.stdout.contains("Summary: ") && r.stdout.contains("op p50 ±95%")
                && !r.stdout.contains("Significant changes"), "\(r.stdout)")
    }

    @Test("--format markdown: headings, a code block of commands, the compare tables")
    func markdown() throws {
        let r = try BenchProcess.run([
            "report", Self.fixture("present-a.csv"), Self.fixture("present-b.csv"), "--format", "markdown",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(
            r.stdout.contains("### Commands") && r.stdout.contains("```sh")
                && r.stdout.contains("| metric | base | new |"), "\(r.stdout)")
    }

    @Test("two tiny runs with one option changed: the recorded commands, the change named, rows matched without it")
    func recordedRuns() throws {
        let a = BenchProcess.temporaryPath("report-a.csv")
        let b = BenchProcess.temporaryPath("report-b.csv")
        defer { unlink(a); unlink(b) }
        let common = ["--strategy", "unified", "--pages", "512", "--reps", "2", "--warmup", "0", "--quiet"]
        #expect(try BenchProcess.run(common + ["--out", a]).status == 0)
        #expect(try BenchProcess.run(common + ["--costs", "none", "--out", b]).status == 0)
        let r = try BenchProcess.run(["report", a, b])
        #expect(r.status == 0, "\(r.stderr)")
        let unbroken = r.stdout.replacing(" \\\n      ", with: " ")
        #expect(
            unbroken.contains("bench --strategy unified --pages 512 --reps 2 --warmup 0 --quiet --out \(a)"),
            "the command as typed: \(r.stdout)")
        #expect(
            r.stdout.contains("changed: costs flush,lru,driver -> none") && r.stdout.contains("strategy=unified"),
            "\(r.stdout)")
        #expect(unbroken.contains("bench report \(a) \(b)"), "\(r.stdout)")
        #expect(r.stdout.contains("no change can be significant"), "2+2 reps: the note says so: \(r.stdout)")
        #expect(linesOver80(r.stdout).isEmpty, "\(linesOver80(r.stdout))")
    }

    @Test(
        "bad input: one line, exit 64",
        arguments: [
            (["report"], "one or two"), (["report", "/no/such.csv"], "/no/such.csv"),
            (["report", "a", "b", "c"], "got 3"),
            (["report", "--format", "html", "x.csv"], "html"),
        ])
    func badInput(_ bad: ([String], String)) throws {
        let r = try BenchProcess.run(bad.0)
        #expect(
            r.status == 64 && r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(bad.1),
            "\(bad.0): \(r.status) \(r.stderr)")
    }

    @Test(
        "a file that is not a result CSV, runs from another machine, and runs with no configuration in common: one line, exit 64"
    )
    func mismatched() throws {
        let text = try String(contentsOfFile: Self.fixture("present-b.csv"), encoding: .utf8)
        let notCSV = BenchProcess.temporaryPath("not.csv")
        let otherHost = BenchProcess.temporaryPath("host.csv")
        let otherStrategy = BenchProcess.temporaryPath("strategy.csv")
        defer { for p in [notCSV, otherHost, otherStrategy] { unlink(p) } }
        try "hello\n".write(toFile: notCSV, atomically: true, encoding: .utf8)
        try text.replacingOccurrences(of: ",vm,", with: ",elsewhere,").write(
            toFile: otherHost, atomically: true, encoding: .utf8)
        let unifiedOnly = text.split(separator: "\n").filter {
            !$0.contains(",fault-then-migrate,") && !$0.contains(",migrate-then-fault,")
        }
        try (unifiedOnly.joined(separator: "\n") + "\n").write(toFile: otherStrategy, atomically: true, encoding: .utf8)
        let fixtureA = Self.fixture("present-a.csv")
        let onlyFaultThenMigrate = BenchProcess.temporaryPath("ftm.csv")
        defer { unlink(onlyFaultThenMigrate) }
        let a = try String(contentsOfFile: fixtureA, encoding: .utf8).split(separator: "\n").filter {
            !$0.contains(",unified,") && !$0.contains(",migrate-then-fault,")
        }
        try (a.joined(separator: "\n") + "\n").write(toFile: onlyFaultThenMigrate, atomically: true, encoding: .utf8)
        for (files, word) in [
            ([fixtureA, notCSV], "missing"), ([fixtureA, otherHost], "host"),
            ([onlyFaultThenMigrate, otherStrategy], "share no configuration"),
        ] {
            let r = try BenchProcess.run(["report"] + files)
            #expect(
                r.status == 64 && r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(word),
                "\(files): \(r.status) \(r.stderr)")
        }
    }
}
