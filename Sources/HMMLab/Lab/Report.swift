/// `bench report`: one or two result files as a block for a review mail: the commands that produced
/// them, the machine, the floors, the comparison (``Compare``) or the run's summary (``Summary``),
/// one sentence per significant change, and how to reproduce it all. The text fits 80 columns.
public struct Report: Sendable {
    /// A part of the report: a title and its content.
    struct Section: Sendable {
        enum Content: Sendable {
            /// Sentences or facts, one a line (wrapped in text, bullets in Markdown).
            case lines([String])
            /// Shell commands (continued with `\` in text, a code block in Markdown).
            case commands([String])
            /// A table already laid out: as plain text, and as Markdown.
            case table(text: String, markdown: String)
        }
        var title: String
        public var content: Content
    }

    public var base: ResultTable
    public var new: ResultTable?
    /// The comparison of `new` against `base`; nil with one file.
    public var comparison: Compare?
    /// The configuration columns that take one value in each file and differ between them: the
    /// change under test, as `column: base value → new value`.
    public var changed: [(column: String, base: String, new: String)]
    /// The report's own command line, for the reproduce section.
    public var reportCommand: String

    /// A report of `base` alone, or of `new` compared with `base`.
    public init(base: ResultTable, new: ResultTable? = nil, reportCommand: String) {
        self.base = base
        self.new = new
        self.reportCommand = reportCommand
        changed = new.map { Self.changedColumns(base: base, new: $0) } ?? []
        comparison = new.map { Compare(base: base, new: $0, ignoring: Set(changed.map(\.column))) }
        // Without the flush cost no shootdown is paid: tlb_shootdown `none` follows from --costs.
        if changed.contains(where: { $0.column == "costs" }) {
            comparison?.mismatches.removeAll { $0.hasPrefix("tlb_shootdown:") }
        }
    }

    /// Configuration columns other than strategy and direction (what a comparison's rows are) with
    /// one value in each file, different between the two.
    static func changedColumns(base: ResultTable, new: ResultTable) -> [(column: String, base: String, new: String)] {
        Compare.configurationColumns.filter { $0 != "strategy" && $0 != "direction" }.compactMap { column in
            let b = Set(base.rows.map { Compare.key($0.fields, [column])[0] })
            let n = Set(new.rows.map { Compare.key($0.fields, [column])[0] })
            guard b.count == 1, n.count == 1, b != n else { return nil }
            return (column, b.first!, n.first!)
        }
    }

    /// The sections, in order.
    var sections: [Section] {
        var out = [
            Section(title: "Commands", content: .commands(commandLines)),
            Section(title: "Machine", content: .lines(machine)),
            Section(title: "Floors", content: .lines(floors)),
        ]
        if let comparison {
            let title = "Comparison: " + (new.map { "\($0.path) against \(base.path)" } ?? "")
            var facts = changed.map { "changed: \($0.column) \($0.base) -> \($0.new)" }
            facts += comparison.blocks.isEmpty ? [] : [""]
            out.append(Section(title: title, content: .lines(facts.filter { !$0.isEmpty })))
            out.append(Section(title: "", content: .table(text: comparison.text, markdown: comparison.markdown)))
            out.append(Section(title: "Significant changes (p <= 0.05)", content: .lines(sentences(comparison))))
        } else {
            let summary = Summary(table: base)
            out.append(
                Section(
                    title: "Summary: \(base.path)",
                    content: .table(text: summary.text(), markdown: "```\n" + summary.text() + "\n```\n")))
        }
        out.append(Section(title: "Reproduce", content: .commands(reproduce)))
        return out
    }

    var tables: [ResultTable] { [base] + (new.map { [$0] } ?? []) }
}
