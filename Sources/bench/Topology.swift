import ArgumentParser
import HMMLab

/// `bench topology`: the machine as the lab sees it.
struct Topology: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the NUMA nodes, hugetlb pages, THP mode, the backing each pool of the default run gets, and which perf events open.")

    @Option(help: "Output format: text or csv.")
    var format: OutputFormat = .text

    @Option(help: "The system node of the run to predict (default 0).")
    var systemNode: Int?

    @Option(help: "The device node of the run to predict (default: the farthest node with memory).")
    var deviceNode: Int?

    @Option(help: ArgumentHelp("The same as --system-node.", visibility: .hidden))
    var node: Int?

    func validate() throws {
        if systemNode != nil, node != nil { throw badInput("--node is another name for --system-node: give one of them") }
        let nodes = NUMA.nodesWithMemory()
        for (name, value) in [("--system-node", systemNode ?? node), ("--device-node", deviceNode)] {
            guard let value, !nodes.contains(value) else { continue }
            throw badInput("\(name) \(value) is not a NUMA node with memory; nodes with memory: \(nodes.map(String.init).joined(separator: ","))")
        }
    }

    func run() throws {
        let topology = MachineTopology.read(systemNode: systemNode ?? node ?? 0, deviceNode: deviceNode)
        switch format {
        case .text: print(topology.text())
        case .csv: print(topology.csv(), terminator: "")
        }
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, csv
}
