import Foundation
import Glibc
@testable import HMMLab
import Testing

@Suite("bench: bad input, CSV, counters, interruption (end to end)")
struct BenchCommandTests {
    /// Each bad value: the option as typed, the value, and a word the one-line message must contain.
    static let badValues: [(String, String, String)] = [
        ("--strategy", "fastest", "fastest"),
        ("--pages", "0", "--pages"), ("--pages", "abc", "--pages"), ("--pages", "16777217", "--pages"),
        ("--window-pages", "3", "divide"), ("--window-pages", "1024", "--window-pages"),
        ("--window-pages", "x", "--window-pages"),
        ("--mix", "present=0.5", "sum"), ("--mix", "bogus=1", "bogus"), ("--mix", "present=x", "present"),
        ("--mix", "present", "STATE=FRACTION"),
        ("--mix", "present=0.5,present=0.5", "twice"),
        ("--thp", "1.5", "--thp"), ("--thp", "x", "--thp"),
        ("--device-large-fail", "-0.1", "--device-large-fail"), ("--device-large-fail", "2", "--device-large-fail"),
        ("--split-policy", "middle", "middle"), ("--self-invalidation", "maybe", "maybe"),
        ("--direction", "sideways", "sideways"),
        ("--threads", "0", "--threads"), ("--threads", "1000", "--threads"), ("--mutators", "-1", "--mutators"),
        ("--mutators", "65", "--mutators"),
        ("--reps", "0", "--reps"), ("--warmup", "x", "--warmup"), ("--seed", "-5", "--seed"),
        ("--seed", "0xZZ", "--seed"),
        ("--system-node", "99", "--system-node"), ("--device-node", "99", "--device-node"),
        ("--device-node", "x", "--device-node"),
        ("--backing", "huge", "huge"), ("--counters", "no-such-event", "no-such-event"),
        ("--counters", "page-faults,page-faults", "twice"),
        ("--format", "xml", "xml"), ("--out", "/proc/no-such-dir/x.csv", "--out"), ("--inject", "lock=0.1", "lock"),
        ("--inject", "pin=2", "pin"),
        ("--costs", "tlb", "tlb"), ("--costs", "flush,flush", "flush,flush"), ("--tlb-flush", "sometimes", "sometimes"),
        ("--device-access", "maybe", "'maybe' is not allowed; use read or write"),
        ("--fault-pages", "0", "--fault-pages"), ("--fault-pages", "1024", "--fault-pages"),
        ("--jobs", "0", "--jobs '0'"), ("--jobs", "257", "--jobs"), ("--jobs", "x", "--jobs"),
        ("--devices", "0", "--devices '0'"), ("--devices", "17", "--devices"),
        ("--device-nodes", "7", "'7' is not a node with memory"),
        ("--device-nodes", "0,x", "'x'"), ("--device-pages", "other", "needs --devices 2"),
        ("--device-pages", "sideways", "sideways"),
    ]

    @Test("every option's bad values: one line naming the value, exit status 64, nothing written", arguments: badValues)
    func badInput(_ bad: (String, String, String)) throws {
        let (option, value, word) = bad
        let out = BenchProcess.temporaryPath("bad.csv")
        let args = option == "--out" ? ["\(option)=\(value)", "--pages", "512"] : ["\(option)=\(value)", "--out", out]
        let r = try BenchProcess.run(args)
        #expect(r.status == 64, "\(option) \(value): status \(r.status), stderr \(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(option) \(value): one line, got \(r.stderr)")
        #expect(r.stderr.contains(word), "\(option) \(value): the message names it: \(r.stderr)")
        #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("Usage"))
        #expect(access(out, F_OK) != 0, "nothing written for bad input")
    }

    @Test("a run larger than the memory available is refused before allocating, with the sizes")
    func tooBig() throws {
        let r = try BenchProcess.run(["--pages", "16777216", "--out", BenchProcess.temporaryPath("big.csv")])
        #expect(r.status == 64)
        #expect(r.stderr.contains("needs") && r.stderr.contains("available") && r.stderr.contains("GiB"), "\(r.stderr)")
    }

