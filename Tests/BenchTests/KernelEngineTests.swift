import Foundation
import Glibc
@testable import HMMLab
import Testing

/// `bench --engine kernel`: its refusals on any machine, and, in the VM lane, one scenario run in both
/// engines with the mapped counts compared.
@Suite("bench --engine kernel")
struct KernelEngineTests {
    @Test(
        "--engine kernel without the test driver: one line naming test_hmm and scripts/kernel-vm, exit 64, nothing written",
        .enabled(if: !DmirrorDevice.present, "this machine has /dev/hmm_dmirror0"))
    func noDriver() throws {
        let out = BenchProcess.temporaryPath("kernel.csv")
        let r = try BenchProcess.run(["--engine", "kernel", "--strategy", "migrate-then-fault", "--out", out])
        #expect(r.status == 64, "\(r.stderr)")
        #expect(
            r.stderr.split(separator: "\n").count == 1 && r.stderr.contains("test_hmm")
                && r.stderr.contains("scripts/kernel-vm"), "\(r.stderr)")
        #expect(access(out, F_OK) != 0)
    }

    @Test(
        "--engine kernel refuses what the kernel has not got, naming the option: one line, exit 64",
        arguments: [
            (["--strategy", "unified"], "unified RFC"), (["--mutators", "1"], "--mutators"),
            (["--inject", "pin=0.1"], "--inject"),
            (["--threads", "2"], "--threads"), (["--split-policy", "before-collect"], "--split-policy"),
            (["--device-large-fail", "0.5"], "--device-large-fail"),
            (["--self-invalidation", "bump"], "bump"),
        ])
    func refusals(_ bad: ([String], String)) throws {
        let r = try BenchProcess.run(
            ["--engine", "kernel"] + bad.0 + ["--out", BenchProcess.temporaryPath("kernel.csv")])
        #expect(r.status == 64, "\(bad.0): \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(bad.1), "\(bad.0): \(r.stderr)")
    }

    @Test(
        "thp-table --engine kernel without the test driver, or with a model-only option: one line, exit 64",
        arguments: [
            ["thp-table", "--engine", "kernel", "--threads", "2"],
            ["thp-table", "--engine", "kernel", "--backing", "hugetlb"],
            ["--engine", "kernel", "--strategy", "migrate-then-fault", "--device-access", "write"],
            ["--engine", "kernel", "--strategy", "migrate-then-fault", "--fault-pages", "64"],
        ])
    func thpTableAndFaultOptions(_ args: [String]) throws {
        let r = try BenchProcess.run(
            args + ["--out", BenchProcess.temporaryPath("x.csv")].filter { _ in args[0] != "thp-table" })
        #expect(
            r.status == 64 && r.stderr.split(separator: "\n").count == 1 && r.stderr.contains("--engine kernel"),
            "\(args): \(r.stderr)")
    }

    @Test("--engine with an unknown value: one line naming it, exit 64")
    func unknownEngine() throws {
        let r = try BenchProcess.run(["--engine", "simulator", "--out", BenchProcess.temporaryPath("x.csv")])
        #expect(r.status == 64 && r.stderr.contains("simulator") && r.stderr.contains("model or kernel"), "\(r.stderr)")
    }

    /// The package root (the test runs from it under `swift test`) and the VM lane's cached kernel.
    static var packageRoot: String { FileManager.default.currentDirectoryPath }
    static var cachedKernel: Bool {
        let cache = ProcessInfo.processInfo.environment["HMM_LAB_CACHE"] ?? (NSHomeDirectory() + "/.cache/hmm-lab")
        return access(cache + "/build-linux-source-7.2/arch/x86/boot/bzImage", F_OK) == 0
    }
    static var vmLane: Bool { ProcessInfo.processInfo.environment["HMM_LAB_VM"] == "1" && cachedKernel }

    /// The lab counters compared count for count in the VM test (results/validation.md has them all).
    static let mapped = [
        "pages_migrated", "pages_skipped", "walks", "walk_restarts", "faults", "swapins", "tlb_flushes",
        "invalidations", "verify_failures",
    ]

    @Test(
        "VM lane: fault-then-migrate on present and swapped pages gives the same mapped counts in both engines",
        .enabled(
            if: vmLane, "needs HMM_LAB_VM=1 and the kernel scripts/kernel-vm caches (scripts/kernel-vm --build-only)"),
        .timeLimit(.minutes(10)))
    func bothEngines() throws {
        let dir = ".kernel-engine-test-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bench = BenchProcess.executable.path
        let options =
            "--strategy fault-then-migrate --mix present=0.75,swap=0.25 --device-access read --fault-pages 32 --pages 1024 --reps 2 "
            + "--warmup 1 --seed 3 --counters none --verify --quiet"
        let command =
            "\(bench) --engine model \(options) --out \(dir)/model.csv && \(bench) --engine kernel \(options) --out \(dir)/kernel.csv"
        let vm = Process()
        vm.executableURL = URL(fileURLWithPath: Self.packageRoot + "/scripts/kernel-vm")
        vm.arguments = ["--nodes", "2", "--timeout", "500", "--", "sh", "-c", command]
        try vm.run()
        vm.waitUntilExit()
        #expect(vm.terminationStatus == 0)
        let model = try Self.rows("\(dir)/model.csv")
        let kernel = try Self.rows("\(dir)/kernel.csv")
        #expect(model.count == 2 && kernel.count == 2)
        for (m, k) in zip(model, kernel) {
            #expect(m["engine"] == "model" && k["engine"] == "kernel")
            for column in Self.mapped {
                #expect(m[column] == k[column], "\(column): lab \(m[column] ?? "-"), kernel \(k[column] ?? "-")")
            }
            #expect(!(k["kfn_migrate_vma_setup"] ?? "").isEmpty, "the kernel's function counts are filled")
        }
    }

    static func rows(_ path: String) throws -> [[String: String]] {
        let records = try CSV.parse(resultFile: try String(contentsOfFile: path, encoding: .utf8)).records
        guard let header = records.first else { return [] }
        return records.dropFirst().map { Dictionary(zip(header, $0), uniquingKeysWith: { a, _ in a }) }
    }
}
