/// One option of a run (`bench`, `bench sweep`), declared once: its name, its `--help` text, how its
/// value sets a ``RunConfig``, and whether `bench report` rebuilds it from its result column.
///
/// ``all`` is the one list of run options: the command line builds its options from it (their help,
/// in its order), `bench sweep --vary` takes its names, ``RunConfig/parse(_:nodes:)`` parses with it,
/// and `bench report` rebuilds a file's command from it. A new run option is one entry there.
public struct RunOption: Sendable {
    /// The long name, without the leading dashes (`window-pages`).
    public let name: String
    /// The `--help` text, default included.
    public let help: String
    /// Whether `bench report` rebuilds this option, for a file that records no command, from the result
    /// column ``column`` (where it differs from what a default run writes there).
    let rebuilt: Bool
    /// Sets the configuration from the value as typed.
    let parse: @Sendable (inout RunConfig, Value) throws(ConfigError) -> Void
    /// Checks the configuration at this option's place in ``all``, whether the option was given or
    /// not (a default can contradict another option's value).
    let check: (@Sendable (RunConfig) throws(ConfigError) -> Void)?

    /// An option; `parse` sets the configuration from a value, `check` runs after it whether or not
    /// the option was given.
    init(
        _ name: String, _ help: String, rebuilt: Bool = false,
        check: (@Sendable (RunConfig) throws(ConfigError) -> Void)? = nil,
        parse: @escaping @Sendable (inout RunConfig, Value) throws(ConfigError) -> Void
    ) {
        self.name = name
        self.help = help
        self.rebuilt = rebuilt
        self.check = check
        self.parse = parse
    }

    /// The result column named after the option (`window_pages`): a ``rebuilt`` option's records its
    /// value as given; an option that is not rebuilt may have none (`tlb-flush`, `inject`).
    public var column: String { name.replacingAll("-", with: "_") }

    /// Every run option, in `--help` order (which is also the order they are parsed and checked in).
    public static let all: [RunOption] = workload + threadsAndRepetitions + placement + measurement

    /// The option named `name` (without dashes), if it is a run option.
    public static func named(_ name: String) -> RunOption? { all.first { $0.name == name } }

    /// What an option's parser sees: its value as typed, the other options given and the machine's
    /// nodes with memory; it words the one-line error for a bad value.
    struct Value: Sendable {
        /// The option's name, without dashes.
        let option: String
        /// The value as typed.
        let text: String
        /// Every run option given (name → value), for the options that depend on another.
        let given: [String: String]
        /// The nodes with memory a node option may name.
        let nodes: [Int]

        /// `--option 'value' ` followed by `problem` (what is wrong and what is allowed).
        func error(_ problem: String) -> ConfigError { ConfigError("--\(option) '\(text)' \(problem)") }

        /// `--option 'value': ` followed by `problem` (what is wrong with one item of a list).
        func itemError(_ problem: String) -> ConfigError { ConfigError("--\(option) '\(text)': \(problem)") }

        /// An integer in `range`; `what` says what it counts.
        func integer(_ range: ClosedRange<Int>, _ what: String) throws(ConfigError) -> Int {
            try RunConfig.integer(option, text, range, what)
        }

        /// A number from 0 to 1; `what` says what it is.
        func fraction(_ what: String) throws(ConfigError) -> Double { try RunConfig.fraction(option, text, what) }

        /// One of the raw values of `T`: else `is not <noun>; use <allowed>` (`is not allowed` without a noun).
        func choice<T: RawRepresentable>(_ noun: String?, _ allowed: String) throws(ConfigError) -> T
        where T.RawValue == String {
            guard let value = T(rawValue: text) else { throw error("is not \(noun ?? "allowed"); use \(allowed)") }
            return value
        }

        /// A node with memory on this machine.
        func node() throws(ConfigError) -> Int {
            guard let n = Int(text), nodes.contains(n) else {
                throw error(
                    "is not a node with memory on this machine; use one of \(nodes.map(String.init).joined(separator: ", "))"
                )
            }
            return n
        }
    }
}