    @Test(
        "the CSV header is the documented one and each row parses back with the run's numbers; counters that cannot open are empty"
    )
    func csvRoundTrip() throws {
        let out = BenchProcess.temporaryPath("rows.csv")
        defer { unlink(out) }
        let r = try BenchProcess.run([
            "--strategy", "all", "--pages", "1024", "--reps", "2", "--warmup", "0", "--verify", "--direction",
            "round-trip",
            "--counters", "page-faults,cycles,context-switches", "--out", out, "--quiet",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let text = try String(contentsOfFile: out, encoding: .utf8)
        let (records, completion) = try CSV.parse(resultFile: text)
        #expect(
            completion == .complete && text.hasSuffix("# end: complete, \(records.count - 1) rows\n"),
            "the completion record ends the file")
        let header = ResultRow.header(counters: ["page-faults", "cycles", "context-switches"])
        #expect(records.first == header)
        #expect(header.suffix(3) == ["cnt_page_faults", "cnt_cycles", "cnt_context_switches"])
        let rows = records.dropFirst().map { Dictionary(uniqueKeysWithValues: zip(header, $0)) }
        #expect(rows.count == 3 * 2 * 2, "three strategies, two reps, two directions")
        #expect(records.dropFirst().allSatisfy { $0.count == header.count })
        let cyclesOpen = try PerfCounterSet(["cycles"]).unavailable.isEmpty
        for row in rows {
            #expect(row["pages"] == "1024" && row["pages_requested"] == "1024" && row["ops"] == "2")
            #expect(row["verify_failures"] == "0" && row["lost_stores"] == "0")
            #expect(Int(row["wall_ns"] ?? "") ?? 0 > 0)
            for column in ["op_mean_ns", "op_p50_ns", "op_p99_ns", "throughput_gbps", "memcpy_gbps", "kernel_walk_ns"] {
                #expect(Double(row[column] ?? "") != nil, "\(column) is a number: \(row[column] ?? "missing")")
            }
            if let gbps = Double(row["throughput_gbps"] ?? ""), let p50 = Double(row["op_p50_ns"] ?? ""), p50 > 0 {
                #expect(abs(gbps - 512 * 4096 / p50) < 0.001, "throughput is a window's bytes over the median op")
            }
            #expect(Double(row["wall_gbps"] ?? "") != nil)
            #expect(UInt64(row["cnt_page_faults"] ?? "") != nil, "software counter read")
            #expect((row["cnt_cycles"] == "") == !cyclesOpen, "cycles empty exactly when it cannot open here")
            if row["direction"] == "to-device" {
                #expect(row["pages_migrated"] == "1024")
                #expect(Double(row["walk_ns"] ?? "") != nil && Double(row["copy_ns"] ?? "") != nil)
                let walks = Int(row["walks"] ?? "")
                #expect(
                    walks == (row["strategy"] == "fault-then-migrate" ? 4 : 2),
                    "DESIGN.md walk counts on present pages: \(row)")
            } else {
                #expect(row["direction"] == "to-system", "the way back is named for where the pages go")
                #expect(row["pages_migrated"] == "1024" && row["walk_ns"] == "")
            }
        }
        #expect(r.stdout.isEmpty == false, "a summary on stdout")
    }

