import Glibc

/// The CSV file a run writes: opened (and its header written) before the run starts, so an output
/// path that cannot be written is found at once; each row appended and flushed as it comes, so an
/// interrupted run keeps every finished row.
public final class ResultFile {
    public let path: String
    private let file: UnsafeMutablePointer<FILE>
    /// Rows appended so far.
    public private(set) var rows = 0

    /// How a run ended, written as the file's last line (``finish(_:)``): `# end: complete, N rows` or
    /// `# end: interrupted, N rows`. A file without that line did not finish (killed, or failed).
    public enum Completion: String, Sendable {
        case complete, interrupted

        /// The line's prefix; the line is a comment, which CSV readers told to skip `#` lines skip.
        static let marker = "# end: "

        /// The completion a file's last line records, nil when it records none.
        public static func parse(lastLine line: Substring) -> Completion? {
            guard line.hasPrefix(marker) else { return nil }
            let word = line.dropFirst(marker.count).prefix { $0 != "," }
            return Completion(rawValue: String(word))
        }
    }

    /// Creates (or truncates) `path`, creating its directory when it is `results/` or another single
    /// missing level, and writes the `metadata` comment lines (``metadataLines(command:version:)``)
    /// and the header. The file is locked (`flock`) before it is truncated, so a
    /// second bench writing the same path is refused (`EWOULDBLOCK`) instead of interleaving rows;
    /// `exclusive` refuses an existing file (`EEXIST`).
    public init(path: String, header: [String], metadata: [String] = [], exclusive: Bool = false) throws(SystemError) {
        self.path = path
        if let slash = path.lastIndex(of: "/") {
            let dir = String(path[..<slash])
            if !dir.isEmpty, access(dir, F_OK) != 0 { _ = mkdir(dir, 0o755) }
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : 0), 0o644)
        guard fd >= 0 else { throw .last("open", path) }
        // A filesystem without locks (ENOLCK, EOPNOTSUPP: some network and 9p mounts) is written unlocked.
        if flock(fd, LOCK_EX | LOCK_NB) != 0, errno == EWOULDBLOCK {
            let e = SystemError.last("flock", "\(path) is being written by another bench")
            close(fd)
            throw e
        }
        guard ftruncate(fd, 0) == 0, let f = fdopen(fd, "w") else {
            let e = SystemError.last("open", path)
            close(fd)
            throw e
        }
        file = f
        for line in metadata { try write(line + "\n") }
        try write(CSV.line(header))
    }

    /// A new file at `results/<UTC date-time>-<strategy>.csv`, or with `-2`, `-3`, … before `.csv`
    /// when a run started in the same second already has that name: never another run's file.
    public static func createDefault(
        strategy: String, header: [String], metadata: [String] = []
    ) throws(SystemError) -> ResultFile {
        let stem = "results/\(UTCTime.now().compact)-\(strategy)"
        var n = 1
        while true {
            do {
                return try ResultFile(
                    path: n == 1 ? stem + ".csv" : "\(stem)-\(n).csv", header: header, metadata: metadata,
                    exclusive: true)
            } catch  where error.errno == EEXIST && n < 1000 {
                n += 1
            }
        }
    }

    deinit { fclose(file) }

    /// Appends one row and flushes it to the file.
    public func append(_ row: ResultRow) throws(SystemError) {
        try append(fields: row.fields)
    }

    /// Appends one row of fields in the header's order and flushes it to the file.
    public func append(fields: [String]) throws(SystemError) {
        try write(CSV.line(fields))
        rows += 1
    }

    /// Writes the completion record, the file's last line.
    public func finish(_ completion: Completion) throws(SystemError) {
        try write("\(Completion.marker)\(completion.rawValue), \(rows) row\(rows == 1 ? "" : "s")\n")
    }

    private func write(_ text: String) throws(SystemError) {
        let ok = text.withCString { fputs($0, file) >= 0 } && fflush(file) == 0
        if !ok { throw .last("write", path) }
    }

}
