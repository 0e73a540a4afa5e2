import CLinux
import CPfm
import Glibc

/// A perf event resolved by libpfm4 from its name (`perf::page-faults`, `cycles`, `dTLB-load-misses`, …).
struct PerfEventSpec: Sendable, Equatable {
    /// The name as given.
    public var name: String
    /// The fully qualified name libpfm4 resolved it to, e.g. `perf::PERF_COUNT_SW_PAGE_FAULTS`.
    var qualifiedName: String
    /// `perf_event_attr.type`: 0 hardware, 1 software, 3 hardware cache, 4 raw, …
    public var type: UInt32
    public var config: UInt64
    var config1: UInt64
    var config2: UInt64

    /// Whether the event is counted by a hardware PMU (everything but `PERF_TYPE_SOFTWARE`).
    var isHardware: Bool { type != PERF_TYPE_SOFTWARE.rawValue }

    /// The attribute to open it with: user space only (`exclude_kernel`, `exclude_hv`) unless running as
    /// root, so it works unprivileged at `perf_event_paranoid` 2; disabled until enabled.
    func attribute() -> perf_event_attr {
        var attr = perf_event_attr()
        attr.size = UInt32(MemoryLayout<perf_event_attr>.size)
        attr.type = type
        attr.config = config
        attr.config1 = config1
        attr.config2 = config2
        attr.disabled = 1
        attr.exclude_kernel = geteuid() == 0 ? 0 : 1
        attr.exclude_hv = 1
        attr.read_format = UInt64(PERF_FORMAT_TOTAL_TIME_ENABLED.rawValue | PERF_FORMAT_TOTAL_TIME_RUNNING.rawValue)
        return attr
    }
}

/// Why a perf event cannot be used.
public enum PerfEventError: Error, Equatable, Sendable, CustomStringConvertible {
    /// libpfm4 does not know the name: bad input.
    case unknownEvent(String, reason: String)
    /// libpfm4 could not be initialised.
    case libpfmUnavailable(String)
    /// A known event that cannot be opened on this machine (no PMU, not permitted, …).
    case cannotOpen(String, SystemError)

    public var description: String {
        switch self {
        case .unknownEvent(let name, let reason):
            "unknown perf event '\(name)': \(reason) (names are libpfm4's, e.g. page-faults, cycles, dTLB-load-misses; see showevtinfo)"
        case .libpfmUnavailable(let reason): "libpfm4 could not be initialised: \(reason)"
        case .cannotOpen(let name, let error): "perf event '\(name)' cannot be opened here: \(error)"
        }
    }
}

/// One open perf event counting the calling thread (`perf_event_open(2)` with pid 0, cpu -1).
///
/// The Counters of the harness open one per event per worker thread; this type is the single place
/// where an event is encoded, opened, enabled, read and closed.
struct PerfEvent: ~Copyable {
    public let spec: PerfEventSpec
    /// The file descriptor.
    public let fd: Int32

    /// Opens `spec` for the calling thread, disabled.
    public init(_ spec: PerfEventSpec) throws(PerfEventError) {
        self.spec = spec
        self.fd = try Self.open(spec)
    }

    /// `perf_event_open(attr, 0, -1, -1, FD_CLOEXEC)`: a descriptor counting the calling thread, disabled.
    static func open(_ spec: PerfEventSpec) throws(PerfEventError) -> Int32 {
        var attr = spec.attribute()
        let fd = clinux_perf_event_open(&attr, 0, -1, -1, UInt(PERF_FLAG_FD_CLOEXEC))
        guard fd >= 0 else { throw .cannotOpen(spec.name, .last("perf_event_open", spec.qualifiedName)) }
        return fd
    }

    deinit { close(fd) }

    /// Resets and starts counting (`PERF_EVENT_IOC_RESET`, `PERF_EVENT_IOC_ENABLE`).
    public func start() {
        _ = clinux_perf_reset(fd, 0)
        _ = clinux_perf_enable(fd, 0)
    }

    /// Stops counting (`PERF_EVENT_IOC_DISABLE`).
    public func stop() { _ = clinux_perf_disable(fd, 0) }

