import CLinux
import Glibc

/// The ``Workload`` of `--engine kernel`: a real anonymous mapping of this process with its pages put
/// in the states of a ``Mix`` by real system calls, for the running kernel's test driver to migrate.
/// The same seed gives the same page states and THP blocks as the model's workload
/// (``Workload/assign(pages:mix:thp:seed:)``) and the same 16-byte page headers.
///
/// Building, in order:
/// 1. `mmap` the range 2 MiB aligned, `MADV_NOHUGEPAGE` (or `MADV_HUGEPAGE` with THP blocks); write the
///    `cow` pages.
/// 2. With `cow` pages, fork a child that sleeps until the repetition ends and shares only this range
///    (``forkSharingChild()``): its written pages, so far only the `cow` ones, are then shared
///    copy-on-write.
/// 3. Write the THP blocks (each first write faults in a PMD-mapped THP), the other written pages,
///    read-fault the `zero` pages.
/// 4. `MADV_PAGEOUT` the `swap` pages (needs swap: the VM lane's zram), `HMM_DMIRROR_MIGRATE_TO_DEV`
///    the `device` pages, `vmsplice` the `pinned` pages into a pipe, whose buffers hold a reference on
///    each page (`migrate_vma_check_page` then refuses it) until the pipe is closed.
final class KernelWorkload {
    public let start: UInt64
    public let pages: Int
    public let seed: UInt64
    let kinds: [PageKind]
    let thpBlocks: Set<Int>
    let mapping: UnsafeMutableRawPointer
    let mappingBytes: Int
    private var child: pid_t = 0
    private var pipes: [Int32] = []
    private var mapped = true

    /// Why the range could not be built.
    struct BuildError: Error, CustomStringConvertible {
        public var description: String
    }

    public init(config: RunConfig, seed: UInt64, device: DmirrorDevice, systemNode: Int) throws(BuildError) {
        pages = config.pages
        self.seed = seed
        (kinds, thpBlocks) = Workload.assign(pages: config.pages, mix: config.mix, thp: config.thp, seed: seed)
        let bytes = pages * PageSize.bytes
        mappingBytes = bytes + PageSize.pmdBytes
        guard
            let p = mmap(nil, mappingBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
            p != MAP_FAILED
        else {
            throw BuildError(description: "mmap of \(pages) pages: \(SystemError.name(of: errno))")
        }
        mapping = p
        let aligned = (UInt64(UInt(bitPattern: p)) + PageSize.pmdSize - 1) & PageSize.pmdMask
        start = aligned
        do throws(BuildError) {
            do {
                try NUMA.bind(p, length: mappingBytes, toNode: systemNode)
            } catch {
                throw BuildError(description: "binding the range to node \(systemNode): \(error)")
            }
            try build(device: device)
        } catch {
            tearDown()
            throw error
        }
    }

    deinit { tearDown() }

    public func address(_ k: Int) -> UInt64 { pageAddress(start, k) }
    func pointer(_ k: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: UInt(address(k)))! }

    /// The header written page `k` holds, the model's (``Workload/header(page:seed:)``).
    public func header(_ k: Int) -> (UInt64, UInt64) { Workload.header(page: k, seed: seed) }

    private func writeHeader(_ k: Int) {
        let (a, b) = header(k)
        pointer(k).storeBytes(of: a, as: UInt64.self)
        pointer(k).storeBytes(of: b, toByteOffset: 8, as: UInt64.self)
    }

    private func build(device: DmirrorDevice) throws(BuildError) {
        let advice = thpBlocks.isEmpty ? MADV_NOHUGEPAGE : MADV_HUGEPAGE
        try check(
            madvise(pointer(0), pages * PageSize.bytes, advice),
            "madvise(\(thpBlocks.isEmpty ? "MADV_NOHUGEPAGE" : "MADV_HUGEPAGE"))")
        for k in 0..<pages where kinds[k] == .cow { writeHeader(k) }
        if kinds.contains(.cow) { try forkSharingChild() }
        for b in thpBlocks.sorted() { for k in b * PageSize.pmdPages..<(b + 1) * PageSize.pmdPages { writeHeader(k) } }
        for k in 0..<pages where !thpBlocks.contains(k / PageSize.pmdPages) {
            switch kinds[k] {
            case .none, .cow: break
            case .zero: _ = clinux_read_byte(pointer(k))
            default: writeHeader(k)
            }
        }
        try forEachRun(.swap) { k, n throws(BuildError) in
            try check(
                madvise(pointer(k), n * PageSize.bytes, clinux_madv_pageout()),
                "madvise(MADV_PAGEOUT) of \(n) pages at page \(k)")
        }
        let wanted = kinds.indices.filter { kinds[$0] == .swap }
        if !wanted.isEmpty {
            let entries = pagemap()
            let swapped = wanted.filter { entries.indices.contains($0) && Self.isSwapped(entries[$0]) }.count
            guard swapped == wanted.count else {
                throw BuildError(
                    description:
                        "MADV_PAGEOUT swapped \(swapped) of the \(wanted.count) swap pages: this machine needs swap (the VM lane has zram)"
                )
            }
        }
        try forEachRun(.device) { k, n throws(BuildError) in
            var first = k
            while first < k + n {
                let m = min(Device.migrationWindow, k + n - first)
                let r = device.migrateToDevice(address(first), pages: m)
                guard r.errno == 0 else {
                    throw BuildError(
                        description:
                            "migrating \(m) pages at page \(first) to \(device.path): \(SystemError.name(of: r.errno))")
                }
                first += m
            }
        }
        try pinPages()
    }

