/// The summary a run prints, in the style of `perf bench`: per strategy and direction, op latency
/// (median over repetitions of each repetition's median op) with its spread (half the range of those
/// medians, in % of the median), walks and restarts per op, pages migrated and throughput (medians).
public struct Summary: Sendable {
    public struct Line: Sendable {
        public var strategy: String
        public var direction: String
        public var reps: Int
        public var opMedianNs: Double
        public var spreadPercent: Double
        public var walksPerOp: Double
        public var restartsPerOp: Double
        public var pagesMigrated: Double
        public var throughputGBps: Double
        public var verifyFailures: Int?
        public var lostStores: Int
    }

    public var lines: [Line]

    public init(rows: [ResultRow]) {
        var keys: [(String, String)] = []
        for r in rows where !keys.contains(where: { $0 == (r.strategy, r.direction) }) { keys.append((r.strategy, r.direction)) }
        lines = keys.map { key in
            let group = rows.filter { ($0.strategy, $0.direction) == key }
            let medians = group.map { Double($0.opP50Ns) }
            let median = Self.median(medians)
            let spread = median > 0 ? ((medians.max() ?? 0) - (medians.min() ?? 0)) / 2 / median * 100 : 0
            let ops = Double(group.reduce(0) { $0 + $1.ops })
            let verify: Int? = group.contains { $0.verifyFailures == nil } ? nil : group.reduce(0) { $0 + ($1.verifyFailures ?? 0) }
            return Line(
                strategy: key.0, direction: key.1, reps: group.count, opMedianNs: median, spreadPercent: spread,
                walksPerOp: Double(group.reduce(0) { $0 + $1.walks }) / ops, restartsPerOp: Double(group.reduce(0) { $0 + $1.walkRestarts }) / ops,
                pagesMigrated: Self.median(group.map { Double($0.pagesMigrated) }), throughputGBps: Self.median(group.map(\.throughputGBps)),
                verifyFailures: verify, lostStores: group.reduce(0) { $0 + $1.lostStores })
        }
    }

    public static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return .nan }
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// A duration in the unit that suits it: `812 ns`, `45.3 µs`, `1.234 ms`, `2.5 s`.
    public static func duration(_ ns: Double) -> String {
        guard ns.isFinite else { return "-" }
        if ns < 1_000 { return "\(Int(ns.rounded())) ns" }
        if ns < 1_000_000 { return String(format6: (ns / 100).rounded() / 10) + " µs" }
        if ns < 1_000_000_000 { return String(format6: (ns / 1_000).rounded() / 1_000) + " ms" }
        return String(format6: (ns / 1_000_000).rounded() / 1_000) + " s"
    }

    public static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return "-" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let r = (value * scale).rounded() / scale
        var s = String(format6: r)
        if digits > 0 {
            if !s.contains(".") { s += "." }
            let have = s.count - 1 - s.distance(from: s.startIndex, to: s.firstIndex(of: ".")!)
            s += String(repeating: "0", count: max(0, digits - have))
        }
        return s
    }

    /// The table, one line per strategy and direction.
    public var text: String {
        let header = ["strategy", "direction", "reps", "op median", "± spread", "walks/op", "restarts/op", "migrated", "GB/s", "verify", "lost"]
        var table = [header]
        for l in lines {
            table.append([
                l.strategy, l.direction, String(l.reps), Self.duration(l.opMedianNs), Self.fixed(l.spreadPercent, 1) + "%", Self.fixed(l.walksPerOp, 2),
                Self.fixed(l.restartsPerOp, 2), String(Int(l.pagesMigrated.rounded())), Self.fixed(l.throughputGBps, 2),
                l.verifyFailures.map(String.init) ?? "-", String(l.lostStores),
            ])
        }
        let widths = header.indices.map { i in table.map { $0[i].count }.max() ?? 0 }
        return table.map { row in
            row.indices.map { i in
                let cell = row[i]
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                return i < 2 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// The same as CSV (header and one record per line).
    public var csv: String {
        var out = CSV.line([
            "strategy", "direction", "reps", "op_median_ns", "spread_percent", "walks_per_op", "restarts_per_op", "pages_migrated", "throughput_gbps",
            "verify_failures", "lost_stores",
        ])
        for l in lines {
            out += CSV.line([
                l.strategy, l.direction, String(l.reps), ResultRow.number(l.opMedianNs), ResultRow.number(l.spreadPercent), ResultRow.number(l.walksPerOp),
                ResultRow.number(l.restartsPerOp), ResultRow.number(l.pagesMigrated), ResultRow.number(l.throughputGBps),
                l.verifyFailures.map(String.init) ?? "", String(l.lostStores),
            ])
        }
        return out
    }

    /// The same as a JSON array of objects.
    public var json: String {
        func num(_ v: Double) -> String { v.isFinite ? ResultRow.number(v) : "null" }
        let items = lines.map { l in
            "  {\"strategy\": \"\(l.strategy)\", \"direction\": \"\(l.direction)\", \"reps\": \(l.reps), \"op_median_ns\": \(num(l.opMedianNs)), "
                + "\"spread_percent\": \(num(l.spreadPercent)), \"walks_per_op\": \(num(l.walksPerOp)), \"restarts_per_op\": \(num(l.restartsPerOp)), "
                + "\"pages_migrated\": \(num(l.pagesMigrated)), \"throughput_gbps\": \(num(l.throughputGBps)), "
                + "\"verify_failures\": \(l.verifyFailures.map(String.init) ?? "null"), \"lost_stores\": \(l.lostStores)}"
        }
        return "[\n" + items.joined(separator: ",\n") + "\n]"
    }
}
