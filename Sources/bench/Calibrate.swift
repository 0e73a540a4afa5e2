import ArgumentParser
import HMMLab

/// `bench calibrate`: the machine's floors for the substrate's operations.
struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure what allocation, descriptor atomics and copies cost on this machine.")

    @Option(help: "Frames per pool (a multiple of 512, at least 1024).")
    var frames: Int = 16384

    @Option(help: "Timed repetitions per figure (the median is reported).")
    var reps: Int = 5

    @Option(help: "Backing: auto, hugetlb, thp or 4k.")
    var backing: String = "auto"

    @Option(help: "Output format: text or csv.")
    var format: OutputFormat = .text

    @Option(help: "Only these groups of figures, comma-separated: allocation, copy, walk, unified, tlb.")
    var only: String?

    @Option(help: "NUMA node of the system pool; threads run on its CPUs (default 0).")
    var systemNode: Int = 0

    @Option(help: "NUMA node of the device pool (default: the farthest node with memory).")
    var deviceNode: Int?

    @Flag(help: "Text with each figure's detail beside it (wider than 80 columns).")
    var wide = false

    func run() throws {
        guard frames >= 1024, frames % 512 == 0, frames <= 1 << 26 else {
            throw badInput("--frames \(frames) is not allowed: use a multiple of 512 between 1024 and 67108864")
        }
        guard (1...1000).contains(reps) else { throw badInput("--reps \(reps) is not allowed: use 1 to 1000") }
        let request = try parseBacking(backing)
        var groups = Set(Calibration.Group.allCases)
        if let only {
            groups = []
            for name in only.split(separator: ",") {
                guard let g = Calibration.Group(rawValue: String(name)) else {
                    throw badInput(
                        "--only '\(name)' is not a group; use \(Calibration.Group.allCases.map(\.rawValue).joined(separator: ", "))"
                    )
                }
                groups.insert(g)
            }
        }
        let table = NodeTable.read()
        try checkNodes(table)
        try checkMemory(table, request: request, groups: groups)
        let placement = ThreadPlacement(systemNode: systemNode, table: table)
        let pinned = placement.describe(failure: placement.pinCallingThread())
        let calibration: Calibration
        do {
            calibration = try Calibration.measure(
                frames: frames, repetitions: reps, backing: request, groups: groups, systemNode: systemNode,
                deviceNode: deviceNode)
        } catch {
            throw failure(error.description)
        }
        switch format {
        case .csv:
            print("metric,value,unit")
            for f in calibration.figures {
                print(CSV.line([f.name, ResultRow.number(f.value), f.unit]), terminator: "")
            }
        case .text: print(calibration.text(frames: frames, repetitions: reps, wide: wide, notes: [pinned]))
        }
    }
}

extension Calibrate {
    /// Refuses a node without memory, naming the nodes that have some.
    func checkNodes(_ table: NodeTable) throws {
        for (name, node) in [("--system-node", systemNode), ("--device-node", deviceNode)] {
            guard let node, !table.nodesWithMemory.contains(node) else { continue }
            throw badInput(
                "\(name) \(node) is not a NUMA node with memory; nodes with memory: \(table.nodesWithMemory.map(String.init).joined(separator: ","))"
            )
        }
    }

    /// Refuses, before anything is allocated, a calibration whose pools do not fit their nodes (the
    /// kernel's OOM killer would end it with nothing said): the two pools of --frames frames, their
    /// descriptors and the 128 MiB of copy buffers, and with the unified figures the second pair of
    /// pools they make while the first is still mapped.
    func checkMemory(_ table: NodeTable, request: BackingRequest, groups: Set<Calibration.Group>) throws {
        let device = deviceNode ?? table.farthestNodeWithMemory(from: systemNode)
        let first = Calibration.configuration(frames: frames, backing: request)
        var areas: [(name: String, node: Int, bytes: Int, candidates: [Backing])] = [
            ("system pool", systemNode, first.systemBytes, request.candidates),
            ("device pool", device, first.deviceBytes, request.candidates),
            ("descriptors", systemNode, 2 * frames * PhysicalMemory.descriptorSize, [.thp, .small]),
            ("copy buffers", systemNode, 128 << 20, [.small]),
        ]
        if groups.contains(.unified) {
            let half = frames / 2 * PageSize.bytes
            areas += [
                ("unified system pool", systemNode, 3 * half + 11 * PageSize.pmdBytes, request.candidates),
                ("unified device pool", device, half + 2 * PageSize.pmdBytes, request.candidates),
            ]
        }
        if let refusal = PoolPlan(areas, table: table).refusal(sizedBy: "--frames \(frames)", unit: "frames") {
            throw badInput(refusal)
        }
    }
}

extension String {
    func padding(toLength n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    func leftPadding(toLength n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
