import CLinux
import Glibc
import Synchronization

/// The harness's perf counters (`--counters`): each event opened once per worker thread — the thread
/// that runs the strategy and each Dispatch thread the copy engine uses — counting from then on, and
/// read as the sum over those threads. Mutator threads are not counted: they are the load, not the path
/// measured.
///
/// An event libpfm4 does not know is bad input (``RunConfig/parse(_:nodes:)`` rejects it). A known
/// event that cannot be opened here (no PMU in a VM, not permitted) is listed in ``unavailable`` and
/// reads as nil, so its column stays empty: never zero, never guessed.
public final class PerfCounterSet: @unchecked Sendable {
    /// The event names, in column order.
    public let names: [String]
    /// Events that could not be opened, with the reason (errno name).
    public let unavailable: [(name: String, reason: String)]
    private let specs: [PerfEventSpec?]
    /// One descriptor per event per thread that entered; -1 where the event is unavailable.
    private let descriptors = LabMutex<[[Int32]]>([])
    private var key = pthread_key_t()

    /// Resolves the events and tries each on the calling thread.
    /// - Throws: ``PerfEventError/unknownEvent(_:reason:)`` for a name libpfm4 does not know.
    public init(_ names: [String]) throws(PerfEventError) {
        self.names = names
        var specs: [PerfEventSpec?] = []
        var unavailable: [(name: String, reason: String)] = []
        for name in names {
            let spec = try PerfEvents.resolve(name)
            do {
                let fd = try PerfEvent.open(spec)
                close(fd)
                specs.append(spec)
            } catch {
                if case .cannotOpen(_, let failure) = error {
                    unavailable.append((name, failure.errnoName))
                } else {
                    unavailable.append((name, "\(error)"))
                }
                specs.append(nil)
            }
        }
        self.specs = specs
        self.unavailable = unavailable
        pthread_key_create(&key, nil)
    }

    deinit {
        descriptors.withLock { threads in
            for fds in threads { for fd in fds where fd >= 0 { close(fd) } }
        }
        pthread_key_delete(key)
    }

    /// Opens and enables this set's events for the calling thread, once per thread.
    func enterWorkerThread() {
        guard pthread_getspecific(key) == nil else { return }
        var fds: [Int32] = []
        for spec in specs {
            guard let spec, let fd = try? PerfEvent.open(spec) else {
                fds.append(-1)
                continue
            }
            _ = clinux_perf_reset(fd, 0)
            _ = clinux_perf_enable(fd, 0)
            fds.append(fd)
        }
        descriptors.withLock { $0.append(fds) }
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
    }

    /// Threads counted so far.
    var threadCount: Int { descriptors.withLock { $0.count } }

    /// The current totals over every thread that entered, per event; nil for an unavailable event.
    public func read() -> [UInt64?] {
        descriptors.withLock { threads in
            specs.indices.map { i -> UInt64? in
                guard specs[i] != nil else { return nil }
                var total: UInt64 = 0
                for fds in threads where fds[i] >= 0 { total &+= PerfEvent.read(fds[i]) ?? 0 }
                return total
            }
        }
    }

    /// The CSV column name of an event: `cnt_` and the name with every non-alphanumeric turned into `_`.
    static func columnName(_ event: String) -> String {
        "cnt_" + String(event.map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
    }
}
