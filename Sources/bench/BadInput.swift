import ArgumentParser
import Glibc
import HMMLab

/// Writes one line to standard error (fd 2, unbuffered); without `newline`, the text as it is.
func printError(_ line: String, newline: Bool = true) {
    var text = line
    if newline, !text.hasSuffix("\n") { text += "\n" }
    text.withUTF8 { buffer in _ = Glibc.write(2, buffer.baseAddress, buffer.count) }
}

/// Prints one line naming the bad value and what is allowed, to standard error, and returns the exit
/// code for bad input (64, `EX_USAGE`). Commands `throw badInput("…")` from `validate()` or `run()`.
func badInput(_ message: String) -> ExitCode {
    printError("bench: \(message)")
    return ExitCode(64)
}

/// Prints one line for a failure that is not the user's input (a system call, missing memory) and
/// returns exit code 1.
func failure(_ message: String) -> ExitCode {
    printError("bench: \(message)")
    return ExitCode(1)
}

/// `--backing`'s value, or bad input naming what is allowed.
func parseBacking(_ value: String) throws -> BackingRequest {
    guard let request = BackingRequest(rawValue: value) else {
        throw badInput(
            "--backing '\(value)' is not a backing; use one of \(BackingRequest.allCases.map(\.rawValue).joined(separator: ", "))"
        )
    }
    return request
}
