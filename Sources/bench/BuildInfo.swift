import Glibc
import HMMLab

/// What `bench --version` prints: the tool version and the commit of the git checkout the binary was
/// built in (found from the executable's path, `<checkout>/.build/...`, with `git rev-parse`; a `+`
/// marks uncommitted changes there). SwiftPM has no build-time hook without a plugin, so this is read
/// when asked; a binary copied out of its checkout prints `commit unknown`.
enum BuildInfo {
    static var versionLine: String {
        "hmm-lab \(RunMetadata.toolVersion) (\(commit.map { "commit \($0)" } ?? "commit unknown"))"
    }

    static var commit: String? {
        guard let root = checkout else { return nil }
        guard let head = shell("git -C '\(root)' rev-parse --short=12 HEAD 2>/dev/null"), !head.isEmpty else {
            return nil
        }
        let dirty =
            shell("git -C '\(root)' status --porcelain --untracked-files=no 2>/dev/null").map { !$0.isEmpty } ?? false
        return head + (dirty ? "+" : "")
    }

    /// The directory above the `.build` that holds the running executable.
    static var checkout: String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let path = String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard let build = parts.firstIndex(of: ".build"), build > 0 else { return nil }
        return parts[..<build].joined(separator: "/")
    }

    /// The first line `command` prints, nil when it cannot run.
    static func shell(_ command: String) -> String? {
        guard let pipe = popen(command, "r") else { return nil }
        defer { pclose(pipe) }
        var line = [CChar](repeating: 0, count: 256)
        guard fgets(&line, Int32(line.count), pipe) != nil else { return "" }
        return String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
