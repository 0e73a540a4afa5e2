import Glibc

/// The CSV file a run writes: opened (and its header written) before the run starts, so an output
/// path that cannot be written is found at once; each row appended and flushed as it comes, so an
/// interrupted run keeps every finished row.
public final class ResultFile {
    public let path: String
    private let file: UnsafeMutablePointer<FILE>

    /// Creates (or truncates) `path`, creating its directory when it is `results/` or another single
    /// missing level, and writes the header.
    public init(path: String, header: [String]) throws(SystemError) {
        self.path = path
        if let slash = path.lastIndex(of: "/") {
            let dir = String(path[..<slash])
            if !dir.isEmpty, access(dir, F_OK) != 0 { _ = mkdir(dir, 0o755) }
        }
        guard let f = fopen(path, "w") else { throw .last("open", path) }
        file = f
        try write(CSV.line(header))
    }

    deinit { fclose(file) }

    /// Appends one row and flushes it to the file.
    public func append(_ row: ResultRow) throws(SystemError) {
        try write(CSV.line(row.fields))
    }

    private func write(_ text: String) throws(SystemError) {
        let ok = text.withCString { fputs($0, file) >= 0 } && fflush(file) == 0
        if !ok { throw .last("write", path) }
    }

    /// `results/<UTC date-time>-<strategy>.csv`.
    public static func defaultPath(strategy: String) -> String { "results/\(UTCTime.now().compact)-\(strategy).csv" }
}
