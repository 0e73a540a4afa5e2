/// The report as plain text (80 columns) and as Markdown.
extension Report {
    /// Plain text for a mail: titles flush left, content indented, every line at most 80 columns.
    public var text: String {
        var out: [String] = []
        for section in sections {
            if !section.title.isEmpty { out.append(TextBlock.wrap(section.title)) }
            switch section.content {
            case .lines(let lines): out += lines.map { TextBlock.wrap("  " + $0, indent: "    ") }
            case .commands(let commands): out += commands.map { Self.continued("  " + $0) }
            case .table(let text, _): out.append(TextBlock.wrapLines(text.trailingNewlineRemoved))
            }
            out.append("")
        }
        return out.joined(separator: "\n")
    }

    /// The same as Markdown: a heading per section, bullets, code blocks for commands, the tables.
    public var markdown: String {
        var out: [String] = []
        for section in sections {
            if !section.title.isEmpty { out.append("### \(section.title)\n") }
            switch section.content {
            case .lines(let lines): out += lines.map { "- " + $0 }
            case .commands(let commands): out += ["```sh"] + commands + ["```"]
            case .table(_, let markdown): out.append(markdown.trailingNewlineRemoved)
            }
            out.append("")
        }
        return out.joined(separator: "\n")
    }

    /// A shell command broken at spaces into lines of at most 80 columns, each but the last ending
    /// in ` \` so it still pastes into a shell; an option stays on the line of its value. A `#`
    /// comment is wrapped as comment lines.
    static func continued(_ command: String) -> String {
        if command.drop(while: { $0 == " " }).hasPrefix("#") { return TextBlock.wrap(command, indent: "  #   ") }
        let glued = command.replacing(/(--[a-z-]+) (?!-)/) { "\($0.1)\u{1}" }
        let pieces = TextBlock.wrap(glued, width: TextBlock.width - 2, indent: "      ").split(separator: "\n")
        return pieces.enumerated().map { $0.offset < pieces.count - 1 ? $0.element + " \\" : String($0.element) }
            .joined(separator: "\n").replacing("\u{1}", with: " ")
    }
}

extension String {
    var trailingNewlineRemoved: String {
        var s = Substring(self)
        while s.last == "\n" { s = s.dropLast() }
        return String(s)
    }
}
