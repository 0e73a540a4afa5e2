import Foundation
import Glibc
@testable import HMMLab
import Testing

/// Seeded property tests: random argument vectors to every subcommand, and randomly corrupted result
/// CSVs to the reader and to `compare`. Every case ends with exit 0 or 64, no signal, no crash, within
/// its time limit, and a refused run leaves no `--out` file behind. `HMM_LAB_FUZZ_SEED=S` replays.
@Suite("Fuzz: random arguments and corrupted CSVs end in 0 or 64, never a crash, hang or partial file")
struct FuzzTests {
    static var seed: UInt64 {
        if let text = getenv("HMM_LAB_FUZZ_SEED"), let s = UInt64(String(cString: text)) { return s }
        return UInt64(time(nil))
    }

    /// Values an option may get: valid small ones (so an accepted run stays short) and bad ones.
    static let values = [
        "0", "1", "-1", "2", "512", "1024", "abc", "", "1e9", "0.5", "1.5", "nan", "inf", "99999999999999999999",
        "all", "none", "unified", "read", "write", "4k", "thp", "auto", "present=1", "none=0.5,present=0.5", "pin=1",
        "trylock=0.1", "flush", "lru,driver", "x=y", "/proc/nope/x.csv", "--", "-", "🙂",
    ]
    /// Options per subcommand; every run gets small sizes and one repetition appended first, so the
    /// fuzzed options come after them and override them.
    static let options: [String: [String]] = [
        "run": [
            "--strategy", "--pages", "--window-pages", "--mix", "--thp", "--device-large-fail", "--split-policy",
            "--self-invalidation",
            "--direction", "--threads", "--mutators", "--warmup", "--seed", "--backing", "--counters", "--inject",
            "--device-access",
            "--fault-pages", "--costs", "--tlb-flush", "--format", "--engine", "--bogus",
        ],
        "sweep": ["--vary", "--pages", "--strategy", "--mix", "--costs", "--format"],
        "compare": ["--by", "--base", "--format", "--bogus"],
        "calibrate": ["--only", "--reps", "--frames", "--format", "--system-node", "--device-node"],
        "stress": [
            "--seed", "--mutators", "--max-ops", "--inject", "--device-large-fail", "--pages", "--system-node",
            "--device-node",
        ],
        "thp-table": ["--iterations", "--max-mib", "--format", "--threads"],
        "topology": ["--format", "--node", "--system-node", "--device-node", "--devices", "--device-nodes"],
    ]

    static func arguments(_ command: String, _ rng: inout SplitMix64, out: String) -> [String] {
        var args: [String]
        switch command {
        case "run":
            args = ["--pages", "512", "--reps", "1", "--warmup", "0", "--counters", "none", "--quiet", "--out", out]
        case "sweep":
            args = [
                "sweep", "--vary", "pages=512,1024", "--reps", "1", "--warmup", "0", "--counters", "none", "--quiet",
                "--out", out,
            ]
        case "compare":
            args = ["compare", CompareTests.fixture("present-a.csv"), CompareTests.fixture("present-b.csv")]
        case "calibrate": args = ["calibrate", "--frames", "2048", "--reps", "1", "--only", "walk"]
        case "stress": args = ["stress", "--seconds", "1", "--pages", "512", "--quiet"]
        case "thp-table": args = ["thp-table", "--max-mib", "2", "--iterations", "1", "--quiet"]
        default: args = [command]
        }
        let pool = options[command]!
        for _ in 0..<Int(rng.next() % 3) {
            args.append(pool[Int(rng.next() % UInt64(pool.count))])
            if rng.next() % 8 != 0 { args.append(values[Int(rng.next() % UInt64(values.count))]) }
        }
        return args
    }

