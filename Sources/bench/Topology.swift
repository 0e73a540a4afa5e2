import ArgumentParser
import HMMLab

/// `bench topology`: the machine as the lab sees it.
struct Topology: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Print the NUMA nodes, hugetlb pages, THP mode, the backing each pool of the default run gets, and which perf events open."
    )

    @Option(help: "Output format: text or csv.")
    var format: OutputFormat = .text

    @Option(help: "The system node of the run to predict (default 0).")
    var systemNode: Int?

    @Option(help: "The device node of the run to predict (default: the farthest node with memory).")
    var deviceNode: Int?

    @Option(help: "The number of devices of the run to predict, each with its own pool (default 1).")
    var devices: String?

    @Option(
        help:
            "The device nodes of the run to predict, one per device (default: round-robin over the other nodes with memory, farthest first)."
    )
    var deviceNodes: String?

    @Option(help: ArgumentHelp("The same as --system-node.", visibility: .hidden))
    var node: Int?

    /// The run to predict, checked as a run checks these options.
    func config() throws -> RunConfig {
        if systemNode != nil, node != nil {
            throw badInput("--node is another name for --system-node: give one of them")
        }
        var options: [String: String] = [:]
        for (key, value) in [
            ("system-node", (systemNode ?? node).map(String.init)), ("device-node", deviceNode.map(String.init)),
            ("devices", devices), ("device-nodes", deviceNodes),
        ] {
            if let value { options[key] = value }
        }
        do {
            return try RunConfig.parse(options)
        } catch {
            throw badInput(error.description)
        }
    }

    func validate() throws { _ = try config() }

    func run() throws {
        let topology = MachineTopology.read(try config())
        switch format {
        case .text: print(topology.text())
        case .csv: print(topology.csv(), terminator: "")
        }
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, csv
}
