import Foundation
import Glibc
@testable import HMMLab
import Testing

/// Lines wider than 80 display columns in `text`, with their widths (``TextBlock/columns(_:)``).
func linesOver80(_ text: String) -> [String] {
    text.split(separator: "\n", omittingEmptySubsequences: false).filter { TextBlock.columns($0) > TextBlock.width }.map
    { "\(TextBlock.columns($0)): \($0)" }
}

/// Each subcommand's text output on a small run fits 80 columns (`bench topology` is checked where
/// its per-node layout is made).
@Suite("text output fits 80 columns, per subcommand")
struct OutputWidthTests {
    static func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)").path
    }

    /// Runs `bench arguments…`, expects exit 0 and returns stdout.
    static func output(_ arguments: [String]) throws -> String {
        let r = try BenchProcess.run(arguments)
        #expect(r.status == 0, "\(arguments): status \(r.status), \(r.stderr)")
        return r.stdout
    }

    @Test("run: the header, the summary with each op's 95% interval, and the notes; --wide is wider")
    func run() throws {
        let out = BenchProcess.temporaryPath("width-run.csv")
        defer { unlink(out) }
        let args = [
            "--strategy", "all", "--pages", "1024", "--reps", "2", "--warmup", "0", "--direction", "round-trip",
            "--out", out, "--quiet",
        ]
        let text = try Self.output(args)
        #expect(linesOver80(text).isEmpty, "\(linesOver80(text))")
        #expect(text.contains("op p50 ±95%") && text.contains("to-system") && text.contains("# rows: "), "\(text)")
        let wide = try Self.output(args + ["--wide"])
        #expect(!linesOver80(wide).isEmpty, "--wide keeps the one-line layout: \(wide)")
    }

    @Test("sweep: each configuration's heading, header and summary")
    func sweep() throws {
        let out = BenchProcess.temporaryPath("width-sweep.csv")
        defer { unlink(out) }
        let text = try Self.output([
            "sweep", "--vary", "threads=1,2", "--vary", "swap=0,0.1", "--pages", "512", "--reps", "1", "--warmup", "0",
            "--out", out, "--quiet",
        ])
        #expect(linesOver80(text).isEmpty, "\(linesOver80(text))")
        #expect(text.components(separatedBy: "## ").count == 5, "four configurations: \(text)")
    }

    @Test("calibrate: every figure in aligned columns, its detail under it")
    func calibrate() throws {
        let text = try Self.output(["calibrate", "--frames", "1024", "--reps", "1"])
        #expect(linesOver80(text).isEmpty, "\(linesOver80(text))")
        let figures = text.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.hasPrefix(" ") }
        #expect(figures.count > 10, "\(text)")
        // The value column ends at the same place on every figure's line.
        let ends = Set(figures.map(Self.endOfSecondWord))
        #expect(ends.count == 1, "values aligned: \(figures)")
    }

    /// The column after the second word of `line`.
    static func endOfSecondWord(_ line: Substring) -> Int {
        var words = 0
        var inWord = false
        for (i, ch) in line.unicodeScalars.enumerated() {
            if ch != " " {
                inWord = true
            } else if inWord {
                words += 1
                inWord = false
                if words == 2 { return i }
            }
        }
        return -1
    }

    @Test("thp-table")
    func thpTable() throws {
        let text = try Self.output(["thp-table", "--max-mib", "1", "--iterations", "1", "--quiet"])
        #expect(linesOver80(text).isEmpty, "\(linesOver80(text))")
    }

    @Test("stress")
    func stress() throws {
        let text = try Self.output([
            "stress", "--seconds", "1", "--pages", "512", "--max-ops", "20", "--seed", "3", "--quiet",
        ])
        #expect(linesOver80(text).isEmpty, "\(linesOver80(text))")
        #expect(text.contains("violations: 0"))
    }

    @Test("compare, and compare --by strategy")
    func compare() throws {
        let text = try Self.output(["compare", Self.fixture("present-a.csv"), Self.fixture("present-b.csv")])
        #expect(linesOver80(text).isEmpty, "\(linesOver80(text))")
        let by = try Self.output(["compare", "--by", "strategy", Self.fixture("none-all.csv")])
        #expect(linesOver80(by).isEmpty, "\(linesOver80(by))")
    }

    @Test("report, of two files and of one")
    func report() throws {
        let two = try Self.output(["report", Self.fixture("present-a.csv"), Self.fixture("present-b.csv")])
        #expect(linesOver80(two).isEmpty, "\(linesOver80(two))")
        let one = try Self.output(["report", Self.fixture("none-all.csv")])
        #expect(linesOver80(one).isEmpty, "\(linesOver80(one))")
    }

    @Test("a line is wrapped at spaces with its spacing kept; a word longer than the width is cut; µ is one column")
    func wrap() {
        let line = "# " + String(repeating: "word  ", count: 20) + "µs"
        let wrapped = TextBlock.wrap(line, indent: "#   ")
        #expect(linesOver80(wrapped).isEmpty && wrapped.contains("word  word") && wrapped.hasSuffix("µs"))
        let path = "# rows: /" + String(repeating: "a", count: 120)
        #expect(linesOver80(TextBlock.wrap(path, indent: "#   ")).isEmpty)
        #expect(TextBlock.wrap(String(repeating: "µ", count: 80)) == String(repeating: "µ", count: 80))
    }
}
