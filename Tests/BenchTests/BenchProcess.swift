import Foundation
import Glibc

/// Runs the built `bench` executable (it sits next to the test bundle) and collects what it did.
struct BenchProcess {
    var status: Int32
    var stdout: String
    var stderr: String

    /// The `bench` binary of this build.
    static var executable: URL {
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return me.deletingLastPathComponent().appendingPathComponent("bench")
    }

    /// Runs `bench arguments…` to the end.
    static func run(_ arguments: [String], in directory: String? = nil) throws -> BenchProcess {
        let (process, out, err) = try start(arguments, in: directory)
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return BenchProcess(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Starts `bench arguments…` and returns at once.
    static func start(_ arguments: [String], in directory: String? = nil) throws -> (Process, Pipe, Pipe) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        return (process, out, err)
    }

    /// A fresh path under the temporary directory.
    static func temporaryPath(_ name: String) -> String {
        NSTemporaryDirectory() + "hmm-lab-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(name)"
    }
}
