/// One CSV row: one strategy, repetition and direction (README, "CSV columns").
///
/// Counts are totals over the repetition's timed part; `*_ns` phase columns are means per op; a value
/// that was not measured (a counter that cannot open here, `verify_failures` without `--verify`, phase
/// times of the CPU-fault direction) is empty, never zero.
public struct ResultRow: Sendable {
    public var metadata: RunMetadata
    var timestamp: String
    /// `model` (the lab) or `kernel` (the running kernel's lib/test_hmm.c, ``KernelRunner``).
    public var engine = "model"
    public var strategy: String
    public var direction: String
    public var config: RunConfig
    public var rep: Int
    public var ops = 0
    var pagesRequested = 0
    var pagesMigrated = 0
    var pagesSkipped = 0
    public var walks = 0
    var walkRestarts = 0
    var ptesVisited = 0
    public var faults = 0
    var cowBreaks = 0
    var swapins = 0
    var migrationEntries = 0
    var tlbFlushes = 0
    /// `lru_add_drain_all` calls.
    var lruDrains = 0
    var invalidations = 0
    var notifierRetries = 0
    /// Notifier retries whose invalidation came from another job (`--jobs`).
    var crossJobRetries = 0
    var folioLockFails = 0
    var thpMigrated = 0
    var thpSplits = 0
    var deviceAllocFails = 0
    var bytesCopied = 0
    var verifyFailures: Int?
    public var mutatorStores = 0
    var lostStores = 0
    var wallNs: UInt64 = 0
    public var opMeanNs = 0.0
    var opP50Ns: UInt64 = 0
    var opP90Ns: UInt64 = 0
    var opP99Ns: UInt64 = 0
    var opMaxNs: UInt64 = 0
    /// Phase means per op, ns (nil where the direction has no such phase).
    var walkNs: Double?
    var faultNs: Double?
    var collectNs: Double?
    var allocNs: Double?
    var copyNs: Double?
    var finalizeNs: Double?
    /// Host shootdowns for the modelled TLB flushes, mean per op, ns: part of the phase they fall in.
    var flushNs: Double?
    var copyGBps: Double?
    /// Time threads of the run waited for a lock held by another, ns, totals over the timed part
    /// (contended acquisitions only): the mmap lock (either mode), the split PTE and PMD locks, the
    /// lruvec locks, the frame allocators' locks.
    var mmapLockWaitNs = 0
    var ptlWaitNs = 0
    var lruLockWaitNs = 0
    var allocLockWaitNs = 0
    /// Time `mmu_interval_read_begin` waited for a running invalidation of the device's interval, ns.
    var notifierWaitNs = 0
    /// A window's bytes over the median op: the one throughput the summary, `compare` and the plots use.
    var throughputGBps = 0.0
    /// The bytes migrated over the timed part's wall time (a mean rate: pages moved twice count twice).
    var wallGBps = 0.0

    /// Sets both rates once the op percentiles are in: `throughput_gbps` from the median op and the
    /// window, `wall_gbps` from `bytesMigrated` and `wall` ns.
    mutating func setRates(bytesMigrated: Int, wall: UInt64) {
        throughputGBps = opP50Ns > 0 ? Double(config.windowPages * PageSize.bytes) / Double(opP50Ns) : 0
        wallGBps = wall > 0 ? Double(bytesMigrated) / Double(wall) : 0
    }
    /// One per requested counter, nil when it could not be read here.
    public var counters: [UInt64?] = []
    /// With `--engine kernel`: calls of each of ``KernelFunctions/traced`` in the repetition's timed
    /// part (`kfn_<name>`), nil when the function cannot be traced in the running kernel.
    var kernelCalls: [UInt64?] = []
    /// Columns this row's engine cannot give: written empty, never zero.
    var unmeasured: Set<String> = []

    /// The fixed columns' names, in order (``fixedColumns``).
    public static let columns = fixedColumns.map(\.name)

    /// The header for a run with these counters (and, with `--engine kernel`, these traced kernel functions).
    public static func header(counters: [String], kernelFunctions: [String] = []) -> [String] {
        columns + counters.map(PerfCounterSet.columnName) + kernelFunctions.map { "kfn_" + $0 }
    }

