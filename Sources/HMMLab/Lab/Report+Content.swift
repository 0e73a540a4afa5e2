import Glibc

/// What the report's sections say: commands, machine, floors, sentences, reproduce.
extension Report {
    /// The values `table` has in `column`, in order of first appearance, joined by `/`; `not
    /// recorded` when the file has none.
    static func values(_ table: ResultTable, _ column: String) -> String {
        var seen: [String] = []
        for r in table.rows {
            let v = Compare.key(r.fields, [column])[0]
            if !seen.contains(v) { seen.append(v) }
        }
        let text = seen.joined(separator: "/")
        return text.isEmpty ? "not recorded" : text
    }

    /// The command that wrote `table`: the recorded one, else one rebuilt from its rows' columns.
    func command(of table: ResultTable) -> String { table.command ?? Self.rebuiltCommand(table) }

    /// Each file's command, after a `#` line naming the file (and one saying when the command is rebuilt:
    /// its own line, so a long path's wrapping cannot split it).
    var commandLines: [String] {
        tables.flatMap { t in
            ["# \(Self.shown(t.path))"] + (t.command == nil ? ["# records no command; rebuilt from its rows"] : []) + [
                command(of: t)
            ]
        }
    }

    /// `path` relative to the working directory when it lies below it (the file as a reader of the
    /// mail would name it, short enough to fit a line), else as given.
    static func shown(_ path: String) -> String {
        guard let cwd = getcwd(nil, 0) else { return path }
        defer { free(cwd) }
        let prefix = String(cString: cwd) + "/"
        return path.hasPrefix(prefix) && path.count > prefix.count ? String(path.dropFirst(prefix.count)) : path
    }

    /// The options a rebuilt command gives when a file's rows differ from a default run's: the engine,
    /// then every ``RunOption/rebuilt`` run option; each with its result column and the value a run
    /// with the defaults writes there.
    static let options: [(column: String, option: String, defaultValue: String)] = {
        let defaults = ResultRow(
            metadata: .unknown, timestamp: "", strategy: "", direction: "", config: RunConfig(), rep: 0)
        let named =
            [(column: "engine", option: "engine")]
            + RunOption.all.filter(\.rebuilt).map { (column: $0.column, option: $0.name) }
        return named.map { ($0.column, $0.option, ResultRow.column(named: $0.column)?.value(defaults) ?? "") }
    }()

    /// A `bench` (or `bench sweep`) command giving rows like `table`'s: options that differ from
    /// their defaults, `--vary` for a column with several values.
    static func rebuiltCommand(_ table: ResultTable) -> String {
        var args: [String] = []
        var vary: [String] = []
        for o in options {
            let v = values(table, o.column)
            if o.column == "strategy" {
                if v.contains("/") { args.append("--strategy all") } else { args.append("--strategy \(v)") }
            } else if v.contains("/") {
                vary.append("--vary \(o.option)=" + ResultFile.shellQuoted(v.replacingAll("/", with: ",")))
            } else if v != o.defaultValue {
                args.append("--\(o.option) " + ResultFile.shellQuoted(v))
            }
        }
        if table.rows.contains(where: { $0.fields["direction"] == "to-system" }) {
            args.append("--direction round-trip")
        }
        let reps = table.rows.compactMap { Int($0.fields["rep"] ?? "") }.max() ?? 0
        if reps != 5 { args.append("--reps \(reps)") }
        return (vary.isEmpty ? "bench " : "bench sweep ") + (vary + args).joined(separator: " ")
    }

    /// The machine each file was measured on (once when they agree).
    var machine: [String] {
        let lines = tables.map { t -> [String] in
            let f = t.rows[0].fields
            let nodes = f["numa_nodes"] ?? "?"
            return [
                "host \(f["host"] ?? "?"): \(f["cpu_model"] ?? "?"), \(f["cpus"] ?? "?") CPUs, \(nodes) NUMA node\(nodes == "1" ? "" : "s") "
                    + "(system node \(Self.values(t, "system_node")), device node \(Self.values(t, "device_node"))), kernel \(f["kernel"] ?? "?")",
                Self.backing(t)
                    + ", THP \(Self.values(t, "thp_mode")), TLB shootdown \(Self.values(t, "tlb_shootdown"))",
                "hugetlb: \(t.metadata["hugetlb"] ?? "not recorded")",
                "build: "
                    + (t.metadata["version"] ?? "hmm-lab \(Self.values(t, "tool_version")) (commit not recorded)"),
            ]
        }
        return prefixed(lines)
    }

