import Foundation
import Glibc
import HMMLab
import Testing

@Suite("bench compare on recorded runs")
struct CompareTests {
    /// Recorded with `bench --strategy all --pages 8192 --reps 6` (two runs, and one with half the pages untouched).
    static func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)").path
    }

    @Test("two runs of the same configuration: ~ for the time metrics, nothing changes in the counts")
    func sameConfiguration() throws {
        let c = Compare(base: try ResultTable.load(Self.fixture("present-a.csv")), new: try ResultTable.load(Self.fixture("present-b.csv")))
        #expect(c.blocks.count == 3 && c.onlyInBase.isEmpty && c.onlyInNew.isEmpty)
        for block in c.blocks {
            for line in block.lines where ["op p50", "op p99", "throughput", "walks", "faults", "bytes copied"].contains(line.metric) {
                #expect(!line.significant, "\(block.configuration.first!.1) \(line.metric): p \(line.p)")
            }
        }
        #expect(c.text.split(separator: "\n").allSatisfy { $0.count <= 80 }, "fits a mail")
        #expect(c.text.contains("~"))
    }

    @Test("unified against fault-then-migrate over a mix with untouched pages: half the walks, significant")
    func byStrategy() throws {
        let c = Compare(byStrategy: try ResultTable.load(Self.fixture("none-all.csv")), baseStrategy: "fault-then-migrate")
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
            let lines = text.split(separator: "\n").enumerated().map { $0.offset == 0 ? "\($0.element),\(name)" : "\($0.element),\(value)" }
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
        #expect(read.blocks.isEmpty && read.onlyInBase.count == 3 && read.onlyInNew.count == 3, "read runs are another configuration")
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
            ("duplicate", lines.enumerated().map { $0.offset == 0 ? String($0.element).replacingOccurrences(of: ",ptes_visited,", with: ",walks,") : String($0.element) }.joined(separator: "\n"), "'walks' appears twice"),
            ("nan", withWalks("nan"), "line 3 column 'walks': 'nan'"),
            ("inf", withWalks("inf"), "line 3 column 'walks': 'inf'"),
            ("negative", withWalks("-3"), "line 3 column 'walks': '-3'"),
            ("truncated", lines.prefix(3).joined(separator: "\n") + "\n" + String(lines[3].prefix(40)), "line 4"),
            ("missing", lines.map { String($0.replacingOccurrences(of: ",walks,", with: ",wlks,")) }.joined(separator: "\n"), "'walks' is missing"),
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
