extension MachineTopology {
    /// A report a person reads.
    public func text() -> String {
        var out: [String] = []
        out.append("kernel \(kernel); NUMA API \(numaAvailable ? "available" : "unavailable (every node query answers node 0)")")
        out.append("")
        out.append("NUMA nodes: \(nodes.count)")
        for node in nodes {
            out.append(
                "  node \(node.id): cpus \(Self.formatList(node.cpus)); memory \(Region.formatBytes(node.memTotalBytes)) " +
                    "(\(Region.formatBytes(node.memFreeBytes)) free); hugetlb 2 MiB pages: \(node.hugetlbFree) free of \(node.hugetlbTotal)")
        }
        if nodes.count == 1 {
            out.append("  one node: device memory will share node \(nodes[0].id) with system memory")
        }
        out.append("")
        out.append("transparent huge pages: enabled [\(thpEnabled)], defrag [\(thpDefrag)]")
        let probeText: String
        if let backing = smallProbe.backing {
            probeText = "\(backing)" + (smallProbe.fallbacks.isEmpty ? "" : " (passed over: \(smallProbe.fallbacks.joined(separator: "; ")))")
        } else {
            probeText = "failed: \(smallProbe.error ?? "unknown")"
        }
        out.append("backing auto, 2 MiB probe region: \(probeText)")
        let node0 = nodes.first
        out.append(
            "backing auto, default run (16384 pages): needs \(defaultRunHugePagesNeeded) hugetlb pages, " +
                "\(node0?.hugetlbFree ?? 0) free on node \(node0?.id ?? 0) -> \(predictedDefaultBacking(node: node0?.id ?? 0))")
        out.append("")
        let paranoid = perfEventParanoid.map { "perf_event_paranoid \($0)" } ?? "perf_event_paranoid unreadable"
        out.append("perf events (user space only, \(paranoid)):")
        for kind in ["software", "hardware", "unknown"] {
            for probe in perfEvents where probe.kind == kind {
                let state = probe.opens ? "opens" : "unavailable (\(probe.reason))"
                out.append("  \(kind.padding(8)) \(probe.name.padding(18)) \(state)")
            }
        }
        let software = perfEvents.filter { $0.kind == "software" && $0.opens }.count
        let hardware = perfEvents.filter { $0.kind == "hardware" && $0.opens }.count
        out.append(
            "  summary: \(software) software events open; " +
                (hardware == 0 ? "hardware counters unavailable (no PMU): runs record software counters only" : "\(hardware) hardware events open"))
        return out.joined(separator: "\n")
    }

    /// The same facts as CSV: `section,node,name,value,detail`.
    public func csv() -> String {
        var rows = [["section", "node", "name", "value", "detail"]]
        rows.append(["kernel", "", "release", kernel, ""])
        rows.append(["numa", "", "api", numaAvailable ? "available" : "unavailable", ""])
        for node in nodes {
            let id = String(node.id)
            rows.append(["node", id, "cpus", Self.formatList(node.cpus), ""])
            rows.append(["node", id, "mem_total_bytes", String(node.memTotalBytes), ""])
            rows.append(["node", id, "mem_free_bytes", String(node.memFreeBytes), ""])
            rows.append(["node", id, "hugetlb_2m_free", String(node.hugetlbFree), ""])
            rows.append(["node", id, "hugetlb_2m_total", String(node.hugetlbTotal), ""])
        }
        rows.append(["thp", "", "enabled", thpEnabled, ""])
        rows.append(["thp", "", "defrag", thpDefrag, ""])
        rows.append(["backing", "", "auto_probe_2m", smallProbe.backing?.rawValue ?? "", smallProbe.error ?? smallProbe.fallbacks.joined(separator: "; ")])
        rows.append(["backing", "", "auto_default_run", predictedDefaultBacking(node: nodes.first?.id ?? 0).rawValue, "needs \(defaultRunHugePagesNeeded) hugetlb pages"])
        for probe in perfEvents {
            rows.append(["perf", "", probe.name, probe.opens ? "opens" : "unavailable", probe.kind + (probe.reason.isEmpty ? "" : ": " + probe.reason)])
        }
        return rows.map { $0.map(Self.csvField).joined(separator: ",") }.joined(separator: "\n") + "\n"
    }

    static func formatList(_ values: [Int]) -> String {
        var parts: [String] = []
        var i = 0
        while i < values.count {
            var j = i
            while j + 1 < values.count, values[j + 1] == values[j] + 1 { j += 1 }
            parts.append(i == j ? "\(values[i])" : "\(values[i])-\(values[j])")
            i = j + 1
        }
        return parts.joined(separator: ",")
    }

    /// RFC 4180 quoting.
    static func csvField(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) else { return s }
        return "\"" + s.replacingAll("\"", with: "\"\"") + "\""
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }

    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
