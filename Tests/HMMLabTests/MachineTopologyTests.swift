import Glibc
import Testing

@testable import HMMLab

@Suite("MachineTopology and perf events")
struct MachineTopologyTests {
    @Test("topology names node 0, the hugetlb pages, the THP mode and the perf events")
    func topology() {
        let t = MachineTopology.read()
        #expect(t.table.nodes.contains { $0.id == 0 })
        #expect(
            t.table.nodes.contains { !$0.cpus.isEmpty }
                && t.table.nodesWithMemory.allSatisfy { t.table.node($0)!.memTotalBytes > 0 })
        #expect(["always", "madvise", "never", "unsupported"].contains(t.thpEnabled))
        #expect(t.smallProbe.backing != nil, "a 2 MiB auto region can always be had: \(t.smallProbe.error ?? "")")
        let text = t.text()
        #expect(text.contains("  node  cpus"))
        #expect(text.contains("hugetlb free/total"))
        #expect(text.contains("default run (16384 pages, backing auto), per memory area:"))
        #expect(text.contains("  system pool ") && text.contains("  device pool "))
        #expect(text.split(separator: "\n").allSatisfy { $0.count <= 80 }, "topology fits 80 columns")
        #expect(text.contains("transparent huge pages: enabled [\(t.thpEnabled)]"))
        #expect(text.contains("page-faults"))
        let csv = t.csv()
        #expect(csv.hasPrefix("section,node,name,value,detail\n"))
        #expect(csv.contains("\nnode,0,hugetlb_2m_free,"))
        #expect(csv.contains("\nperf,,page-faults,opens,software"))
    }

    @Test("with several devices: one line per device and its node, a pool per device, the nodes in the CSV")
    func severalDevices() throws {
        let t = MachineTopology.read(try RunConfig.parse(["devices": "3"]))
        #expect(t.deviceNodes.count == 3 && t.deviceNodes[0] == t.deviceNode)
        let text = t.text()
        #expect(text.contains("3 devices, each with its own pool"), "\(text)")
        for i in 0..<3 {
            #expect(text.contains("  device \(i): node \(t.deviceNodes[i]), distance "), "device \(i): \(text)")
            #expect(text.contains("  device pool \(i) "), "pool \(i): \(text)")
        }
        #expect(text.split(separator: "\n").allSatisfy { $0.count <= 80 }, "topology fits 80 columns")
        #expect(
            t.csv().contains(
                "\nrun,,device_nodes,\(t.deviceNodes.map(String.init).joined(separator: " ")),one per device\n"))
        #expect(!MachineTopology.read().csv().contains("device_nodes"), "one device: no device_nodes row")
    }

    @Test("software perf events open; hardware ones are probed, not assumed")
    func perfProbe() {
        let probes = PerfEvents.probe()
        let software = probes.filter { $0.kind == "software" }
        #expect(software.count == PerfEvents.softwareProbeList.count)
        #expect(software.allSatisfy { $0.opens }, "\(software.filter { !$0.opens })")
        let hardware = probes.filter { $0.kind == "hardware" }
        #expect(hardware.count == PerfEvents.hardwareProbeList.count, "libpfm4 knows every hardware name")
        for probe in hardware where !probe.opens {
            #expect(
                ["ENOENT", "EOPNOTSUPP", "EACCES", "ENODEV", "EINVAL"].contains(probe.reason),
                "\(probe.name): \(probe.reason)")
        }
    }

    @Test("an event name libpfm4 does not know is bad input")
    func unknownEvent() {
        #expect {
            _ = try PerfEvents.resolve("no-such-event-xyz")
        } throws: { error in
            guard case .unknownEvent("no-such-event-xyz", _) = error as? PerfEventError else { return false }
            return true
        }
    }

    @Test("the page-faults counter counts the faults of the calling thread")
    func pageFaultCounter() throws {
        let event = try PerfEvent(PerfEvents.resolve("page-faults"))
        let pages = 256
        let p = mmap(nil, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        defer { munmap(p, pages * 4096) }
        _ = madvise(p, pages * 4096, MADV_NOHUGEPAGE)
        event.start()
        for i in 0..<pages { (p + i * 4096).storeBytes(of: 1, as: UInt8.self) }
        event.stop()
        let value = event.read()
        let count = try #require(value)
        #expect(
            count >= UInt64(pages) && count < UInt64(pages) + 64, "counted \(count) faults for \(pages) first touches")
    }
}