    /// Forks a child that keeps the range's pages mapped until it is killed, and nothing else of this
    /// process's writable memory (``clinux_fork_sharing_only``): otherwise every first write of the
    /// harness to its own heap and stack after the fork would be a copy-on-write fault, counted in
    /// the repetition's `do_wp_page`, `handle_mm_fault`, TLB flushes and invalidations.
    private func forkSharingChild() throws(BuildError) {
        let pid = clinux_fork_sharing_only(mapping, mappingBytes)
        guard pid > 0 else {
            throw BuildError(description: "fork of the copy-on-write child: \(SystemError.name(of: -pid))")
        }
        child = pid
    }

    /// `vmsplice`s each pinned page into a pipe (up to 256 pages a pipe, as `pipe-max-size` allows).
    private func pinPages() throws(BuildError) {
        var fds: [Int32] = [-1, -1]
        var room = 0
        for k in 0..<pages where kinds[k] == .pinned {
            if room == 0 {
                guard pipe(&fds) == 0 else { throw BuildError(description: "pipe: \(SystemError.name(of: errno))") }
                pipes += fds
                let size = clinux_set_pipe_size(fds[1], 1 << 20)
                room = size > 0 ? Int(size) / PageSize.bytes : 16
            }
            let n = clinux_vmsplice(fds[1], pointer(k), PageSize.bytes)
            guard n == PageSize.bytes else {
                throw BuildError(
                    description: "vmsplice of page \(k): \(n < 0 ? SystemError.name(of: Int32(-n)) : "\(n) bytes")")
            }
            room -= 1
        }
    }

    private func forEachRun(_ kind: PageKind, _ body: (Int, Int) throws(BuildError) -> Void) throws(BuildError) {
        var k = 0
        while k < pages {
            guard kinds[k] == kind else {
                k += 1
                continue
            }
            var e = k
            while e < pages, kinds[e] == kind { e += 1 }
            try body(k, e - k)
            k = e
        }
    }

    private func check(_ result: Int32, _ what: String) throws(BuildError) {
        guard result == 0 else { throw BuildError(description: "\(what): \(SystemError.name(of: errno))") }
    }

    /// The range's `/proc/self/pagemap` entries (empty when it cannot be read).
    func pagemap() -> [UInt64] {
        let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var entries = [UInt64](repeating: 0, count: pages)
        let want = pages * 8
        let got = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(pageNumber(start)) * 8) }
        return got == want ? entries : []
    }

    /// A swap entry (bit 62) of a type below 16, a swap file's (device-private and migration entries
    /// have the types above `MAX_SWAPFILES`, 24 and up in 7.2).
    static func isSwapped(_ e: UInt64) -> Bool { e & (1 << 62) != 0 && e & 0x1F < 16 }

    /// Pages of the range whose entry is a device-private one now: `/proc/self/pagemap` reports them as
    /// swap entries (bit 62) of a type no swap file has (-1 when pagemap cannot be read).
    func pagesOnDevice() -> Int {
        let entries = pagemap()
        guard !entries.isEmpty else { return -1 }
        return entries.reduce(0) { n, e in n + (e & (1 << 62) != 0 && e & 0x1F >= 16 ? 1 : 0) }
    }

    /// Reads every page through the device (`HMM_DMIRROR_READ`, which does not migrate) and counts the
    /// pages whose header (written pages) or zeros (untouched and zero pages) are wrong.
    func corruptPages(device: DmirrorDevice) -> Int {
        var corrupt = 0
        var first = 0
        while first < pages {
            let n = min(Device.migrationWindow, pages - first)
            let r = device.read(address(first), pages: n)
            if r.errno != 0 {
                corrupt += n
            } else {
                for i in 0..<n
                where !device.bounce(page: i, holds: kinds[first + i].isWritten ? header(first + i) : (0, 0)) {
                    corrupt += 1
                }
            }
            first += n
        }
        return corrupt
    }

    /// Ends the child, closes the pipes (dropping the pins) and unmaps the range.
    func tearDown() {
        if child > 0 {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
            child = 0
        }
        for fd in pipes { close(fd) }
        pipes = []
        if mapped { munmap(mapping, mappingBytes) }
        mapped = false
    }
}