    @Test("random argument vectors to every subcommand")
    func randomArguments() throws {
        let seed = Self.seed
        var rng = SplitMix64(seed: seed)
        let commands = Self.options.keys.sorted()
        var statuses: [Int32] = []
        for i in 0..<28 {
            let command = commands[i % commands.count]
            let out = BenchProcess.temporaryPath("fuzz-\(i).csv")
            let args = Self.arguments(command, &rng, out: out)
            let (process, stdout, stderr) = try BenchProcess.start(args)
            let deadline = monotonicNanoseconds() + 30_000_000_000
            while process.isRunning, monotonicNanoseconds() < deadline { usleep(20_000) }
            let hung = process.isRunning
            if hung { process.terminate() }
            _ = stdout.fileHandleForReading.readDataToEndOfFile()
            let err = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            let replay = "seed \(seed) (HMM_LAB_FUZZ_SEED=\(seed)), case \(i): bench \(args.joined(separator: " "))"
            #expect(!hung, "\(replay): still running after 30 s")
            #expect(
                process.terminationReason == Process.TerminationReason.exit, "\(replay): killed by a signal: \(err)")
            #expect(
                [0, 64].contains(process.terminationStatus), "\(replay): exit \(process.terminationStatus): \(err)")
            #expect(!err.contains("Fatal error") && !err.contains("Stack dump"), "\(replay): \(err)")
            if process.terminationStatus == 64 {
                #expect(access(out, F_OK) != 0, "\(replay): refused, yet \(out) was written")
            }
            unlink(out)
            statuses.append(process.terminationStatus)
        }
        #expect(
            statuses.contains(0) && statuses.contains(64),
            "seed \(seed): the cases ran and were refused alike: \(statuses)")
    }

    /// One random corruption of a result CSV's text.
    static func corrupt(_ text: String, _ rng: inout SplitMix64) -> String {
        var records = (try? CSV.parse(text)) ?? []
        let header = records.first ?? []
        func column() -> Int { Int(rng.next() % UInt64(max(header.count, 1))) }
        switch rng.next() % 7 {
        case 0: return String(text.utf8.prefix(Int(rng.next() % UInt64(text.utf8.count))))!  // cut
        case 1:  // bytes flipped
            var bytes = Array(text.utf8)
            for _ in 0..<4 {
                let k = Int(rng.next() % UInt64(bytes.count)); bytes[k] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            }
            return String(decoding: bytes, as: UTF8.self)
        case 2: let c = column(); records = records.map { $0 + [$0[c]] }  // a column duplicated
        case 3:
            let c = column();
            records = records.map {
                var r = $0; r.remove(at: c); return r
            }  // dropped
        case 4: records = records.map { Array($0.reversed()) }  // reordered
        default:  // values replaced
            let replacement = ["NaN", "inf", "-inf", "-3", "1e308", "", "x"][Int(rng.next() % 7)]
            let c = column()
            for r in 1..<records.count where rng.next() % 2 == 0 { records[r][c] = replacement }
        }
        return records.map(CSV.line).joined()
    }

    @Test("corrupted result CSVs: the reader loads or refuses them; compare ends with 0 or 64")
    func corruptedFiles() throws {
        let seed = Self.seed
        var rng = SplitMix64(seed: seed ^ 0xC5F)
        let good = try String(contentsOfFile: CompareTests.fixture("present-b.csv"), encoding: .utf8)
        for i in 0..<40 {
            let text = Self.corrupt(good, &rng)
            let path = BenchProcess.temporaryPath("corrupt-\(i).csv")
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            defer { unlink(path) }
            _ = try? ResultTable.load(path)  // must return or throw, never trap
            guard i % 4 == 0 else { continue }
            let r = try BenchProcess.run(["compare", "--allow-mismatch", CompareTests.fixture("present-a.csv"), path])
            let replay = "seed \(seed) (HMM_LAB_FUZZ_SEED=\(seed)), case \(i)"
            #expect([0, 1, 64].contains(r.status), "\(replay): exit \(r.status): \(r.stderr)")
            #expect(!r.stderr.contains("Fatal error"), "\(replay): \(r.stderr)")
        }
    }
}
