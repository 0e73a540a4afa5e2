/// Why a ``Region`` could not be created.
public enum RegionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The length is zero, negative or too large.
    case invalidLength(Int)
    /// The node does not exist or has no memory.
    case noSuchNode(Int, available: [Int])
    /// The requested backing cannot be had here; `reasons` says why for each one tried.
    case backingUnavailable(BackingRequest, reasons: [String])
    /// Pages ended up somewhere other than the bound node (read back with `move_pages`).
    case misplaced(expectedNode: Int, found: [Int: Int])
    /// A system call failed for another reason.
    case system(SystemError)

    public var description: String {
        switch self {
        case .invalidLength(let n):
            "invalid region length \(n) bytes: must be between 1 byte and 1 TiB"
        case .noSuchNode(let node, let available):
            "NUMA node \(node) does not exist or has no memory; nodes with memory: \(available.map(String.init).joined(separator: ","))"
        case .backingUnavailable(let request, let reasons):
            "backing '\(request)' is not available here: \(reasons.joined(separator: "; "))"
        case .misplaced(let expected, let found):
            "pages bound to node \(expected) were found on "
                + found.sorted { $0.key < $1.key }.map { "node \($0.key): \($0.value) pages" }.joined(separator: ", ")
        case .system(let error):
            error.description
        }
    }
}