    /// The row's fields, in header order: each fixed column's value (empty where ``unmeasured``), then
    /// the counters and the kernel function calls (empty where not read).
    public var fields: [String] {
        Self.fixedColumns.map { unmeasured.contains($0.name) ? "" : $0.value(self) }
            + counters.map { $0.map(String.init) ?? "" } + kernelCalls.map { $0.map(String.init) ?? "" }
    }

    /// A number with at most three decimals (empty when not a number).
    public static func number(_ value: Double) -> String {
        guard value.isFinite else { return "" }
        let rounded = (value * 1000).rounded() / 1000
        if rounded == rounded.rounded(), abs(rounded) < 1e15 { return String(Int(rounded)) }
        return String(format6: rounded)
    }
}

/// RFC 4180 CSV: writing rows and reading them back.
public enum CSV {
    /// One line: fields joined by commas, quoted when they hold a comma, quote or newline.
    public static func line(_ fields: [String]) -> String {
        fields.map { field in
            guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
            return "\"" + field.replacingAll("\"", with: "\"\"") + "\""
        }.joined(separator: ",") + "\n"
    }

    /// Why a CSV text could not be read.
    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public var line: Int
        public var message: String
        public var description: String { "line \(line): \(message)" }
    }

    /// Parses a result file's text: its records, and what its completion record (the last line, not
    /// a record) says; the leading metadata lines (``ResultFile/takeMetadata(_:)``) are skipped.
    public static func parse(
        resultFile text: String
    ) throws(ParseError) -> (records: [[String]], completion: ResultFile.Completion?) {
        var body = text
        let completion = ResultTable.takeCompletionRecord(&body)
        _ = ResultFile.takeMetadata(&body)
        return (try parse(body), completion)
    }

    /// Parses CSV text into records (fields per line); quoted fields may hold commas, quotes and newlines.
    public static func parse(_ text: String) throws(ParseError) -> [[String]] {
        var reader = CSVRecordReader(text)
        while let ch = reader.next() {
            if reader.quoted {
                reader.quotedScalar(ch)
            } else {
                try reader.plainScalar(ch)
            }
        }
        return try reader.finish()
    }
}

/// The state of ``CSV/parse(_:)``: the records so far, the record and field being read,
/// whether inside quotes, and the line (for errors).
private struct CSVRecordReader {
    var records: [[String]] = []
    var record: [String] = []
    var field = ""
    var quoted = false
    var fieldStarted = false
    var line = 1
    var iterator: String.UnicodeScalarView.Iterator
    /// A scalar read ahead (after a closing quote) and not yet used.
    var pending: Unicode.Scalar?

    init(_ text: String) { iterator = text.unicodeScalars.makeIterator() }

    mutating func next() -> Unicode.Scalar? {
        if let p = pending {
            pending = nil
            return p
        }
        return iterator.next()
    }

    /// A scalar inside quotes: `""` is a quote, `"` then anything else closes the field.
    mutating func quotedScalar(_ ch: Unicode.Scalar) {
        guard ch == "\"" else {
            if ch == "\n" { line += 1 }
            field.unicodeScalars.append(ch)
            return
        }
        let after = next()
        if after == "\"" {
            field.unicodeScalars.append("\"")
        } else {
            quoted = false
            pending = after
        }
    }

    /// A scalar outside quotes: an opening quote, a separator, a line end or a field's scalar.
    mutating func plainScalar(_ ch: Unicode.Scalar) throws(CSV.ParseError) {
        switch ch {
        case "\"":
            guard !fieldStarted, field.isEmpty else {
                throw .init(line: line, message: "a quote inside an unquoted field")
            }
            quoted = true
            fieldStarted = true
        case ",":
            endField()
        case "\r":
            break
        case "\n":
            endField()
            records.append(record)
            record = []
            line += 1
        default:
            field.unicodeScalars.append(ch)
            fieldStarted = true
        }
    }

    mutating func endField() {
        record.append(field)
        field = ""
        fieldStarted = false
    }

    /// The records, the last one kept when the text does not end in a newline.
    mutating func finish() throws(CSV.ParseError) -> [[String]] {
        if quoted { throw .init(line: line, message: "a quoted field is not closed (the file ends inside it)") }
        if fieldStarted || !record.isEmpty || !field.isEmpty {
            record.append(field)
            records.append(record)
        }
        return records
    }
}
