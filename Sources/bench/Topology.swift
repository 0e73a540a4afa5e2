import ArgumentParser
import HMMLab

/// `bench topology`: the machine as the lab sees it.
struct Topology: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print NUMA nodes, hugetlb pages, THP mode, the backing 'auto' gets, and which perf events open.")

    @Option(help: "Output format: text or csv.")
    var format: OutputFormat = .text

    @Option(help: "Node to probe the 'auto' backing on.")
    var node: Int = 0

    func validate() throws {
        let nodes = NUMA.nodesWithMemory()
        guard nodes.contains(node) else {
            throw badInput("--node \(node) is not a NUMA node with memory; nodes with memory: \(nodes.map(String.init).joined(separator: ","))")
        }
    }

    func run() throws {
        let topology = MachineTopology.read(probeNode: node)
        switch format {
        case .text: print(topology.text())
        case .csv: print(topology.csv(), terminator: "")
        }
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, csv
}