    /// Each pool's backing (`system_backing`, `device_backing`), or the one `backing` of files
    /// written before the pools were recorded apart.
    static func backing(_ t: ResultTable) -> String {
        guard t.header.contains("system_backing") else { return "backing \(values(t, "backing"))" }
        return "backing: system pool \(values(t, "system_backing")), device pool \(values(t, "device_backing"))"
    }

    /// The floors measured at each run's start: memcpy between the pools and the kernel's walk.
    var floors: [String] {
        prefixed(
            tables.map { t in
                let memcpy = Statistics.median(t.rows.compactMap { Double($0.fields["memcpy_gbps"] ?? "") })
                let walk = Statistics.median(t.rows.compactMap { Double($0.fields["kernel_walk_ns"] ?? "") })
                return [
                    "memcpy between the pools \(Summary.fixed(memcpy, 2)) GB/s; kernel mincore walk \(Summary.fixed(walk, 2)) ns per 4 KiB page"
                ]
            })
    }

    /// One list of lines per file: as it is when they agree, else each line prefixed `base:`/`new:`.
    func prefixed(_ lines: [[String]]) -> [String] {
        guard lines.count == 2, lines[0] != lines[1] else { return lines[0] }
        return zip(lines[0], lines[1]).flatMap { b, n in b == n ? [b] : ["base: " + b, "new: " + n] }
    }

    /// One sentence per significant change; when none, why.
    func sentences(_ comparison: Compare) -> [String] {
        let varying = Compare.configurationColumns.filter { c in
            Set(comparison.blocks.map { b in b.configuration.first { $0.0 == c }?.1 ?? "" }).count > 1
        }
        var out: [String] = []
        for block in comparison.blocks {
            let label = block.configuration.filter {
                ($0.0 == "strategy" || $0.0 == "direction" || varying.contains($0.0)) && !$0.1.isEmpty
            }
            .map { ["strategy", "direction"].contains($0.0) ? $0.1 : "\($0.0)=\($0.1)" }.joined(separator: " ")
            for l in block.lines where l.significant { out.append("\(label): " + Self.sentence(l)) }
        }
        if out.isEmpty {
            out.append("None: no change has p <= 0.05." + (comparison.significanceNote.map { " Note: \($0)." } ?? ""))
        }
        return out
    }

    /// `op p50 fell 35.2%, from 545.7 µs to 354.2 µs (p = 0.029).`
    static func sentence(_ l: Compare.Line) -> String {
        let from = Compare.value(l.baseMedian, l.unit)
        let to = Compare.value(l.newMedian, l.unit)
        let d = l.deltaPercent
        let change =
            d.isFinite
            ? "\(d > 0 ? "rose" : "fell") \(Summary.fixed(abs(d), abs(d) >= 10 ? 0 : 1))%, from" : "went from"
        return
            "\(l.metric) \(change) \(from) to \(to) (p = \(Compare.pValue(l.p)), \(l.base.count)+\(l.new.count) reps)."
    }

    /// The commands that rebuild the files and this report, from the recorded build's commit.
    var reproduce: [String] {
        var out: [String] = []
        if let version = base.metadata["version"], let r = version.firstRange(of: "commit "),
            !version.hasSuffix("unknown)")
        {
            let commit = version[r.upperBound...].prefix { $0 != ")" && $0 != "+" }
            out.append(
                "git checkout \(commit)" + (version.contains("+)") ? "  # the build had uncommitted changes" : ""))
        }
        out += tables.map { "swift run -c release " + command(of: $0) }
        out.append("swift run -c release " + reportCommand)
        return out
    }
}
