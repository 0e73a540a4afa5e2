/// The parsers of the run options whose values are lists, or depend on another option.
extension RunOption {
    /// `--strategy`: one strategy, or `all` of them in run order.
    static func parseStrategies(_ v: Value) throws(ConfigError) -> [Strategy] {
        if v.text == "all" { return Strategy.allCases }
        guard let s = Strategy(rawValue: v.text) else {
            throw v.error(
                "is not a strategy; use one of \(Strategy.allCases.map(\.rawValue).joined(separator: ", ")), all")
        }
        return [s]
    }

    /// `--device-nodes LIST`: one node with memory per device (which gives the count); with
    /// `--devices`, the counts must agree; `--device-node` and `--device-nodes` exclude each other.
    static func parseDeviceNodes(_ v: Value, into c: inout RunConfig) throws(ConfigError) {
        if v.given["device-node"] != nil {
            throw ConfigError("--device-nodes '\(v.text)' and --device-node both name device nodes; give one of them")
        }
        var nodes: [Int] = []
        for part in v.text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let n = Int(part.trimmingWhitespace()), v.nodes.contains(n) else {
                throw v.itemError(
                    "'\(part)' is not a node with memory on this machine; use a comma-separated list of \(v.nodes.map(String.init).joined(separator: ", "))"
                )
            }
            nodes.append(n)
        }
        if v.given["devices"] != nil, nodes.count != c.devices {
            throw ConfigError(
                "--device-nodes '\(v.text)' names \(nodes.count) nodes for --devices \(c.devices); give one node per device"
            )
        }
        guard nodes.count <= 16 else {
            throw ConfigError("--device-nodes '\(v.text)' names \(nodes.count) nodes; use at most 16 (one per device)")
        }
        c.devices = nodes.count
        c.deviceNodes = nodes
    }

    /// `--counters LIST`: perf events libpfm4 knows, each once, or `none`.
    static func parseCounters(_ v: Value) throws(ConfigError) -> [String] {
        let names = v.text.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
        let counters = names == ["none"] ? [] : names
        if Set(counters).count != counters.count { throw v.error("names an event twice") }
        for name in counters {
            do {
                _ = try PerfEvents.resolve(name)
            } catch {
                throw ConfigError(
                    "--counters: '\(name)' is not a perf event libpfm4 knows; use names such as page-faults, context-switches, cycles, dTLB-load-misses (or none)"
                )
            }
        }
        return counters
    }

    /// `--inject POINT=P,...`: a probability per injection point of ``FaultInjector``, and `device4k`
    /// for a 4 KiB device allocation failing.
    static func parseInjection(_ v: Value, into c: inout RunConfig) throws(ConfigError) {
        let allowed = FaultInjector.Point.allCases.map(\.name) + ["device4k"]
        for part in v.text.split(separator: ",") {
            let pair = part.split(separator: "=")
            guard pair.count == 2 else {
                throw v.itemError("'\(part)' is not POINT=PROBABILITY; use points \(allowed.joined(separator: ", "))")
            }
            let name = pair[0].trimmingWhitespace()
            guard let p = Double(pair[1].trimmingWhitespace()), p.isFinite, p >= 0, p <= 1 else {
                throw v.itemError("probability '\(pair[1])' of \(name) is not a number from 0 to 1")
            }
            if name == "device4k" {
                c.deviceSmallFail = p
            } else if let point = FaultInjector.Point(name: name) {
                c.inject[point] = p
            } else {
                throw v.itemError("'\(name)' is not an injection point; use \(allowed.joined(separator: ", "))")
            }
        }
    }

    /// `--tlb-flush real|count`: the flush cost alone, which must agree with `--costs` when both are given.
    static func parseTLBFlush(_ v: Value, into c: inout RunConfig) throws(ConfigError) {
        guard v.text == "real" || v.text == "count" else { throw v.error("is not allowed; use real or count") }
        if v.given["costs"] != nil, c.costs.contains(.flush) != (v.text == "real") {
            throw ConfigError("--tlb-flush \(v.text) contradicts --costs \(c.costs); give one of them")
        }
        if v.text == "real" { c.costs.insert(.flush) } else { c.costs.remove(.flush) }
    }
}