    @Test(
        "calibrate --only unified writes its five rows as metric,value,unit; the part above the atomics is the overhead less their floor"
    )
    func calibrateUnifiedRows() throws {
        let r = try BenchProcess.run([
            "calibrate", "--only", "unified", "--reps", "1", "--frames", "2048", "--format", "csv",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "metric,value,unit")
        var value: [String: Double] = [:]
        for line in lines.dropFirst() {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            #expect(f.count == 3, "row \(line)")
            if f.count == 3 { value[f[0]] = Double(f[1]) }
        }
        let names = [
            "unified_total_per_page", "lab_unified_overhead_ns_per_page", "unified_atomics_floor_ns_per_page",
            "lab_unified_above_atomics_ns_per_page",
        ]
        #expect(Set(value.keys) == Set(names + ["unified_total_with_costs"]), "rows: \(value.keys.sorted())")
        #expect((value["unified_total_with_costs"] ?? 0) > 0)
        for name in names.dropLast() {
            #expect((value[name] ?? 0) > 0 && value[name]!.isFinite, "\(name) = \(value[name] ?? .nan)")
        }
        if let total = value[names[0]], let overhead = value[names[1]], let floor = value[names[2]],
            let above = value[names[3]]
        {
            #expect(overhead < total, "the copy is taken out")
            #expect(abs(above - (overhead - floor)) < 0.01, "above \(above) = overhead \(overhead) - floor \(floor)")
        }
    }

    @Test(
        "calibrate's bad values: one line naming the value, exit status 64",
        arguments: [
            ("--only", "nope", "nope"), ("--reps", "0", "--reps"), ("--frames", "1000", "--frames"),
            ("--frames", "67108864", "available"),
        ])
    func calibrateBadInput(_ bad: (String, String, String)) throws {
        let (option, value, word) = bad
        let r = try BenchProcess.run(["calibrate", option, value])
        #expect(r.status == 64, "\(option) \(value): status \(r.status), stderr \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(word), "\(r.stderr)")
    }

    @Test("sweep varies a list option: + stands for the comma inside one value")
    func sweepListValues() throws {
        let out = BenchProcess.temporaryPath("sweep-list.csv")
        defer { unlink(out) }
        let r = try BenchProcess.run([
            "sweep", "--vary", "costs=none,flush+lru", "--pages", "512", "--reps", "1", "--warmup", "0", "--counters",
            "none", "--quiet", "--out", out,
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let text = try String(contentsOfFile: out, encoding: .utf8)
        let records = try CSV.parse(text.split(separator: "\n").filter { !$0.hasPrefix("#") }.joined(separator: "\n"))
        let column = try #require(records.first?.firstIndex(of: "costs"))
        #expect(records.dropFirst().map { $0[column] } == ["none", "flush,lru"], "\(records)")
    }

    @Test("the summary comes as JSON when asked")
    func jsonSummary() throws {
        let out = BenchProcess.temporaryPath("json.csv")
        defer { unlink(out) }
        let r = try BenchProcess.run([
            "--pages", "512", "--reps", "1", "--warmup", "0", "--counters", "none", "--format", "json", "--out", out,
            "--quiet",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let parsed = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]]
        #expect(parsed?.count == 1)
        #expect(parsed?.first?["strategy"] as? String == "unified")
        #expect(parsed?.first?["walks_per_op"] as? Double == 1 || parsed?.first?["walks_per_op"] as? Int == 1)
    }

    @Test("SIGINT stops the run cleanly: status 130, every finished row kept whole")
    func interrupted() throws {
        let out = BenchProcess.temporaryPath("interrupted.csv")
        defer { unlink(out) }
        let (process, stdout, stderr) = try BenchProcess.start([
            "--strategy", "all", "--pages", "4096", "--reps", "100000", "--warmup", "0", "--counters", "none", "--out",
            out, "--quiet",
        ])
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        // Wait for at least two finished rows.
        let deadline = Date().addingTimeInterval(60)
        var lines = 0
        while Date() < deadline {
            // The header and two rows; the leading # lines (command, version, hugetlb) do not count.
            lines =
                ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").filter {
                    !$0.hasPrefix("#")
                }.count
            if lines >= 3 { break }
            usleep(20_000)
        }
        #expect(lines >= 3, "rows appear while the run goes on")
        kill(process.processIdentifier, SIGINT)
        _ = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130, "\(err)")
        #expect(err.contains("interrupted"))
        let (records, completion) = try CSV.parse(resultFile: try String(contentsOfFile: out, encoding: .utf8))
        #expect(completion == .interrupted, "an interrupted run says so in its last line")
        #expect(records.count >= 3)
        #expect(records.allSatisfy { $0.count == ResultRow.columns.count }, "no half-written row")
        let reps = records.dropFirst().compactMap { Int($0[ResultRow.columns.firstIndex(of: "rep")!]) }
        #expect(!reps.isEmpty && reps.allSatisfy { $0 >= 1 })
    }

    @Test("runs started in the same second get distinct default files, each with all its rows (issue 16, case 6)")
    func defaultNamesDistinct() throws {
        let dir = BenchProcess.temporaryPath("runs")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let args = [
            "--pages", "512", "--reps", "1", "--warmup", "0", "--counters", "none", "--quiet", "--format", "csv",
        ]
        let started = try (0..<3).map { _ in try BenchProcess.start(args, in: dir) }
        for (p, _, _) in started { p.waitUntilExit() }
        #expect(started.allSatisfy { $0.0.terminationStatus == 0 })
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/results").filter {
            $0.hasSuffix(".csv")
        }
        #expect(files.count == 3, "\(files)")
        for f in files {
            #expect(
                try CSV.parse(resultFile: String(contentsOfFile: dir + "/results/" + f, encoding: .utf8)).records.count
                    == 2, "\(f): header and one row")
        }
    }

    @Test(
        "a second bench writing the same --out is refused with one line (exit 64) and the first run's rows stay whole (issue 16, case 5)"
    )
    func sameOutRefused() throws {
        let out = BenchProcess.temporaryPath("shared.csv")
        defer { unlink(out) }
        let (first, _, _) = try BenchProcess.start([
            "--pages", "4096", "--reps", "1000", "--warmup", "0", "--counters", "none", "--quiet", "--out", out,
        ])
        var waited = 0
        while (try? String(contentsOfFile: out, encoding: .utf8))?.isEmpty ?? true, waited < 200 {
            usleep(50_000)
            waited += 1
        }
        let second = try BenchProcess.run([
            "--pages", "512", "--reps", "1", "--counters", "none", "--quiet", "--out", out,
        ])
        #expect(
            second.status == 64 && second.stderr.contains("another bench")
                && second.stderr.split(separator: "\n").count == 1, "\(second.stderr)")
        kill(first.processIdentifier, SIGINT)
        first.waitUntilExit()
        #expect(first.terminationStatus == 130 || first.terminationStatus == 0)
        let records = try CSV.parse(resultFile: String(contentsOfFile: out, encoding: .utf8)).records
        #expect(records.first == ResultRow.header(counters: []))
        #expect(records.dropFirst().allSatisfy { $0.count == records[0].count }, "every row whole")
    }

    @Test(
        "--backing hugetlb with too few free hugetlb pages is refused (exit 64) before an existing --out is touched; sweep checks every combination first"
    )
    func hugetlbShortageKeepsFile() throws {
        let pages = 262144  // 1 GiB: its pools need over 1500 pages of 2 MiB
        if (HugetlbPool.freePages(node: 0) ?? 0) > 1600 { return }  // a machine with that many free cannot show the refusal
        let out = BenchProcess.temporaryPath("keep.csv")
        defer { unlink(out) }
        try "earlier,rows\n1,2\n".write(toFile: out, atomically: false, encoding: .utf8)
        for args in [["--pages", "\(pages)"], ["sweep", "--vary", "pages=512,\(pages)"]] {
            let r = try BenchProcess.run(args + ["--backing", "hugetlb", "--reps", "1", "--quiet", "--out", out])
            #expect(r.status == 64, "\(args): status \(r.status), \(r.stderr)")
            #expect(
                r.stderr.contains("hugetlb") && r.stderr.contains("node 0")
                    && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
            #expect(
                try String(contentsOfFile: out, encoding: .utf8) == "earlier,rows\n1,2\n",
                "\(args): the file is untouched")
        }
    }

    @Test("--version prints the tool version and the commit of the checkout the binary was built in")
    func version() throws {
        let r = try BenchProcess.run(["--version"])
        #expect(
            r.status == 0 && r.stdout.hasPrefix("hmm-lab \(RunMetadata.toolVersion) (commit "),
            "\(r.stdout) \(r.stderr)")
    }

    @Test(
        "thp-table --max-mib must be one of the table's sizes: a value between them is refused with the allowed ones",
        arguments: ["32", "3", "0", "512"])
    func thpTableMaxMib(_ value: String) throws {
        let r = try BenchProcess.run(["thp-table", "--max-mib", value, "--iterations", "1", "--quiet"])
        #expect(
            r.status == 64 && r.stderr.contains("--max-mib \(value)") && r.stderr.contains("1, 2, 4, 8, 16, 256"),
            "\(r.stderr)")
    }

    @Test(
        "thp-table names the machine, the backing it got and the THP mode, gives each time's spread, fits 80 columns, and its CSV carries the same"
    )
    func thpTableHeader() throws {
        let r = try BenchProcess.run(["thp-table", "--max-mib", "2", "--iterations", "2", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(
            r.stdout.contains("backing ") && r.stdout.contains("THP ") && r.stdout.contains("kernel ")
                && r.stdout.contains(" ±"), "\(r.stdout)")
        #expect(r.stdout.split(separator: "\n").allSatisfy { $0.count <= 80 }, "\(r.stdout)")
        let csv = try BenchProcess.run([
            "thp-table", "--max-mib", "1", "--iterations", "2", "--quiet", "--format", "csv",
        ])
        let records = try CSV.parse(resultFile: csv.stdout).records
        #expect(
            csv.stdout.hasPrefix("# command: bench thp-table --max-mib 1"),
            "the CSV starts with the command: \(csv.stdout)")
        #expect(
            records.first?.contains("to_device_spread_percent") == true && records.first?.contains("backing") == true)
        #expect(records.count == 1 + 2 * 2 && records.dropFirst().allSatisfy { $0.count == records[0].count })
    }
}
