import Foundation
import Glibc
@testable import HMMLab
import Testing

/// What a machine with several NUMA nodes needs, checked in the VM lane's multi-node guests (QEMU,
/// software emulation): a run too large for its system node refused without an OOM kill, each pool's
/// backing in the four hugetlb placements (and `topology` predicting it), and pinning when the system
/// node has no CPUs. The decisions themselves are unit-tested on fake topologies (NodeTableTests).
@Suite("several NUMA nodes, in the VM lane's guests", .serialized)
struct MultiNodeTests {
    static let reason: Comment =
        "needs HMM_LAB_VM=1 and the kernel scripts/kernel-vm caches (scripts/kernel-vm --build-only)"

    /// Runs `script` (bash) in a guest with these `scripts/kernel-vm` options, in a fresh directory of
    /// the package root that the guest sees read-write; returns that directory and the exit status.
    static func guest(_ options: [String], _ script: String) throws -> (dir: String, status: Int32) {
        let dir = ".multi-node-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let vm = Process()
        vm.executableURL = URL(fileURLWithPath: KernelEngineTests.packageRoot + "/scripts/kernel-vm")
        vm.arguments =
            options + [
                "--timeout", "900", "--", "bash", "-c",
                "cd \(dir) && bench=\(BenchProcess.executable.path) && \(script)",
            ]
        try vm.run()
        vm.waitUntilExit()
        return (dir, vm.terminationStatus)
    }

    static func read(_ dir: String, _ file: String) -> String {
        (try? String(contentsOfFile: "\(dir)/\(file)", encoding: .utf8)) ?? ""
    }

    /// `text` with the 80-column wrapping undone: continuation lines (`#   ` or four spaces) joined to
    /// the line before.
    static func unwrapped(_ text: String) -> String {
        text.replacingOccurrences(of: "\n#   ", with: " ").replacingOccurrences(of: "\n    ", with: " ")
    }

    /// `section,node,name,value,detail` rows of `bench topology --format csv`, by name.
    static func topology(_ dir: String, _ file: String) -> [String: String] {
        var values: [String: String] = [:]
        for line in read(dir, file).split(separator: "\n") {
            let f = line.split(separator: ",", omittingEmptySubsequences: false)
            if f.count >= 4 { values[String(f[2])] = String(f[3]) }
        }
        return values
    }

