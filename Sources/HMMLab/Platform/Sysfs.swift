import Glibc

/// Reads the small text files of /sys and /proc that describe the machine.
///
/// Reads use `open`/`read` directly (no Foundation), so they are cheap enough to call per Region.
enum Sysfs {
    /// The whole content of a small text file, or nil when it cannot be read.
    public static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `uname -r`: the running kernel's release.
    static var kernelRelease: String {
        var uts = utsname()
        uname(&uts)
        return withUnsafeBytes(of: &uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// The file's content as one trimmed line.
    static func readLine(_ path: String) -> String? {
        read(path).map { $0.trimmingWhitespace() }
    }

    /// The file's content as an integer.
    static func readInt(_ path: String) -> Int? {
        readLine(path).flatMap { Int($0) }
    }

    /// The bracketed choice of a sysfs mode file, e.g. `madvise` from `always [madvise] never`.
    static func selectedMode(_ path: String) -> String? {
        guard let line = readLine(path) else { return nil }
        guard let open = line.firstIndex(of: "["), let close = line.firstIndex(of: "]"), open < close else {
            return line
        }
        return String(line[line.index(after: open)..<close])
    }

    /// Parses a kernel CPU or node list such as `0-3,8,10-11`.
    static func parseList(_ text: String) -> [Int] {
        var result: [Int] = []
        for part in text.trimmingWhitespace().split(separator: ",") {
            let bounds = part.split(separator: "-")
            if bounds.count == 2, let lo = Int(bounds[0]), let hi = Int(bounds[1]), lo <= hi {
                result.append(contentsOf: lo...hi)
            } else if bounds.count == 1, let one = Int(bounds[0]) {
                result.append(one)
            }
        }
        return result
    }

    /// Writes a CPU or node list as the kernel does (`0-3,8,10-11`): the inverse of ``parseList(_:)``.
    static func formatList(_ values: [Int]) -> String {
        let values = values.sorted()
        var parts: [String] = []
        var i = 0
        while i < values.count {
            var j = i
            while j + 1 < values.count, values[j + 1] == values[j] + 1 { j += 1 }
            parts.append(i == j ? "\(values[i])" : "\(values[i])-\(values[j])")
            i = j + 1
        }
        return parts.joined(separator: ",")
    }

    /// A `Key:   value kB` field of /proc/meminfo-style text, in bytes.
    static func kilobyteField(_ key: String, in text: Substring) -> Int? {
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].split(separator: " ").last.map(String.init) ?? ""
            guard name == key else { continue }
            let fields = line[line.index(after: colon)...].split(separator: " ")
            guard let value = fields.first.flatMap({ Int($0) }) else { return nil }
            return fields.count > 1 && fields[1] == "kB" ? value * 1024 : value
        }
        return nil
    }
}

extension StringProtocol {
    /// The string without leading and trailing spaces, tabs and newlines.
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return "" }
        let last = lastIndex(where: { !isSpace($0) })!
        return String(self[first...last])
    }
}
