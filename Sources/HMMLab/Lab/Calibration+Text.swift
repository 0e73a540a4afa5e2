/// `bench calibrate`'s text: the figures in aligned columns.
extension Calibration {
    /// The pools as `#` comment lines and one figure per line (name, value, unit) with its detail on
    /// the line under it, every line at most 80 columns; `wide` puts the detail beside the unit.
    public func text(frames: Int, repetitions: Int, wide: Bool = false, notes: [String] = []) -> String {
        let comments =
            ["# hmm-lab calibrate: \(frames) frames per pool, median of \(repetitions)"]
            + (memorySummary.split(separator: "\n").map(String.init) + notes).map { "# " + $0 }
        var lines = comments.map { wide ? $0 : TextBlock.wrap($0, indent: "#   ") }
        let rows = figures.map { [$0.name, Summary.fixed($0.value, 2), $0.unit] + (wide ? [$0.detail] : []) }
        let table = TextBlock.table(rows, leftAligned: 1).split(separator: "\n").map(String.init)
        for (row, figure) in zip(table, figures) {
            lines.append(row)
            if !wide { lines.append(TextBlock.wrap("    " + figure.detail, indent: "    ")) }
        }
        return lines.joined(separator: "\n")
    }
}
