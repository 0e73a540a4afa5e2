import Foundation
import Glibc
@testable import HMMLab
import Testing

@Suite("bench compare on recorded runs")
struct CompareTests {
    @Test("an infinite value among a configuration's repetitions gives a median without a ± spread, not a crash")
    func infiniteValue() {
        #expect(Compare.intervalPercent([1, 2, 3, .infinity]) == nil)
        #expect(!Compare.withInterval([1000, 2000, .infinity], .nanoseconds).contains("±"))
        #expect(Compare.withInterval([1000, 1000, 1000], .nanoseconds).contains("±"))
    }

    /// Recorded with `bench --strategy all --pages 8192 --reps 6` (two runs, and one with half the pages untouched).
    static func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)").path
    }

    @Test("two runs of the same configuration: ~ for the time metrics, nothing changes in the counts")
    func sameConfiguration() throws {
        let c = Compare(
            base: try ResultTable.load(Self.fixture("present-a.csv")),
            new: try ResultTable.load(Self.fixture("present-b.csv")))
        #expect(c.blocks.count == 3 && c.onlyInBase.isEmpty && c.onlyInNew.isEmpty)
        for block in c.blocks {
            for line in block.lines
            where ["op p50", "op p99", "throughput", "walks", "faults", "bytes copied"].contains(line.metric) {
                #expect(!line.significant, "\(block.configuration.first!.1) \(line.metric): p \(line.p)")
            }
        }
        #expect(c.text.split(separator: "\n").allSatisfy { $0.count <= 80 }, "fits a mail")
        #expect(c.text.contains("~"))
    }

    @Test("unified against fault-then-migrate over a mix with untouched pages: half the walks, significant")
    func byStrategy() throws {
        let c = Compare(
            byStrategy: try ResultTable.load(Self.fixture("none-all.csv")), baseStrategy: "fault-then-migrate")
        let unified = try #require(c.blocks.first { $0.newLabel == "unified" })
        let walks = try #require(unified.lines.first { $0.metric == "walks" })
        #expect(walks.significant && walks.deltaPercent == -50)
        #expect(c.text.contains("-50.0%"))
        let csv = try CSV.parse(c.csv)
        #expect(csv.first?.contains("p_value") == true && csv.count == 1 + c.blocks.reduce(0) { $0 + $1.lines.count })
        #expect(c.markdown.contains("| walks |"))
    }

    @Test("device_access: a file without it ran write; the old column name fault_request reads as device_access")
    func deviceAccessColumn() throws {
        let text = try String(contentsOfFile: Self.fixture("present-b.csv"), encoding: .utf8)
        func withColumn(_ name: String, _ value: String) throws -> ResultTable {
            let lines = text.split(separator: "\n").enumerated().map {
                $0.offset == 0 ? "\($0.element),\(name)" : "\($0.element),\(value)"
            }
            let path = BenchProcess.temporaryPath("\(name)-\(value).csv")
            try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
            defer { unlink(path) }
            return try ResultTable.load(path)
        }
        let base = try ResultTable.load(Self.fixture("present-a.csv"))
        let old = try withColumn("fault_request", "write")
        #expect(old.header.contains("device_access") && !old.header.contains("fault_request"))
        let same = Compare(base: base, new: old)
        #expect(same.blocks.count == 3 && same.onlyInBase.isEmpty && same.onlyInNew.isEmpty)
        let read = Compare(base: base, new: try withColumn("device_access", "read"))
        #expect(
            read.blocks.isEmpty && read.onlyInBase.count == 3 && read.onlyInNew.count == 3,
            "read runs are another configuration")
    }

    /// `present-b.csv` with `column` set to `value` in every row, written to a temporary file.
    static func altered(_ column: String, _ value: String, keepRows: Int? = nil) throws -> String {
        let records = try CSV.parse(String(contentsOfFile: fixture("present-b.csv"), encoding: .utf8))
        let i = try #require(records[0].firstIndex(of: column))
        var rows = Array(records.dropFirst())
        if let keepRows { rows = Array(rows.prefix(keepRows)) }
        let text =
            ([records[0]]
            + rows.map { r in
                var r = r; r[i] = value; return r
            }).map(CSV.line).joined()
        let path = BenchProcess.temporaryPath("\(column)-\(value).csv")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test(
        "rows made with another backing, build or machine are refused (exit 64, the differing columns named) unless --allow-mismatch",
        arguments: [("backing", "thp"), ("tool_version", "9.9.9"), ("host", "elsewhere"), ("kernel", "7.2.13")])
    func mismatchRefused(_ change: (String, String)) throws {
        let other = try Self.altered(change.0, change.1)
        defer { unlink(other) }
        let refused = try BenchProcess.run(["compare", Self.fixture("present-a.csv"), other])
        #expect(refused.status == 64 && refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
        #expect(
            refused.stderr.contains(change.0) && refused.stderr.contains(change.1)
                && refused.stderr.contains("--allow-mismatch"), "\(refused.stderr)")
        #expect(refused.stdout.isEmpty)
        let allowed = try BenchProcess.run(["compare", "--allow-mismatch", Self.fixture("present-a.csv"), other])
        #expect(
            allowed.status == 0 && allowed.stderr.contains(change.0) && allowed.stdout.contains("op p50"),
            "\(allowed.stderr)")
    }

    @Test(
        "a file without its completion record (a run that did not finish) is compared with a one-line warning, none with --accept-unfinished; older files have none to check"
    )
    func unfinishedFileWarned() throws {
        let cut = try Self.altered("tool_version", "0.6.0")
        defer { unlink(cut) }
        let warned = try BenchProcess.run(["compare", "--allow-mismatch", Self.fixture("present-a.csv"), cut])
        #expect(warned.status == 0 && warned.stderr.contains("\(cut): no completion record"), "\(warned.stderr)")
        #expect(!warned.stderr.contains("present-a.csv:"), "a file from before completion records is not warned about")
        let accepted = try BenchProcess.run([
            "compare", "--allow-mismatch", "--accept-unfinished", Self.fixture("present-a.csv"), cut,
        ])
        #expect(accepted.status == 0 && !accepted.stderr.contains("completion"), "\(accepted.stderr)")
        let rows = try ResultTable.load(cut).rows.count
        let handle = try #require(FileHandle(forWritingAtPath: cut))
        handle.seekToEndOfFile()
        handle.write(Data("# end: complete, \(rows) rows\n".utf8))
        handle.closeFile()
        #expect(try ResultTable.load(cut).completion == .complete)
        let finished = try BenchProcess.run(["compare", "--allow-mismatch", Self.fixture("present-a.csv"), cut])
        #expect(finished.status == 0 && !finished.stderr.contains("completion"), "\(finished.stderr)")
    }

    @Test(
        "the change is always shown, with ~ beside it when not significant; with 3+3 samples compare says no change can be significant and names --reps 4"
    )
    func significanceShown() throws {
        #expect(Compare.minimumRepsForSignificance == 4)
        #expect(abs(Compare.smallestP(3, 3) - 0.1) < 1e-12 && abs(Compare.smallestP(4, 4) - 2.0 / 70) < 1e-12)
        let three = try Self.altered("tool_version", "0.5.0", keepRows: 9)  // 3 repetitions of each strategy
        defer { unlink(three) }
        let c = Compare(base: try ResultTable.load(three), new: try ResultTable.load(three))
        #expect(c.text.contains("0.00% ~"), "an unchanged metric shows its 0% change, not significant: \(c.text)")
        #expect(
            c.text.contains("with 3+3 samples no change can be significant") && c.text.contains("--reps 4"), "\(c.text)"
        )
        #expect(c.text.split(separator: "\n").allSatisfy { $0.count <= 80 })
        let six = Compare(
            base: try ResultTable.load(Self.fixture("present-a.csv")),
            new: try ResultTable.load(Self.fixture("present-b.csv")))
        #expect(!six.text.contains("no change can be significant"))
        let run = try BenchProcess.run([
            "--pages", "512", "--reps", "3", "--warmup", "0", "--counters", "none", "--out",
            BenchProcess.temporaryPath("reps3.csv"),
        ])
        #expect(
            run.status == 0 && run.stderr.contains("--reps 3: compare cannot call a change significant"),
            "\(run.stderr)")
    }

    @Test("a file from before the way back was named to-system reads its round-trip rows as to-system")
    func roundTripRenamed() throws {
        let old = try Self.altered("direction", "round-trip")
        defer { unlink(old) }
        #expect(try ResultTable.load(old).rows.allSatisfy { $0.fields["direction"] == "to-system" })
    }

    @Test("one repetition a side prints no spread: (1 rep), not ±0.0%")
    func oneRepetition() throws {
        let one = try Self.altered("rep", "1", keepRows: 3)  // one row per strategy
        defer { unlink(one) }
        let c = Compare(base: try ResultTable.load(one), new: try ResultTable.load(one))
        #expect(c.blocks.count == 3 && c.mismatches.isEmpty)
        #expect(!c.text.contains("±0.0%") && c.text.contains("(1 rep)"), "\(c.text)")
    }

    @Test("bad CSVs: one line naming the file, the line and the column; exit 64")
    func badFiles() throws {
        let good = try String(contentsOfFile: Self.fixture("present-a.csv"), encoding: .utf8)
        let lines = good.split(separator: "\n", omittingEmptySubsequences: false)
        let header = String(lines[0])
        let walksColumn = header.split(separator: ",").firstIndex(of: "walks")!
        var nonNumeric = lines.map(String.init)
        var row = try CSV.parse(nonNumeric[2])[0]
        row[walksColumn] = "lots"
        nonNumeric[2] = String(CSV.line(row).dropLast())
        func withWalks(_ value: String) -> String {
            var l = lines.map(String.init)
            var r = try! CSV.parse(l[2])[0]
            r[walksColumn] = value
            l[2] = String(CSV.line(r).dropLast())
            return l.joined(separator: "\n")
        }
        let cases: [(String, String, String)] = [
            (
                "duplicate",
                lines.enumerated().map {
                    $0.offset == 0
                        ? String($0.element).replacingOccurrences(of: ",ptes_visited,", with: ",walks,")
                        : String($0.element)
                }.joined(separator: "\n"), "'walks' appears twice"
            ),
            ("nan", withWalks("nan"), "line 3 column 'walks': 'nan'"),
            ("inf", withWalks("inf"), "line 3 column 'walks': 'inf'"),
            ("negative", withWalks("-3"), "line 3 column 'walks': '-3'"),
            ("truncated", lines.prefix(3).joined(separator: "\n") + "\n" + String(lines[3].prefix(40)), "line 4"),
            (
                "missing",
                lines.map { String($0.replacingOccurrences(of: ",walks,", with: ",wlks,")) }.joined(separator: "\n"),
                "'walks' is missing"
            ),
            ("nonnumeric", nonNumeric.joined(separator: "\n"), "line 3 column 'walks': 'lots'"),
            ("empty", "", "empty"),
        ]
        for (name, text, expected) in cases {
            let path = BenchProcess.temporaryPath("\(name).csv")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            defer { unlink(path) }
            let r = try BenchProcess.run(["compare", path, Self.fixture("present-b.csv")])
            #expect(r.status == 64, "\(name): \(r.stderr)")
            #expect(r.stderr.contains(path) && r.stderr.contains(expected), "\(name): \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1)
        }
        let missing = try BenchProcess.run(["compare", "/nonexistent.csv", Self.fixture("present-b.csv")])
        #expect(missing.status == 64 && missing.stderr.contains("/nonexistent.csv"))
    }
}
