import Dispatch
import Glibc

/// Moves the bytes of a migration: copies source frames to destination frames, and clears destinations
/// that stand for holes or the zero page. Jobs are queued, then run together with
/// `DispatchQueue.concurrentPerform` over chunks of at least 64 KiB (a 2 MiB folio is cut into 256 KiB
/// pieces), by at most ``workers`` threads; with one worker, or little data, they run on the calling
/// thread. The kernel's equivalent is `folio_copy()` / `copy_highpage()` per page in the driver
/// (dmirror) and Zi Yan's multi-threaded `folio_mc_copy` series for the parallel case.
///
/// With ``verify`` on, every copied page is compared byte for byte with its source after the copy (the
/// source is locked and unmapped, so it cannot change), and every cleared page is checked to be zero.
///
/// One engine is used by one thread at a time; job storage is allocated once and reused.
public final class CopyEngine: @unchecked Sendable {
    struct Job {
        var source: UnsafeRawPointer?  // nil: clear
        var destination: UnsafeMutableRawPointer
        var bytes: Int
    }

    /// Copy threads at most (`--threads`).
    public let workers: Int
    /// Check every page after it is copied.
    public var verify: Bool
    /// Bytes per piece a large copy is cut into.
    static let pieceBytes = 256 << 10
    /// Bytes a parallel chunk holds at least.
    static let chunkBytes = 64 << 10
    /// One page of zeros, to check cleared pages against.
    nonisolated(unsafe) static let zeros = UnsafeRawPointer(
        UnsafeMutableRawPointer.allocate(byteCount: PageSize.bytes, alignment: PageSize.bytes).initializeMemory(
            as: UInt8.self, repeating: 0, count: PageSize.bytes))

    /// Called on a Dispatch worker thread before it copies its share, so the harness can open its
    /// per-thread perf counters there (``PerfCounterSet/enterWorkerThread()``) and pin the thread.
    /// Each engine has its own, given when it is made, so that runs at once in one process (tests
    /// in parallel) never run each other's hook.
    let workerThreadHook: (@Sendable () -> Void)?

    private var jobs: UnsafeMutablePointer<Job>
    private var capacity: Int
    private var count = 0
    private var queuedBytes = 0
    private var chunkStarts: UnsafeMutablePointer<Int>

    /// Totals since creation or the last ``takeTotals()``.
    private(set) var bytesCopied = 0
    private(set) var bytesCleared = 0
    private(set) var copyNanoseconds: UInt64 = 0
    /// Pages whose verification failed (must stay 0).
    private(set) var verifyFailures = 0
    private(set) var pagesVerified = 0

    public init(
        workers: Int = 1, verify: Bool = false, capacity: Int = 4096, workerThreadHook: (@Sendable () -> Void)? = nil
    ) {
        self.workers = max(1, workers)
        self.verify = verify
        self.workerThreadHook = workerThreadHook
        self.capacity = capacity
        jobs = .allocate(capacity: capacity)
        chunkStarts = .allocate(capacity: capacity + 1)
    }

    deinit {
        jobs.deallocate()
        chunkStarts.deallocate()
    }

    @inline(__always)
    private func append(_ job: Job) {
        if count == capacity { grow() }
        jobs[count] = job
        count += 1
        queuedBytes += job.bytes
    }

    /// Doubles the job storage (out of line: it happens once or twice in an engine's life).
    @inline(never)
    private func grow() {
        let bigger = UnsafeMutablePointer<Job>.allocate(capacity: capacity * 2)
        bigger.moveInitialize(from: jobs, count: count)
        jobs.deallocate()
        jobs = bigger
        chunkStarts.deallocate()
        chunkStarts = .allocate(capacity: capacity * 2 + 1)
        capacity *= 2
    }

    /// Queues a copy of `bytes` bytes (a multiple of 4 KiB).
    public func copy(from source: UnsafeRawPointer, to destination: UnsafeMutableRawPointer, bytes: Int) {
        var done = 0
        while done < bytes {
            let n = min(Self.pieceBytes, bytes - done)
            append(Job(source: source + done, destination: destination + done, bytes: n))
            done += n
        }
    }

    /// Queues a clear of `bytes` bytes.
    public func clear(_ destination: UnsafeMutableRawPointer, bytes: Int) {
        var done = 0
        while done < bytes {
            let n = min(Self.pieceBytes, bytes - done)
            append(Job(source: nil, destination: destination + done, bytes: n))
            done += n
        }
    }

    /// Runs every queued job and empties the queue.
    public func run() {
        guard count > 0 else { return }
        let jobs = self.jobs
        var copied = 0
        for j in 0..<count where jobs[j].source != nil { copied += jobs[j].bytes }
        bytesCopied += copied
        bytesCleared += queuedBytes - copied
        let start = monotonicNanoseconds()
        let total = queuedBytes
        if workers == 1 || total < 2 * Self.chunkBytes {
            execute(0, count)
        } else {
            // Chunks of consecutive jobs holding at least chunkBytes each.
            let target = max(Self.chunkBytes, total / (workers * 4))
            var chunks = 0
            var acc = 0
            chunkStarts[0] = 0
            for j in 0..<count {
                acc += jobs[j].bytes
                if acc >= target {
                    chunks += 1
                    chunkStarts[chunks] = j + 1
                    acc = 0
                }
            }
            if chunkStarts[chunks] != count {
                chunks += 1
                chunkStarts[chunks] = count
            }
            let lanes = min(workers, chunks)
            let box = UnsafeSendable(self)
            let chunkCount = chunks
            let hook = workerThreadHook
            DispatchQueue.concurrentPerform(iterations: lanes) { lane in
                hook?()
                var c = lane
                while c < chunkCount {
                    box.value.execute(box.value.chunkStarts[c], box.value.chunkStarts[c + 1])
                    c += lanes
                }
            }
        }
        copyNanoseconds += monotonicNanoseconds() - start
        if verify { check() }
        count = 0
        queuedBytes = 0
    }

    /// The totals so far, which are then reset.
    public func takeTotals() -> (copied: Int, cleared: Int, nanoseconds: UInt64, verified: Int, failures: Int) {
        defer {
            bytesCopied = 0
            bytesCleared = 0
            copyNanoseconds = 0
            pagesVerified = 0
            verifyFailures = 0
        }
        return (bytesCopied, bytesCleared, copyNanoseconds, pagesVerified, verifyFailures)
    }

    private func execute(_ from: Int, _ to: Int) {
        for j in from..<to {
            let job = jobs[j]
            if let source = job.source {
                RawBytes.copy(to: job.destination, from: source, count: job.bytes)
            } else {
                RawBytes.zero(job.destination, count: job.bytes)
            }
        }
    }

    private func check() {
        for j in 0..<count {
            let job = jobs[j]
            var offset = 0
            while offset < job.bytes {
                let n = min(PageSize.bytes, job.bytes - offset)
                let ok: Bool
                if let source = job.source {
                    ok = RawBytes.equal(job.destination + offset, source + offset, count: n)
                } else {
                    ok = RawBytes.equal(job.destination + offset, Self.zeros, count: n)
                }
                if !ok { verifyFailures += 1 }
                pagesVerified += 1
                offset += n
            }
        }
    }
}

/// Carries a non-Sendable reference into `concurrentPerform`, whose iterations only read it.
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
