/// The state a page of a workload is put in before a repetition is timed (`--mix`).
public enum PageKind: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    /// Never touched: no page-table entry (`pte_none`).
    case none
    /// Read-faulted: mapped to the zero page.
    case zero
    /// Written: a private anonymous page, writable and anon-exclusive.
    case present
    /// Written, then shared copy-on-write with a forked child that still maps it.
    case cow
    /// Written, then swapped out: a swap entry.
    case swap
    /// Written, then migrated to this device: a device-private entry.
    case device
    /// Written, then pinned (`pin_user_pages`): an extra reference, so it cannot migrate.
    case pinned

    public var description: String { name }
    public var name: String {
        switch self {
        case .none: "none"
        case .zero: "zero"
        case .present: "present"
        case .cow: "cow"
        case .swap: "swap"
        case .device: "device"
        case .pinned: "pinned"
        }
    }

    public init?(name: String) {
        guard let kind = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = kind
    }

    /// Whether the page holds written data (a header the checks can find).
    var isWritten: Bool { self != .none && self != .zero }
}

/// Fractions of a range's pages per state (`--mix present=0.8,swap=0.2`); they sum to 1.
public struct Mix: Sendable, Equatable, CustomStringConvertible {
    /// Fraction per ``PageKind`` raw value.
    private(set) var fractions: [Double]

    public static let allPresent = Mix(fractions: PageKind.allCases.map { $0 == .present ? 1 : 0 })

    init(fractions: [Double]) { self.fractions = fractions }

    public subscript(kind: PageKind) -> Double {
        get { fractions[Int(kind.rawValue)] }
        set { fractions[Int(kind.rawValue)] = newValue }
    }

    /// Parses `STATE=FRACTION,...`.
    /// - Throws: a ``ConfigError`` naming the bad part and what is allowed.
    public static func parse(_ text: String) throws(ConfigError) -> Mix {
        let allowed = PageKind.allCases.map(\.name).joined(separator: ", ")
        var mix = Mix(fractions: Array(repeating: 0, count: PageKind.allCases.count))
        var seen = Set<PageKind>()
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        for part in parts {
            let pair = part.split(separator: "=", omittingEmptySubsequences: false)
            guard pair.count == 2 else {
                throw ConfigError(
                    "--mix '\(text)': '\(part)' is not STATE=FRACTION; use e.g. present=0.8,swap=0.2 with states \(allowed)"
                )
            }
            let name = pair[0].trimmingWhitespace()
            guard let kind = PageKind(name: name) else {
                throw ConfigError("--mix '\(text)': '\(name)' is not a page state; use \(allowed)")
            }
            guard !seen.contains(kind) else { throw ConfigError("--mix '\(text)': '\(name)' is given twice") }
            seen.insert(kind)
            guard let value = Double(pair[1].trimmingWhitespace()), value.isFinite, value >= 0, value <= 1 else {
                throw ConfigError("--mix '\(text)': fraction '\(pair[1])' of \(name) is not a number from 0 to 1")
            }
            mix[kind] = value
        }
        let sum = mix.fractions.reduce(0, +)
        guard abs(sum - 1) < 1e-6 else {
            throw ConfigError("--mix '\(text)': fractions sum to \(String(format6: sum)); they must sum to 1")
        }
        return mix
    }

    /// `present=0.8,swap=0.2`, states in the order of ``PageKind``, zero fractions left out.
    public var description: String {
        PageKind.allCases.compactMap { kind in
            let f = self[kind]
            guard f > 0 else { return nil }
            return "\(kind.name)=\(Self.format(f))"
        }.joined(separator: ",")
    }

    /// A fraction without trailing zeros (0.25, 1, 0.1).
    static func format(_ value: Double) -> String {
        if value == value.rounded() { return String(Int(value)) }
        var s = String(value)
        if s.contains("e") { s = String(format6: value) }
        return s
    }

    /// Page counts per state for `pages` pages: the fractions' shares, rounded so they sum to `pages`
    /// (largest remainder).
    public func counts(pages: Int) -> [Int] {
        let exact = fractions.map { $0 * Double(pages) }
        var counts = exact.map { Int($0.rounded(.down)) }
        var left = pages - counts.reduce(0, +)
        let order = exact.indices.sorted { (exact[$0] - Double(counts[$0])) > (exact[$1] - Double(counts[$1])) }
        for i in order where left > 0 && fractions[i] > 0 {
            counts[i] += 1
            left -= 1
        }
        return counts
    }
}

extension String {
    /// A decimal rendering with up to six fractional digits, trailing zeros removed.
    init(format6 value: Double) {
        // Beyond what six decimals in an Int can hold (a corrupted input's huge value): Swift's form.
        guard value.isFinite, abs(value) < 9e12 else {
            self = "\(value)"
            return
        }
        let scaled = (value * 1_000_000).rounded()
        let whole = Int(scaled) / 1_000_000
        var frac = String(Int(abs(scaled)) % 1_000_000)
        frac = String(repeating: "0", count: 6 - frac.count) + frac
        while frac.last == "0" { frac.removeLast() }
        self = frac.isEmpty ? String(whole) : "\(whole).\(frac)"
    }
}

/// A configuration value that is not allowed: the message names the value and what is allowed.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
