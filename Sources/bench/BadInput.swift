import ArgumentParser
import Glibc

/// Prints one line naming the bad value and what is allowed, to standard error, and returns the exit
/// code for bad input (64, `EX_USAGE`). Commands `throw badInput("…")` from `validate()` or `run()`.
func badInput(_ message: String) -> ExitCode {
    fputs("bench: \(message)\n", stderr)
    return ExitCode(64)
}

/// Prints one line for a failure that is not the user's input (a system call, missing memory) and
/// returns exit code 1.
func failure(_ message: String) -> ExitCode {
    fputs("bench: \(message)\n", stderr)
    return ExitCode(1)
}
