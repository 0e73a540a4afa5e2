/// Plain text for a mail: lines of at most ``width`` display columns, as the mm and dri-devel lists
/// expect. A column is one Unicode scalar (`µ`, `±` and `→` are one each; the lab prints no wide or
/// combining characters).
public enum TextBlock {
    /// The width every text output fits unless `--wide` is given.
    public static let width = 80

    /// The display columns of `line`.
    public static func columns(_ line: some StringProtocol) -> Int { line.unicodeScalars.count }

    /// `line` broken at spaces into lines of at most `width` columns; continuation lines start with
    /// `indent`. Spacing inside each piece is kept (tables stay aligned); a word longer than the width
    /// breaks after its last comma that fits (a list such as `a=1,b=2,…`), else is cut (a long path).
    /// A line that fits is returned as it is.
    public static func wrap(_ line: String, width: Int = TextBlock.width, indent: String = "  ") -> String {
        var out: [String] = []
        var rest = Array(line.unicodeScalars)
        let lead = Array(indent.unicodeScalars)
        while rest.count > width {
            // The last space that leaves a non-blank piece, else after the last comma, else a hard cut.
            let start = out.isEmpty ? 0 : lead.count
            var cut = width
            if let space = rest[start...width].lastIndex(of: " "), rest[start..<space].contains(where: { $0 != " " }) {
                cut = space
            } else if let comma = rest[start..<width].lastIndex(of: ","), comma > start {
                cut = comma + 1
            }
            var piece = rest[..<cut]
            while piece.last == " " { piece = piece.dropLast() }
            out.append(String(String.UnicodeScalarView(piece)))
            var tail = rest[cut...]
            while tail.first == " " { tail = tail.dropFirst() }
            rest = lead + tail
        }
        out.append(String(String.UnicodeScalarView(rest[...])))
        return out.joined(separator: "\n")
    }

    /// Each line of `text` wrapped by ``wrap(_:width:indent:)``.
    static func wrapLines(_ text: String, width: Int = TextBlock.width, indent: String = "  ") -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map {
            wrap(String($0), width: width, indent: indent)
        }.joined(separator: "\n")
    }

    /// Cells laid out in columns two spaces apart, each as wide as its widest cell; the first
    /// `leftAligned` columns are padded on the right, the rest on the left (numbers).
    public static func table(_ rows: [[String]], leftAligned: Int) -> String {
        guard let first = rows.first else { return "" }
        let widths = first.indices.map { i in rows.map { columns($0[i]) }.max() ?? 0 }
        return rows.map { row in
            row.indices.map { i in
                let pad = String(repeating: " ", count: widths[i] - columns(row[i]))
                return i < leftAligned ? row[i] + pad : pad + row[i]
            }.joined(separator: "  ").trailingSpacesRemoved
        }.joined(separator: "\n")
    }
}

extension String {
    var trailingSpacesRemoved: String {
        var s = Substring(self)
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
