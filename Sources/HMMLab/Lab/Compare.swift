import Glibc

/// A result CSV read back for comparison, every row checked against its header.
public struct ResultTable: Sendable {
    public var path: String
    public var header: [String]
    /// Rows as column → field, with the file line each came from.
    public var rows: [(line: Int, fields: [String: String])]
    /// What the file's completion record says; nil when it has none (the run did not finish).
    public var completion: ResultFile.Completion?
    /// The file's leading `#` lines as key → value (``ResultFile/MetadataKey``); empty for files
    /// written before they existed.
    public var metadata: [String: String] = [:]

    /// The command that produced the file, as recorded in its metadata.
    public var command: String? { metadata[ResultFile.MetadataKey.command.rawValue] }

    /// Files from before completion records: their rows' `tool_version` is below this.
    static let firstVersionWithCompletion = [0, 6, 0]

    /// Why the rows may be incomplete, in a few words; nil for a finished run or a file older than
    /// completion records.
    public var unfinished: String? {
        if completion == .complete { return nil }
        if completion == .interrupted { return "the run was interrupted" }
        let versions = rows.compactMap { $0.fields["tool_version"]?.split(separator: ".").compactMap { Int($0) } }
        guard versions.contains(where: { $0.lexicographicallyPrecedes(Self.firstVersionWithCompletion) == false })
        else { return nil }
        return "no completion record: the run did not finish"
    }

    /// Why a result CSV cannot be used: names the file, and the line and column where it can.
    public struct LoadError: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// Reads and checks `path`: a header (old column names read as their new ones) with every column `required` names, every row as long as the
    /// header (a shorter one means a truncated file), and a number in every field of `numeric` that is
    /// not empty.
    public static func load(
        _ path: String, required: [String] = Compare.requiredConfigurationColumns + Compare.requiredMetricColumns
    ) throws(LoadError) -> ResultTable {
        guard var text = Sysfs.read(path) else {
            throw LoadError(description: "\(path): cannot be read (\(SystemError.name(of: errno)))")
        }
        let completion = Self.takeCompletionRecord(&text)
        let (metadata, skipped) = ResultFile.takeMetadata(&text)
        let records: [[String]]
        do {
            records = try CSV.parse(text)
        } catch {
            var shifted = error
            shifted.line += skipped
            throw LoadError(description: "\(path) \(shifted) (is the file truncated?)")
        }
        guard let header = records.first.map({ $0.map { Compare.renamedColumns[$0] ?? $0 } }), !header.isEmpty,
            header != [""]
        else {
            throw LoadError(description: "\(path): empty, no header line")
        }
        for column in required where !header.contains(column) {
            throw LoadError(
                description: "\(path) line \(skipped + 1): column '\(column)' is missing (is this a bench result CSV?)")
        }
        var seen = Set<String>()
        for column in header where !seen.insert(column).inserted {
            throw LoadError(
                description:
                    "\(path) line \(skipped + 1): column '\(column)' appears twice (is this a bench result CSV?)")
        }
        var rows: [(line: Int, fields: [String: String])] = []
        // Physical line numbers: quoted newlines do not occur in bench output, so record i is line
        // i+1 after the metadata lines.
        for (j, record) in records.enumerated().dropFirst() {
            let i = j + skipped
            if record == [""] { continue }
            guard record.count == header.count else {
                throw LoadError(
                    description:
                        "\(path) line \(i + 1): \(record.count) fields where the header has \(header.count) (is the file truncated?)"
                )
            }
            var fields = Dictionary(uniqueKeysWithValues: zip(header, record))
            for (column, renames) in Compare.renamedValues {
                if let v = fields[column], let new = renames[v] { fields[column] = new }
            }
            for column in Compare.numericColumns(header) {
                guard let v = fields[column], !v.isEmpty else { continue }
                guard let d = Double(v), d.isFinite, d >= 0 else {
                    throw LoadError(
                        description:
                            "\(path) line \(i + 1) column '\(column)': '\(v)' is not a number (a finite count, time or rate, 0 or more)"
                    )
                }
            }
            rows.append((i + 1, fields))
        }
        guard !rows.isEmpty else { throw LoadError(description: "\(path): no rows after the header") }
        return ResultTable(path: path, header: header, rows: rows, completion: completion, metadata: metadata)
    }

