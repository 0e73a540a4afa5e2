import ArgumentParser
import HMMLab

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "hmm-lab: measure the kernel's HMM device-memory paths on real memory.",
        subcommands: [Topology.self])
}
