import ArgumentParser
import HMMLab

/// `bench calibrate`: the machine's floors for the substrate's operations.
struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure what allocation, descriptor atomics and copies cost on this machine.")

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

    @Flag(help: "Text with each figure's detail beside it (wider than 80 columns).")
    var wide = false

    func run() throws {
        guard frames >= 1024, frames % 512 == 0, frames <= 1 << 26 else {
            throw badInput("--frames \(frames) is not allowed: use a multiple of 512 between 1024 and 67108864")
        }
        guard (1...1000).contains(reps) else { throw badInput("--reps \(reps) is not allowed: use 1 to 1000") }
        // Two pools of --frames frames, their descriptors and the 64 MiB copy buffers: refused before
        // anything is allocated when the machine has not got it (the kernel's OOM killer would end the
        // run with nothing said).
        let need = frames * 2 * (PageSize.bytes + PhysicalMemory.descriptorSize) + (128 << 20)
        let available = Runner.availableBytes()
        guard need <= available else {
            throw badInput("--frames \(frames) needs \(Region.formatBytes(need)) but only \(Region.formatBytes(available)) is available (MemAvailable plus free hugetlb pages); use fewer frames")
        }
        let request = try parseBacking(backing)
        var groups = Set(Calibration.Group.allCases)
        if let only {
            groups = []
            for name in only.split(separator: ",") {
                guard let g = Calibration.Group(rawValue: String(name)) else {
                    throw badInput("--only '\(name)' is not a group; use \(Calibration.Group.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                groups.insert(g)
            }
        }
        let calibration: Calibration
        do {
            calibration = try Calibration.measure(frames: frames, repetitions: reps, backing: request, groups: groups)
        } catch {
            throw failure(error.description)
        }
        switch format {
        case .csv:
            print("metric,value,unit")
            for f in calibration.figures { print(CSV.line([f.name, ResultRow.number(f.value), f.unit]), terminator: "") }
        case .text: print(calibration.text(frames: frames, repetitions: reps, wide: wide))
        }
    }
}

extension String {
    func padding(toLength n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    func leftPadding(toLength n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