    /// Removes the completion record (``ResultFile/Completion``), the last line, from `text` and
    /// returns what it says.
    static func takeCompletionRecord(_ text: inout String) -> ResultFile.Completion? {
        var body = text[...]
        while body.last == "\n" { body = body.dropLast() }
        let start = body.lastIndex(of: "\n").map { body.index(after: $0) } ?? body.startIndex
        let last = body[start...]
        guard last.hasPrefix("#") else { return nil }
        let completion = ResultFile.Completion.parse(lastLine: last)
        text = String(body[..<start])
        return completion
    }
}

/// `bench compare`: for each configuration present in both inputs and each metric that matters, the
/// median of each side with its 95% confidence interval, the change, and a Mann–Whitney U test; a
/// change whose p-value is above 0.05 prints `~`, as benchstat does.
public struct Compare: Sendable {
    /// Columns that say what was run: rows match on them.
    /// `engine` is absent from files written before `--engine` existed: such rows are `model` rows.
    static let configurationColumns = [
        "engine", "strategy", "direction", "pages", "window_pages", "mix", "thp", "device_large_fail", "split_policy",
        "self_invalidation", "threads",
        "jobs", "devices", "device_pages", "mutators", "device_access", "fault_pages", "costs",
    ]

    /// Columns added after the first recorded runs: a file without them has their defaults. A file
    /// without `device_access` comes from runs whose faulting strategies asked for write; one without
    /// `costs` from a model that paid none of them.
    static let optionalColumns = [
        "engine": "model", "jobs": "1", "devices": "1", "device_pages": "own", "device_access": "write",
        "fault_pages": "window", "costs": "none",
    ]

    /// Columns renamed since: a file with the old name is read as having the new one.
    static let renamedColumns = ["fault_request": "device_access"]

    /// Values renamed since, per column: a file with the old value is read as having the new one.
    static let renamedValues = ["direction": ["round-trip": "to-system"]]

    /// What produced a row rather than what it ran: rows that differ here are not comparable (a hugetlb
    /// run beside one that fell back to THP, another build, another machine or kernel).
    static let identityColumns = [
        "backing", "system_backing", "device_backing", "tool_version", "host", "cpu_model", "kernel", "tlb_shootdown",
    ]
    public static var requiredConfigurationColumns: [String] {
        configurationColumns.filter { optionalColumns[$0] == nil }
    }

    /// The metrics compared: column, label, how to print it.
    public enum Unit: Sendable { case nanoseconds, gbps, count }
    public static let metrics: [(column: String, label: String, unit: Unit)] = [
        ("op_p50_ns", "op p50", .nanoseconds), ("op_p99_ns", "op p99", .nanoseconds),
        ("throughput_gbps", "throughput", .gbps),
        ("walks", "walks", .count), ("walk_restarts", "walk restarts", .count), ("faults", "faults", .count),
        ("tlb_flushes", "TLB flushes", .count),
        ("bytes_copied", "bytes copied", .count),
        ("cross_job_retries", "cross-job retries", .count), ("mmap_lock_wait_ns", "mmap lock wait", .nanoseconds),
        ("ptl_wait_ns", "PTE/PMD lock wait", .nanoseconds), ("lru_lock_wait_ns", "LRU lock wait", .nanoseconds),
        ("alloc_lock_wait_ns", "allocator lock wait", .nanoseconds),
        ("notifier_wait_ns", "notifier wait", .nanoseconds),
    ]
    /// Metrics added after the first recorded runs: a file without them is still read, and they are
    /// compared only when both sides have them.
    static let optionalMetricColumns: Set<String> = [
        "cross_job_retries", "mmap_lock_wait_ns", "ptl_wait_ns", "lru_lock_wait_ns", "alloc_lock_wait_ns",
        "notifier_wait_ns",
    ]
    public static var requiredMetricColumns: [String] {
        metrics.map(\.column).filter { !optionalMetricColumns.contains($0) }
    }

    static func numericColumns(_ header: [String]) -> [String] {
        let known = Set(
            metrics.map(\.column) + [
                "pages", "window_pages", "thp", "device_large_fail", "threads", "jobs", "devices", "mutators", "rep",
                "ops",
            ])
        return header.filter { known.contains($0) || $0.hasPrefix("cnt_") }
    }

    /// One metric of one configuration.
    public struct Line: Sendable {
        public var metric: String
        public var unit: Unit
        public var base: [Double]
        public var new: [Double]
        var baseMedian: Double { Statistics.median(base) }
        var newMedian: Double { Statistics.median(new) }
        var baseInterval: (low: Double, high: Double, coverage: Double) { Statistics.medianInterval(base) }
        var newInterval: (low: Double, high: Double, coverage: Double) { Statistics.medianInterval(new) }
        public var p: Double { Statistics.mannWhitneyU(base, new).p }
        /// The change of the median in %, nan when the base median is 0 and the new one is not.
        var deltaPercent: Double {
            let b = baseMedian
            let n = newMedian
            if b == n { return 0 }
            return b == 0 ? .nan : (n - b) / b * 100
        }
        public var significant: Bool { p <= 0.05 }
    }