    @Test(
        "a run that fits the machine but not its system node exits 64 with one line, and nothing is OOM-killed",
        .enabled(if: KernelEngineTests.vmLane, reason), .timeLimit(.minutes(15)))
    func tooLargeForNode() throws {
        // 2 GiB per node. 262144 pages without the driver's backing pages: 2 GiB on node 0 and
        // 1 GiB on node 1, about 3.1 GiB of the machine's 4.
        var config = RunConfig()
        config.pages = 262144
        config.costs = []
        let need = config.memoryNeeded
        let script = """
            grep MemAvailable /proc/meminfo > meminfo; $bench topology --format csv > topology.csv
            $bench --pages 262144 --costs none --reps 1 --warmup 0 --counters none --quiet --out run.csv > out.txt 2> err.txt
            echo $? > status; dmesg | grep -c -i 'out of memory' > oom || true
            """
        let (dir, status) = try Self.guest(["--nodes", "2", "--mem", "4096", "--swap", "0"], script)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(status == 0)
        let available = Sysfs.kilobyteField("MemAvailable", in: Self.read(dir, "meminfo")[...]) ?? 0
        let node0 = Int(Self.topology(dir, "topology.csv")["mem_available_bytes"] ?? "") ?? 0
        #expect(need.total < available, "the machine has the memory: \(need.total) of \(available)")
        #expect(need.system > node0, "node 0 has not: \(need.system) of \(node0)")
        #expect(Self.read(dir, "status").trimmingCharacters(in: .whitespacesAndNewlines) == "64")
        let err = Self.read(dir, "err.txt")
        #expect(
            err.split(separator: "\n").count == 1 && err.contains("on node 0") && err.contains("available"), "\(err)")
        #expect(Self.read(dir, "oom").trimmingCharacters(in: .whitespacesAndNewlines) == "0", "no OOM kill")
        #expect(access("\(dir)/run.csv", F_OK) != 0, "nothing written")
    }

    @Test(
        "system_backing and device_backing in the four hugetlb placements, as topology predicts them",
        .enabled(if: KernelEngineTests.vmLane, reason), .timeLimit(.minutes(15)))
    func backingPerPool() throws {
        let placements = [
            ("150 150", "hugetlb", "hugetlb"), ("150 0", "hugetlb", "thp"), ("0 150", "thp", "hugetlb"),
            ("0 0", "thp", "thp"),
        ]
        let script = placements.enumerated().map { k, p in
            let pages = p.0.split(separator: " ")
            return """
                echo \(pages[0]) > /sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages
                echo \(pages[1]) > /sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages
                $bench topology --format csv > topology-\(k).csv
                $bench --strategy migrate-then-fault --reps 1 --warmup 0 --counters none --quiet --out run-\(k).csv > out-\(k).txt
                """
        }.joined(separator: "\n")
        let (dir, status) = try Self.guest(["--nodes", "2", "--mem", "3072", "--swap", "0"], script)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(status == 0)
        for (k, p) in placements.enumerated() {
            let row = try KernelEngineTests.rows("\(dir)/run-\(k).csv").first
            #expect(
                row?["system_backing"] == p.1 && row?["device_backing"] == p.2,
                "hugetlb \(p.0): \(row?["system_backing"] ?? "-"), \(row?["device_backing"] ?? "-")")
            #expect(row?["system_node"] == "0" && row?["device_node"] == "1")
            let predicted = Self.topology(dir, "topology-\(k).csv")
            #expect(
                predicted["auto_default_run_system_pool"] == p.1 && predicted["auto_default_run_device_pool"] == p.2,
                "topology, hugetlb \(p.0)")
            let header = Self.read(dir, "out-\(k).txt")
            #expect(Self.unwrapped(header).contains("# backing: system pool \(p.1), device pool \(p.2)"), "\(header)")
            if p.1 != p.2 { #expect(header.contains("fell back to thp"), "the fallback is said: \(header)") }
        }
    }

    @Test(
        "a memory-only system node: threads pinned to the nearest node with CPUs, said and recorded; run, calibrate, stress",
        .enabled(if: KernelEngineTests.vmLane, reason), .timeLimit(.minutes(15)))
    func memoryOnlyNode() throws {
        let run = "--strategy migrate-then-fault --pages 2048 --reps 1 --warmup 0 --counters none --quiet"
        let script = """
            cat /sys/devices/system/node/node2/cpulist > cpus2
            $bench \(run) --system-node 2 --out two.csv > two.txt
            $bench \(run) --system-node 1 --out one.csv > one.txt
            $bench calibrate --frames 2048 --reps 1 --only walk --system-node 2 > calibrate.txt
            $bench stress --seconds 2 --pages 512 --quiet --system-node 2 > stress.txt
            """
        let (dir, status) = try Self.guest(
            ["--nodes", "3", "--memory-only-nodes", "1", "--cpus", "2", "--mem", "3072", "--swap", "0"], script)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(status == 0)
        #expect(Self.read(dir, "cpus2").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "node 2 has no CPUs")
        let two = try KernelEngineTests.rows("\(dir)/two.csv").first
        #expect(two?["system_node"] == "2" && two?["pinned_cpus"] == "0", "\(two?["pinned_cpus"] ?? "-")")
        let said =
            "threads pinned to node 0's CPUs 0 (node 2 has no CPUs; node 0 is the nearest with CPUs, distance 20)"
        #expect(Self.unwrapped(Self.read(dir, "two.txt")).contains(said), "\(Self.read(dir, "two.txt"))")
        let one = try KernelEngineTests.rows("\(dir)/one.csv").first
        #expect(one?["pinned_cpus"] == "1" && one?["device_node"] == "0")
        #expect(
            Self.unwrapped(Self.read(dir, "one.txt")).contains(
                "threads pinned to node 1's CPUs 1 (the system node's CPUs)"))
        #expect(Self.unwrapped(Self.read(dir, "calibrate.txt")).contains(said), "\(Self.read(dir, "calibrate.txt"))")
        let stress = Self.unwrapped(Self.read(dir, "stress.txt"))
        #expect(stress.contains(said) && stress.contains("violations: 0"), "\(stress)")
    }

    @Test(
        "two jobs and two devices on nodes 2 and 3 (memory only, as device memory shows up) of a 4-node guest: each pool on its node, verify clean, no lost store",
        .enabled(if: KernelEngineTests.vmLane, reason), .timeLimit(.minutes(15)))
    func jobsAndDevices() throws {
        let script = """
            $bench --jobs 2 --devices 2 --device-nodes 2,3 --verify --mutators 1 --strategy all --pages 2048 --reps 1 --warmup 0 \\
                --counters none --quiet --out jd.csv > jd.txt 2> jd.err; echo $? > status
            """
        let (dir, status) = try Self.guest(
            ["--nodes", "4", "--memory-only-nodes", "2", "--cpus", "2", "--mem", "4096", "--swap", "0"], script)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(status == 0)
        #expect(
            Self.read(dir, "status").trimmingCharacters(in: .whitespacesAndNewlines) == "0",
            "\(Self.read(dir, "jd.err"))")
        let rows = try KernelEngineTests.rows("\(dir)/jd.csv")
        #expect(rows.count == 3, "one row per strategy")
        for row in rows {
            #expect(
                row["jobs"] == "2" && row["devices"] == "2" && row["device_nodes"] == "2,3",
                "\(row["device_nodes"] ?? "-")")
            #expect(row["verify_failures"] == "0" && row["lost_stores"] == "0", "\(row["strategy"] ?? "")")
            // A page the mutator pulls back is moved again (counted twice) or left behind (skipped).
            let moved = (Int(row["pages_migrated"] ?? "") ?? 0) + (Int(row["pages_skipped"] ?? "") ?? 0)
            #expect(
                moved >= 2048,
                "\(row["strategy"] ?? ""): migrated \(row["pages_migrated"] ?? "-"), skipped \(row["pages_skipped"] ?? "-")"
            )
        }
        let header = Self.unwrapped(Self.read(dir, "jd.txt"))
        let placement =
            header.split(separator: "\n").first { $0.contains("pools read back with move_pages") }.map(String.init)
            ?? ""
        #expect(placement.contains("device 0 (") && placement.contains("device 1 ("), "\(placement)")
        let devicePart = { (i: Int) in
            placement.components(separatedBy: "device \(i) (").last?.components(separatedBy: ";").first ?? ""
        }
        #expect(devicePart(0).hasSuffix("on node 2") && !devicePart(0).contains("node 3"), "\(devicePart(0))")
        #expect(devicePart(1).hasSuffix("on node 3") && !devicePart(1).contains("node 2"), "\(devicePart(1))")
    }
}
