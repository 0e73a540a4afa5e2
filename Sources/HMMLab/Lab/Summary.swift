/// The summary a run prints, in the style of `perf bench`: per strategy and direction, op latency
/// (median over repetitions of each repetition's median op) with its spread (the 95% interval of that
/// median, as `bench compare` gives it), walks and restarts per op, pages migrated and throughput
/// (medians).
public struct Summary: Sendable {
    public struct Line: Sendable {
        public var strategy: String
        public var direction: String
        public var reps: Int
        var opMedianNs: Double
        /// Each repetition's median op, ns: the sample the median and its interval come from.
        var opMediansNs: [Double]
        /// The 95% interval of ``opMedianNs`` (``Statistics/medianInterval(_:confidence:)``).
        var opIntervalNs: (low: Double, high: Double)
        /// The larger distance from the median to an end of its interval, in % of the median; nan
        /// with one repetition.
        var spreadPercent: Double
        var walksPerOp: Double
        var restartsPerOp: Double
        var pagesMigrated: Double
        var throughputGBps: Double
        var verifyFailures: Int?
        var lostStores: Int
    }

    /// What the summary needs of one repetition's row: from a ``ResultRow`` or a row read back from a
    /// result CSV.
    public struct Sample: Sendable {
        public var strategy: String
        public var direction: String
        var opP50Ns: Double
        public var ops: Int
        public var walks: Int
        var walkRestarts: Int
        var pagesMigrated: Int
        var throughputGBps: Double
        var verifyFailures: Int?
        var lostStores: Int
    }

    public var lines: [Line]

    public init(rows: [ResultRow]) {
        self.init(
            samples: rows.map {
                Sample(
                    strategy: $0.strategy, direction: $0.direction, opP50Ns: Double($0.opP50Ns), ops: $0.ops,
                    walks: $0.walks, walkRestarts: $0.walkRestarts,
                    pagesMigrated: $0.pagesMigrated, throughputGBps: $0.throughputGBps,
                    verifyFailures: $0.verifyFailures, lostStores: $0.lostStores)
            })
    }

    /// The summary of the rows of a result CSV (columns as ``ResultRow/columns`` names them).
    public init(table: ResultTable) {
        self.init(
            samples: table.rows.map { r in
                let f = r.fields
                func int(_ c: String) -> Int { Int(Double(f[c] ?? "") ?? 0) }
                return Sample(
                    strategy: f["strategy"] ?? "", direction: f["direction"] ?? "",
                    opP50Ns: Double(f["op_p50_ns"] ?? "") ?? .nan, ops: int("ops"),
                    walks: int("walks"), walkRestarts: int("walk_restarts"), pagesMigrated: int("pages_migrated"),
                    throughputGBps: Double(f["throughput_gbps"] ?? "") ?? .nan,
                    verifyFailures: f["verify_failures"].flatMap { Int($0) }, lostStores: int("lost_stores"))
            })
    }

    public init(samples: [Sample]) {
        var keys: [(String, String)] = []
        for r in samples where !keys.contains(where: { $0 == (r.strategy, r.direction) }) {
            keys.append((r.strategy, r.direction))
        }
        lines = keys.map { key in Self.line(samples.filter { ($0.strategy, $0.direction) == key }) }
    }

    /// One strategy and direction's repetitions summarised.
    static func line(_ group: [Sample]) -> Line {
        let medians = group.map(\.opP50Ns)
        let ci = Statistics.medianInterval(medians)
        let ops = Double(group.reduce(0) { $0 + $1.ops })
        let verify: Int? =
            group.contains { $0.verifyFailures == nil } ? nil : group.reduce(0) { $0 + ($1.verifyFailures ?? 0) }
        return Line(
            strategy: group[0].strategy, direction: group[0].direction, reps: group.count, opMedianNs: median(medians),
            opMediansNs: medians,
            opIntervalNs: (ci.low, ci.high), spreadPercent: Compare.intervalPercent(medians) ?? .nan,
            walksPerOp: Double(group.reduce(0) { $0 + $1.walks }) / ops,
            restartsPerOp: Double(group.reduce(0) { $0 + $1.walkRestarts }) / ops,
            pagesMigrated: median(group.map { Double($0.pagesMigrated) }),
            throughputGBps: median(group.map(\.throughputGBps)),
            verifyFailures: verify, lostStores: group.reduce(0) { $0 + $1.lostStores })
    }

