import Foundation
import Glibc
import Testing

/// scripts/plot.py's refusals: one line and exit 2, never a traceback. Needs `python3` (matplotlib is
/// not needed: the output directory is checked before it is imported).
@Suite("plot.py: an output directory it cannot write is one line, not a traceback")
struct PlotScriptTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test("read-only or pseudo filesystems as --out", arguments: ["/proc", "/proc/no-such-dir", "/sys"])
    func unwritableOut(_ out: String) throws {
        guard access("/usr/bin/python3", X_OK) == 0 else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        let csv = Self.repository.appendingPathComponent("Tests/BenchTests/Fixtures/present-a.csv").path
        process.arguments = [Self.repository.appendingPathComponent("scripts/plot.py").path, "--out", out, csv]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = Pipe()
        try process.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 2, "\(out): status \(process.terminationStatus), \(text)")
        #expect(!text.contains("Traceback") && text.split(separator: "\n").count == 1 && text.contains(out), "\(text)")
    }
}