    /// One configuration compared.
    public struct Block: Sendable {
        /// The configuration, as `column=value` pairs.
        public var configuration: [(String, String)]
        var baseLabel: String
        var newLabel: String
        public var lines: [Line]
    }

    public var blocks: [Block]
    /// Columns that say what produced the rows (``identityColumns``) and differ between the two sides
    /// of a matched configuration: `column: base values vs new values`.
    public var mismatches: [String] = []
    /// Configurations found on one side only, described.
    var onlyInBase: [String]
    var onlyInNew: [String]

    /// The values of `columns` in a row (an empty column name gives an empty value).
    static func key(_ fields: [String: String], _ columns: [String]) -> [String] {
        columns.map { fields[$0] ?? optionalColumns[$0] ?? "" }
    }

    static func describe(_ columns: [String], _ key: [String]) -> String {
        zip(columns, key).filter { !$0.0.isEmpty }.map { "\($0)=\($1)" }.joined(separator: " ")
    }

    /// Compares every configuration of `base` with the same configuration in `new`; rows match
    /// whatever their values in the `ignoring` columns (the option an A/B run changed).
    public init(base: ResultTable, new: ResultTable, ignoring: Set<String> = []) {
        let columns = Self.configurationColumns.map { ignoring.contains($0) ? "" : $0 }
        let counters = base.header.filter { $0.hasPrefix("cnt_") && new.header.contains($0) }
        let metrics = Self.metrics + counters.map { ($0, String($0.dropFirst(4)), Unit.count) }
        var order: [[String]] = []
        var baseGroups: [[String]: [[String: String]]] = [:]
        for r in base.rows {
            let k = Self.key(r.fields, columns)
            if baseGroups[k] == nil { order.append(k) }
            baseGroups[k, default: []].append(r.fields)
        }
        var newGroups: [[String]: [[String: String]]] = [:]
        var newOrder: [[String]] = []
        for r in new.rows {
            let k = Self.key(r.fields, columns)
            if newGroups[k] == nil { newOrder.append(k) }
            newGroups[k, default: []].append(r.fields)
        }
        blocks = order.compactMap { k in
            guard let b = baseGroups[k], let n = newGroups[k] else { return nil }
            return Block(
                configuration: Array(zip(columns, k)), baseLabel: "base", newLabel: "new",
                lines: Self.lines(metrics: metrics, base: b, new: n))
        }
        onlyInBase = order.filter { newGroups[$0] == nil }.map { Self.describe(columns, $0) }
        onlyInNew = newOrder.filter { baseGroups[$0] == nil }.map { Self.describe(columns, $0) }
        let matched = order.filter { newGroups[$0] != nil }
        mismatches = Self.identityMismatches(
            base: matched.flatMap { baseGroups[$0]! }, new: matched.flatMap { newGroups[$0]! })
    }

    /// The identity columns whose values differ between `base` and `new` rows, described.
    static func identityMismatches(base: [[String: String]], new: [[String: String]]) -> [String] {
        identityColumns.compactMap { column in
            let b = Set(base.compactMap { $0[column] })
            let n = Set(new.compactMap { $0[column] })
            guard !b.isEmpty, !n.isEmpty, b != n else { return nil }
            return "\(column): \(b.sorted().joined(separator: ", ")) vs \(n.sorted().joined(separator: ", "))"
        }
    }

    /// Compares strategies within one table: every strategy against `baseStrategy`, per configuration
    /// of the other columns.
    public init(byStrategy table: ResultTable, baseStrategy: String) {
        let columns = Self.configurationColumns.filter { $0 != "strategy" }
        let counters = table.header.filter { $0.hasPrefix("cnt_") }
        let metrics = Self.metrics + counters.map { ($0, String($0.dropFirst(4)), Unit.count) }
        var order: [[String]] = []
        var groups: [[String]: [String: [[String: String]]]] = [:]
        var strategies: [String] = []
        for r in table.rows {
            let k = Self.key(r.fields, columns)
            let s = r.fields["strategy"] ?? ""
            if groups[k] == nil { order.append(k) }
            if !strategies.contains(s) { strategies.append(s) }
            groups[k, default: [:]][s, default: []].append(r.fields)
        }
        var blocks: [Block] = []
        var missing: [String] = []
        for k in order {
            guard let base = groups[k]?[baseStrategy] else {
                missing.append("\(baseStrategy) \(Self.describe(columns, k))")
                continue
            }
            for s in strategies where s != baseStrategy {
                guard let other = groups[k]?[s] else { continue }
                blocks.append(
                    Block(
                        configuration: Array(zip(columns, k)), baseLabel: baseStrategy, newLabel: s,
                        lines: Self.lines(metrics: metrics, base: base, new: other)))
            }
        }
        self.blocks = blocks
        onlyInBase = missing
        onlyInNew = []
    }

