/// The `#` comment lines a result file starts with, before its CSV header: what produced it that the
/// rows' columns do not say. Each is `# key: value`; CSV readers told to skip `#` lines skip them.
///
///     # command: bench --strategy all --reps 4 --out /tmp/a.csv
///     # version: hmm-lab 0.6.0 (commit 67b3441d1a2b)
///     # hugetlb: 2 MiB pages: 160 reserved, 160 free at the start
///
/// (per node on a machine with several: `node 0 160 reserved, 49 free; node 1 …`).
extension ResultFile {
    /// The keys of the metadata lines.
    enum MetadataKey: String, Sendable {
        case command, version, hugetlb
    }

    /// The metadata lines for a run started by `command` (its arguments, the program first) of the
    /// build `version`.
    public static func metadataLines(command: [String], version: String) -> [String] {
        let program = command.first.map { _ in "bench" } ?? ""
        let line = ([program] + command.dropFirst().map(shellQuoted)).joined(separator: " ")
        let nodes = NodeTable.read().nodes
        let perNode = nodes.map {
            "\(nodes.count > 1 ? "node \($0.id) " : "")\($0.hugetlbTotal) reserved, \($0.hugetlbFree) free"
        }
        let configured = NodeTable.hugetlbPages(node: 0, file: "nr_hugepages") != nil
        let hugetlb =
            configured ? "2 MiB pages: " + perNode.joined(separator: "; ") + " at the start" : "not configured"
        return [
            "# \(MetadataKey.command.rawValue): \(line)", "# \(MetadataKey.version.rawValue): \(version)",
            "# \(MetadataKey.hugetlb.rawValue): \(hugetlb)",
        ]
    }

    /// `argument` as a POSIX shell reads it back: as it is when it holds only safe characters, else in
    /// single quotes.
    public static func shellQuoted(_ argument: String) -> String {
        let safe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=,:@%+"
        if !argument.isEmpty, argument.allSatisfy({ safe.contains($0) }) { return argument }
        return "'" + argument.replacingAll("'", with: "'\\''") + "'"
    }

    /// Removes the leading `#` lines from `text` and returns them as key → value (a line without
    /// `key: ` is kept under its whole text) and how many lines were removed.
    static func takeMetadata(_ text: inout String) -> (values: [String: String], lines: Int) {
        var values: [String: String] = [:]
        var count = 0
        var rest = text[...]
        while rest.hasPrefix("#") {
            let end = rest.firstIndex(of: "\n") ?? rest.endIndex
            let line = rest[rest.index(after: rest.startIndex)..<end].drop { $0 == " " }
            if let colon = line.firstRange(of: ": ") {
                values[String(line[..<colon.lowerBound])] = String(line[colon.upperBound...])
            } else {
                values[String(line)] = ""
            }
            count += 1
            rest = end < rest.endIndex ? rest[rest.index(after: end)...] : rest[end...]
        }
        if count > 0 { text = String(rest) }
        return (values, count)
    }
}
