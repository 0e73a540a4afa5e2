import ArgumentParser
import HMMLab

/// `--engine`: which implementation makes the range resident.
enum Engine: String, CaseIterable {
    /// The lab's model of mm/hmm.c and mm/migrate_device.c.
    case model
    /// The running kernel, through lib/test_hmm.c's `/dev/hmm_dmirror0` (``KernelRunner``).
    case kernel

    static func parse(_ value: String?) throws -> Engine {
        guard let value else { return .model }
        guard let e = Engine(rawValue: value) else {
            throw badInput("--engine '\(value)' is not an engine; use model or kernel")
        }
        return e
    }
}

/// `bench --engine kernel`: the run through the kernel's test driver, rows as they finish.
func runKernel(_ config: RunConfig, output: OutputOptions) throws {
    do {
        try KernelRunner.check(config)
    } catch {
        throw error.badInput ? badInput(error.description) : failure(error.description)
    }
    let file = try openResultFile(
        output, strategy: config.strategyName,
        header: ResultRow.header(counters: config.counters, kernelFunctions: KernelRunner.functionNames))
    let path = file.path
    let runner: KernelRunner
    do {
        runner = try KernelRunner(config: config)
    } catch {
        throw error.badInput ? badInput(error.description) : failure(error.description)
    }
    if !output.quiet {
        if runner.skippedUnified {
            printError(
                "bench: note: unified left out: this kernel (\(runner.metadata.kernel)) lacks the unified RFC's driver support"
            )
        }
        if let why = runner.functionsUnavailable {
            printError("bench: note: kernel function counts unavailable: \(why); kfn_ columns left empty")
        }
        if let missing = runner.functions?.missing, !missing.isEmpty {
            printError(
                "bench: note: not traceable in this kernel (inlined or absent): \(missing.joined(separator: ", ")); their kfn_ columns are left empty"
            )
        }
    }
    installInterruptHandler()
    let rows = try drive(runner, file: file, quiet: output.quiet, label: "kernel ")
    try finish(file, runner.interrupted ? .interrupted : .complete)
    if !rows.isEmpty { printKernelSummary(rows, runner: runner, output: output, path: path) }
    if runner.interrupted {
        printError("bench: interrupted: \(rows.count) finished row\(rows.count == 1 ? "" : "s") kept in \(path)")
        throw ExitCode(130)
    }
}

/// The kernel run's summary: the machine and the driver as comments in text.
func printKernelSummary(_ rows: [ResultRow], runner: KernelRunner, output: OutputOptions, path: String) {
    let m = runner.metadata
    let header = [
        "# hmm-lab \(m.toolVersion) bench --engine kernel, run \(m.runId): \(runner.config.settingsLine)",
        "# \(m.host): \(m.cpuModel), \(m.cpus) cpus, \(m.numaNodes) NUMA node\(m.numaNodes == 1 ? "" : "s"), kernel \(m.kernel); "
            + "system node \(m.systemNode), device node \(m.deviceNode); range \(m.backing), THP \(m.thpMode); driver /dev/hmm_dmirror0",
    ]
    let footer = runner.failedOps > 0 ? ["# ioctls that failed with an unexpected errno: \(runner.failedOps)"] : []
    printSummary(rows, format: output.format, path: path, header: header, footer: footer, wide: output.wide)
}