    static func lines(
        metrics: [(column: String, label: String, unit: Unit)], base: [[String: String]], new: [[String: String]]
    ) -> [Line] {
        metrics.compactMap { m in
            let b = base.compactMap { $0[m.column].flatMap(Double.init) }
            let n = new.compactMap { $0[m.column].flatMap(Double.init) }
            guard !b.isEmpty, !n.isEmpty else { return nil }  // an empty column (counter not available)
            // A contention metric that is zero on both sides (one job, no contention) says nothing.
            if optionalMetricColumns.contains(m.column), (b + n).allSatisfy({ $0 == 0 }) { return nil }
            return Line(metric: m.label, unit: m.unit, base: b, new: n)
        }
    }

    // MARK: - Output

    static func value(_ v: Double, _ unit: Unit) -> String {
        guard v.isFinite else { return "-" }
        switch unit {
        case .nanoseconds: return Summary.duration(v)
        case .gbps: return Summary.fixed(v, 2) + " GB/s"
        case .count:
            if abs(v) >= 1e9 { return Summary.fixed(v / 1e9, 2) + "G" }
            if abs(v) >= 1e6 { return Summary.fixed(v / 1e6, 2) + "M" }
            if abs(v) >= 1e4 { return Summary.fixed(v / 1e3, 1) + "k" }
            return v == v.rounded() ? String(Int(v)) : Summary.fixed(v, 1)
        }
    }

    /// The larger distance from the median of `values` to an end of its 95% interval
    /// (``Statistics/medianInterval(_:confidence:)``), in % of the median; nil for one value, a
    /// median of 0 or not a number, or an interval end that is not a number (an infinite value in a
    /// file).
    static func intervalPercent(_ values: [Double]) -> Double? {
        let m = Statistics.median(values)
        guard values.count > 1, m != 0, m.isFinite else { return nil }
        let ci = Statistics.medianInterval(values)
        let spread = max(abs(ci.high - m), abs(m - ci.low)) / abs(m) * 100
        return spread.isFinite ? spread : nil
    }

    /// `median ±x%` with x from ``intervalPercent(_:)``; `median (1 rep)` for one value.
    static func withInterval(_ values: [Double], _ unit: Unit) -> String {
        let m = Statistics.median(values)
        guard values.count > 1 else { return value(m, unit) + " (1 rep)" }
        guard let spread = intervalPercent(values) else { return value(m, unit) }
        return value(m, unit) + " ±" + Summary.fixed(spread, spread < 10 ? 1 : 0) + "%"
    }

    /// The change in %, with `~` beside it when it is not significant.
    static func delta(_ line: Line) -> String {
        let d = line.deltaPercent
        let mark = line.significant ? "" : " ~"
        guard d.isFinite else { return "new" + mark }
        let digits = abs(d) >= 100 ? 0 : abs(d) >= 10 ? 1 : 2
        return (d > 0 ? "+" : "") + Summary.fixed(d, digits) + "%" + mark
    }

    /// The smallest two-sided p the exact Mann–Whitney test can give with `n1` and `n2` samples and no
    /// ties: 2 / C(n1+n2, n1).
    static func smallestP(_ n1: Int, _ n2: Int) -> Double {
        var c = 1.0
        for i in 0..<min(n1, n2) { c = c * Double(n1 + n2 - i) / Double(i + 1) }
        return min(1, 2 / c)
    }

    /// Repetitions a side below which no change can be significant at p < 0.05: 4 (3+3 give 0.1).
    public static let minimumRepsForSignificance = (1...100).first { smallestP($0, $0) <= 0.05 }!