    /// The count, scaled by `time_enabled / time_running` when the event was multiplexed; nil when the
    /// read failed or the event never ran.
    public func read() -> UInt64? { Self.read(fd) }

    /// Reads a descriptor opened with ``attribute()``'s read format.
    static func read(_ fd: Int32) -> UInt64? {
        var values = (UInt64(0), UInt64(0), UInt64(0))
        let n = withUnsafeMutableBytes(of: &values) { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n == 24 else { return nil }
        let (value, enabled, running) = values
        if running == 0 { return enabled == 0 ? value : nil }
        if running == enabled { return value }
        return UInt64(Double(value) * Double(enabled) / Double(running))
    }
}

/// Event-name resolution through libpfm4 (`pfm_get_os_event_encoding` with `PFM_OS_PERF_EVENT_EXT`).
enum PerfEvents {
    private static let initialised: Result<Void, PerfEventError> = {
        let rc = pfm_initialize()
        if rc != PFM_SUCCESS { return .failure(.libpfmUnavailable(String(cString: pfm_strerror(rc)))) }
        return .success(())
    }()

    /// Resolves a name to an event specification.
    /// - Throws: ``PerfEventError/unknownEvent(_:reason:)`` when libpfm4 does not know the name.
    static func resolve(_ name: String) throws(PerfEventError) -> PerfEventSpec {
        if case .failure(let error) = initialised { throw error }
        var attr = perf_event_attr()
        attr.size = UInt32(MemoryLayout<perf_event_attr>.size)
        var qualified: UnsafeMutablePointer<CChar>? = nil
        let rc: Int32 = withUnsafeMutablePointer(to: &attr) { attrPointer in
            withUnsafeMutablePointer(to: &qualified) { fstr in
                var arg = pfm_perf_encode_arg_t()
                arg.attr = attrPointer
                arg.fstr = fstr
                arg.size = MemoryLayout<pfm_perf_encode_arg_t>.size
                return pfm_get_os_event_encoding(name, Int32(PFM_PLM3), PFM_OS_PERF_EVENT_EXT, &arg)
            }
        }
        defer { free(qualified) }
        guard rc == PFM_SUCCESS else { throw .unknownEvent(name, reason: String(cString: pfm_strerror(rc))) }
        return PerfEventSpec(
            name: name, qualifiedName: qualified.map { String(cString: $0) } ?? name, type: attr.type,
            config: attr.config,
            config1: attr.config1, config2: attr.config2)
    }

    /// What a probe of one event found.
    struct Probe: Sendable {
        public var name: String
        /// Software, hardware, or unknown to libpfm4.
        public var kind: String
        /// Whether it opened on this thread.
        public var opens: Bool
        /// Why not, when it did not (errno name).
        public var reason: String
    }

    /// Software events reviewers expect from `perf stat`.
    static let softwareProbeList = [
        "page-faults", "minor-faults", "major-faults", "context-switches", "cpu-migrations", "task-clock",
    ]
    /// Hardware events the harness wants when a PMU exists.
    static let hardwareProbeList = [
        "cycles", "instructions", "cache-misses", "cache-references", "branch-misses", "dTLB-load-misses",
        "iTLB-load-misses",
    ]

    /// Resolves and opens each event once on the calling thread, then closes it.
    static func probe(_ names: [String] = softwareProbeList + hardwareProbeList) -> [Probe] {
        names.map { name in
            let spec: PerfEventSpec
            do {
                spec = try resolve(name)
            } catch {
                return Probe(name: name, kind: "unknown", opens: false, reason: "\(error)")
            }
            let kind = spec.isHardware ? "hardware" : "software"
            do throws(PerfEventError) {
                let event = try PerfEvent(spec)
                _ = event.fd
                return Probe(name: name, kind: kind, opens: true, reason: "")
            } catch {
                if case .cannotOpen(_, let failure) = error {
                    return Probe(name: name, kind: kind, opens: false, reason: failure.errnoName)
                }
                return Probe(name: name, kind: kind, opens: false, reason: "\(error)")
            }
        }
    }
}
