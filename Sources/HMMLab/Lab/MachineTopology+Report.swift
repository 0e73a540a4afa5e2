extension MachineTopology {
    /// A report a person reads, at most 80 columns wide.
    public func text() -> String {
        var out: [String] = []
        out.append("kernel \(kernel)")
        out.append("NUMA API \(numaAvailable ? "available" : "unavailable (every node query answers node 0)")")
        out.append("")
        out += nodeLines()
        out.append("")
        out += deviceLines.flatMap { Self.wrap($0, indent: $0.hasPrefix(" ") ? 4 : 2) }
        out += Self.wrap(placement.describe(failure: nil))
        out.append("")
        out.append("transparent huge pages: enabled [\(thpEnabled)], defrag [\(thpDefrag)]")
        let probeText: String
        if let backing = smallProbe.backing {
            probeText =
                "\(backing)"
                + (smallProbe.fallbacks.isEmpty
                    ? "" : " (passed over: \(smallProbe.fallbacks.joined(separator: "; ")))")
        } else {
            probeText = "failed: \(smallProbe.error ?? "unknown")"
        }
        out += Self.wrap("backing auto, 2 MiB probe region on node \(systemNode): \(probeText)")
        out += defaultRunLines()
        out.append("")
        out += perfLines()
        return out.joined(separator: "\n")
    }

    /// The node table and, with several nodes, the distance matrix.
    func nodeLines() -> [String] {
        var out = ["NUMA nodes: \(table.nodes.count)"]
        let cpuWidth = max(4, table.nodes.map { Sysfs.formatList($0.cpus).count }.max() ?? 0)
        out.append(
            "  node  " + "cpus".padding(cpuWidth) + Self.right("memory", 11) + Self.right("free", 11)
                + Self.right("available", 11) + Self.right("hugetlb free/total", 20))
        for n in table.nodes {
            let cpus = n.cpus.isEmpty ? "none" : Sysfs.formatList(n.cpus)
            let sizes =
                n.hasMemory
                ? [n.memTotalBytes, n.memFreeBytes, n.memAvailableBytes].map(Region.formatBytes)
                : ["no memory", "", ""]
            out.append(
                "  " + Self.right(String(n.id), 4) + "  " + cpus.padding(cpuWidth) + Self.right(sizes[0], 11)
                    + Self.right(sizes[1], 11)
                    + Self.right(sizes[2], 11) + Self.right("\(n.hugetlbFree)/\(n.hugetlbTotal)", 20))
        }
        guard table.nodes.count > 1 else { return out }
        out.append("distances (SLIT):")
        out.append("  node" + table.nodes.map { Self.right(String($0.id), 5) }.joined())
        for a in table.nodes {
            out.append(
                "  " + Self.right(String(a.id), 4)
                    + table.nodes.map { Self.right(String(table.distance(a.id, $0.id)), 5) }.joined())
        }
        return out
    }

    /// The default run's areas, each with the backing its node gives it, and whether they fit.
    func defaultRunLines() -> [String] {
        var out = ["default run (\(Self.defaultRunPages) pages, backing auto), per memory area:"]
        for area in defaultRun.areas {
            let head =
                "  \(area.name.padding(12)) \(Self.right(Region.formatBytes(area.bytes), 9)) on node \(area.node): "
            var what = area.predicted?.rawValue ?? "none"
            if area.predicted == .hugetlb {
                what += " (\(area.hugePages) page\(area.hugePages == 1 ? "" : "s") of 2 MiB)"
            }
            if !area.fallbacks.isEmpty { what += "; passed over \(area.fallbacks.joined(separator: "; "))" }
            out += Self.wrap(head + what, indent: 4)
        }
        out += Self.wrap(
            "  memory: " + (defaultRun.shortfall().map { "does not fit: \($0)" } ?? "fits every node"), indent: 4)
        return out
    }

    func perfLines() -> [String] {
        let paranoid = perfEventParanoid.map { "perf_event_paranoid \($0)" } ?? "perf_event_paranoid unreadable"
        var out = ["perf events (user space only, \(paranoid)):"]
        for kind in ["software", "hardware", "unknown"] {
            for probe in perfEvents where probe.kind == kind {
                let state = probe.opens ? "opens" : "unavailable (\(probe.reason))"
                out.append("  \(kind.padding(8)) \(probe.name.padding(18)) \(state)")
            }
        }
        let software = perfEvents.filter { $0.kind == "software" && $0.opens }.count
        let hardware = perfEvents.filter { $0.kind == "hardware" && $0.opens }.count
        out.append(
            "  summary: \(software) software events open; "
                + (hardware == 0 ? "no hardware counters (no PMU)" : "\(hardware) hardware events open"))
        return out
    }

    /// The same facts as CSV: `section,node,name,value,detail`.
    public func csv() -> String {
        var rows = [["section", "node", "name", "value", "detail"]]
        rows.append(["kernel", "", "release", kernel, ""])
        rows.append(["numa", "", "api", numaAvailable ? "available" : "unavailable", ""])
        for n in table.nodes {
            let id = String(n.id)
            rows.append(["node", id, "cpus", Sysfs.formatList(n.cpus), ""])
            rows.append(["node", id, "has_memory", n.hasMemory ? "1" : "0", ""])
            rows.append(["node", id, "mem_total_bytes", String(n.memTotalBytes), ""])
            rows.append(["node", id, "mem_free_bytes", String(n.memFreeBytes), ""])
            rows.append(["node", id, "mem_available_bytes", String(n.memAvailableBytes), "si_mem_available() per node"])
            rows.append(["node", id, "hugetlb_2m_free", String(n.hugetlbFree), ""])
            rows.append(["node", id, "hugetlb_2m_total", String(n.hugetlbTotal), ""])
            rows.append([
                "node", id, "distances", table.nodes.map { String(table.distance(n.id, $0.id)) }.joined(separator: " "),
                "",
            ])
        }
        rows.append(["run", "", "system_node", String(systemNode), ""])
        rows.append(["run", "", "device_node", String(deviceNode), deviceNodeReason])
        if deviceNodes.count > 1 {
            rows.append([
                "run", "", "device_nodes", deviceNodes.map(String.init).joined(separator: " "), "one per device",
            ])
        }
        rows.append(["run", "", "pinned_cpus", placement.cpuList, placement.reason])
        rows.append(["thp", "", "enabled", thpEnabled, ""])
        rows.append(["thp", "", "defrag", thpDefrag, ""])
        rows.append([
            "backing", "", "auto_probe_2m", smallProbe.backing?.rawValue ?? "",
            smallProbe.error ?? smallProbe.fallbacks.joined(separator: "; "),
        ])
        for area in defaultRun.areas {
            let name = "auto_default_run_" + area.name.replacingAll(" ", with: "_")
            rows.append([
                "backing", String(area.node), name, area.predicted?.rawValue ?? "",
                area.fallbacks.joined(separator: "; "),
            ])
        }
        rows.append([
            "memory", "", "default_run_fits", defaultRun.shortfall() == nil ? "1" : "0", defaultRun.shortfall() ?? "",
        ])
        for probe in perfEvents {
            rows.append([
                "perf", "", probe.name, probe.opens ? "opens" : "unavailable",
                probe.kind + (probe.reason.isEmpty ? "" : ": " + probe.reason),
            ])
        }
        return rows.map { $0.map(Self.csvField).joined(separator: ",") }.joined(separator: "\n") + "\n"
    }

    static func right(_ s: String, _ width: Int) -> String {
        s.count >= width ? " " + s : String(repeating: " ", count: width - s.count) + s
    }

    /// ``TextBlock/wrap(_:width:indent:)`` as lines: pieces no wider than `width` columns, those after
    /// the first indented by `indent` spaces.
    public static func wrap(_ line: String, width: Int = 80, indent: Int = 2) -> [String] {
        TextBlock.wrap(line, width: width, indent: String(repeating: " ", count: indent))
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
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