    /// One sentence when none of the compared sample sizes can reach p < 0.05, else nil.
    var significanceNote: String? {
        let sizes = blocks.flatMap { $0.lines.map { ($0.base.count, $0.new.count) } }
        guard let (n1, n2) = sizes.first, sizes.allSatisfy({ Self.smallestP($0.0, $0.1) > 0.05 }) else { return nil }
        return "with \(n1)+\(n2) samples no change can be significant at p < 0.05 (the smallest two-sided p is "
            + "\(Summary.fixed(Self.smallestP(n1, n2), 3))); --reps \(Self.minimumRepsForSignificance) or more a side allows it"
    }

    static func pValue(_ p: Double) -> String { p.isFinite ? (p < 0.001 ? "<0.001" : Summary.fixed(p, 3)) : "-" }

    /// Wraps `text` at spaces to `width` columns (``TextBlock/wrap(_:width:indent:)``).
    static func wrap(_ text: String, width: Int, indent: String = "  ") -> String {
        TextBlock.wrap(text, width: width, indent: indent)
    }

    /// A plain-text table that fits 80 columns, for a mail.
    public var text: String {
        var out = ""
        for block in blocks {
            let config = block.configuration.filter { !$0.1.isEmpty }.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
            out += Self.wrap(config, width: 80) + "\n"
            func row(_ c: [String]) -> String {
                // metric 14, base and new 19 each, delta 9, p 7, n 7: 75 columns with the spaces.
                let widths = [14, 19, 19, 9, 7, 7]
                var s = String(c[0].prefix(widths[0])).padding(widths[0])
                for i in 1..<c.count { s += " " + c[i].leftPad(widths[i] - 1) }
                return s
            }
            out +=
                row(["", String(block.baseLabel.prefix(19)), String(block.newLabel.prefix(19)), "delta", "p", "n"])
                + "\n"
            for l in block.lines {
                out +=
                    row([
                        l.metric, Self.withInterval(l.base, l.unit), Self.withInterval(l.new, l.unit), Self.delta(l),
                        Self.pValue(l.p), "\(l.base.count)+\(l.new.count)",
                    ]) + "\n"
            }
            out += "\n"
        }
        for c in onlyInBase { out += Self.wrap("only in base: \(c)", width: 80) + "\n" }
        for c in onlyInNew { out += Self.wrap("only in new: \(c)", width: 80) + "\n" }
        if let note = significanceNote { out += Self.wrap("note: " + note, width: 80) + "\n" }
        out += "medians ± their 95% confidence interval (order statistics; below 6 samples the\n"
        out += "range, which covers less); p: two-sided Mann-Whitney U test; ~: p > 0.05, the\n"
        out += "change is not significant\n"
        return out
    }

    /// The same as Markdown tables.
    public var markdown: String {
        var out = ""
        for block in blocks {
            let config = block.configuration.filter { !$0.1.isEmpty }.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
            out +=
                "**\(config)**\n\n| metric | \(block.baseLabel) | \(block.newLabel) | delta | p | n |\n|---|---:|---:|---:|---:|---:|\n"
            for l in block.lines {
                out +=
                    "| \(l.metric) | \(Self.withInterval(l.base, l.unit)) | \(Self.withInterval(l.new, l.unit)) | \(Self.delta(l)) | \(Self.pValue(l.p)) | \(l.base.count)+\(l.new.count) |\n"
            }
            out += "\n"
        }
        for c in onlyInBase { out += "- only in base: \(c)\n" }
        for c in onlyInNew { out += "- only in new: \(c)\n" }
        if let note = significanceNote { out += "\n*Note: \(note).*\n" }
        return out
    }

    /// The same as CSV, one record per configuration and metric.
    public var csv: String {
        var out = CSV.line(
            Self.configurationColumns + [
                "base", "new", "metric", "base_median", "base_ci_low", "base_ci_high", "new_median", "new_ci_low",
                "new_ci_high", "delta_percent",
                "p_value", "significant", "n_base", "n_new",
            ])
        for block in blocks {
            let config = Self.configurationColumns.map { c in block.configuration.first { $0.0 == c }?.1 ?? "" }
            for l in block.lines {
                let b = l.baseInterval
                let n = l.newInterval
                out += CSV.line(
                    config + [
                        block.baseLabel, block.newLabel, l.metric, ResultRow.number(l.baseMedian),
                        ResultRow.number(b.low), ResultRow.number(b.high),
                        ResultRow.number(l.newMedian), ResultRow.number(n.low), ResultRow.number(n.high),
                        ResultRow.number(l.deltaPercent),
                        ResultRow.number(l.p), l.significant ? "1" : "0", String(l.base.count), String(l.new.count),
                    ])
            }
        }
        return out
    }
}