    public static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return .nan }
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// A duration in the unit that suits it: `812 ns`, `45.3 µs`, `1.234 ms`, `2.5 s`.
    static func duration(_ ns: Double) -> String {
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

    /// The table, one line per strategy and direction, in 80 columns: op p50 with its 95% interval,
    /// walks and restarts per op, pages migrated, GB/s; repetitions, `--verify` failures and lost
    /// stores on the lines under it. `wide` gives every column on one line.
    public func text(wide: Bool = false) -> String {
        if wide { return wideText }
        var table = [["strategy", "direction", "op p50 ±95%", "walks", "restarts", "pages", "GB/s"]]
        for l in lines {
            table.append([
                l.strategy, l.direction, Compare.withInterval(l.opMediansNs, .nanoseconds), Self.fixed(l.walksPerOp, 2),
                Self.fixed(l.restartsPerOp, 2),
                Self.fixed(l.pagesMigrated, 0), Self.fixed(l.throughputGBps, 2),
            ])
        }
        let notes = [repsNote, checksNote].map { TextBlock.wrap($0) }
        return TextBlock.table(table, leftAligned: 2) + "\n" + notes.joined(separator: "\n")
    }

    /// Every column on one line (`--wide`): wider than 80 columns.
    var wideText: String {
        var table = [
            [
                "strategy", "direction", "reps", "op median", "± 95%", "walks/op", "restarts/op", "migrated", "GB/s",
                "verify", "lost",
            ]
        ]
        for l in lines {
            table.append([
                l.strategy, l.direction, String(l.reps), Self.duration(l.opMedianNs),
                l.spreadPercent.isFinite ? Self.fixed(l.spreadPercent, 1) + "%" : "-",
                Self.fixed(l.walksPerOp, 2), Self.fixed(l.restartsPerOp, 2), Self.fixed(l.pagesMigrated, 0),
                Self.fixed(l.throughputGBps, 2),
                l.verifyFailures.map(String.init) ?? "-", String(l.lostStores),
            ])
        }
        return TextBlock.table(table, leftAligned: 2)
    }

    /// What the narrow table's columns are, and the repetitions behind them.
    var repsNote: String {
        let reps = Set(lines.map(\.reps)).sorted().map(String.init).joined(separator: ", ")
        return "op p50: median of the repetitions' median ops, ± the larger distance to its 95% "
            + "interval (below 6 repetitions the range); walks, restarts: per op; pages: migrated per "
            + "repetition; GB/s: a window over the median op. Repetitions: \(reps)."
    }

    /// `--verify` failures and lost mutator stores: one line, naming the rows that have any.
    var checksNote: String {
        let bad = lines.filter { ($0.verifyFailures ?? 0) > 0 || $0.lostStores > 0 }
        let verified = lines.allSatisfy { $0.verifyFailures != nil }
        if bad.isEmpty {
            return (verified ? "verify failures: 0; " : "verify: not asked (--verify); ") + "lost stores: 0."
        }
        return bad.map {
            "\($0.strategy) \($0.direction): \($0.verifyFailures.map(String.init) ?? "-") verify failures, \($0.lostStores) lost stores"
        }
        .joined(separator: "; ") + "."
    }

    /// The same as CSV (header and one record per line).
    public var csv: String {
        var out = CSV.line([
            "strategy", "direction", "reps", "op_median_ns", "op_ci_low_ns", "op_ci_high_ns", "spread_percent",
            "walks_per_op", "restarts_per_op", "pages_migrated", "throughput_gbps",
            "verify_failures", "lost_stores",
        ])
        for l in lines {
            out += CSV.line([
                l.strategy, l.direction, String(l.reps), ResultRow.number(l.opMedianNs),
                ResultRow.number(l.opIntervalNs.low),
                ResultRow.number(l.opIntervalNs.high), ResultRow.number(l.spreadPercent),
                ResultRow.number(l.walksPerOp),
                ResultRow.number(l.restartsPerOp), ResultRow.number(l.pagesMigrated),
                ResultRow.number(l.throughputGBps),
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
                + "\"op_ci_low_ns\": \(num(l.opIntervalNs.low)), \"op_ci_high_ns\": \(num(l.opIntervalNs.high)), \"spread_percent\": \(num(l.spreadPercent)), \"walks_per_op\": \(num(l.walksPerOp)), \"restarts_per_op\": \(num(l.restartsPerOp)), "
                + "\"pages_migrated\": \(num(l.pagesMigrated)), \"throughput_gbps\": \(num(l.throughputGBps)), "
                + "\"verify_failures\": \(l.verifyFailures.map(String.init) ?? "null"), \"lost_stores\": \(l.lostStores)}"
        }
        return "[\n" + items.joined(separator: ",\n") + "\n]"
    }
}
