/// A range of pages in the states of a ``Mix``, in a fresh address space with a device mirroring it:
/// what one repetition of the harness migrates. Building it is not timed.
///
/// Every written page carries a 16-byte header (its index mixed with the seed, and the complement), so
/// the checks after a run can tell each page's bytes from any other's; mutators store an 8-byte stamp
/// at ``stampOffset``, an injected CPU fault at ``injectedStampOffset``; every other byte stays zero.
///
/// Building, in order (each step as a process would do it):
/// 1. `mmap` the range (2 MiB aligned); read-fault the `zero` pages, write the other written 4 KiB pages.
/// 2. With THP blocks, `madvise(MADV_HUGEPAGE)` the range and write those blocks: each first write
///    faults in a PMD-mapped 2 MiB folio. From then on the VMA is a THP VMA, as in the kernel: a later
///    fault into an untouched 2 MiB block gets a THP too.
/// 3. With `cow` pages, `fork` a child; the child unmaps all the pages that are not `cow` (so only those
///    stay shared) and the parent writes its other written pages again (reusing them: writable and
///    anon-exclusive once more).
/// 4. Swap out the `swap` pages, migrate the `device` pages to the device, pin the `pinned` pages.
final class Workload {
    public let mm: AddressSpace
    public private(set) var device: Device!
    /// Every device mirroring the range (`--devices`), ``device`` first, each with its own device pool
    /// and `dev_pagemap`; window `w` is migrated by device `w % count`.
    public private(set) var devices: [Device] = []
    /// The forked child holding the `cow` pages' other mapping.
    private(set) var child: AddressSpace?
    public let start: UInt64
    public let pages: Int
    public let seed: UInt64
    /// State per page.
    let kinds: [PageKind]
    /// Pages per op window (`--window-pages`).
    let windowPages: Int
    /// Pages per state, as built.
    public private(set) var built: [Int]
    /// The 2 MiB blocks backed by THPs.
    let thpBlockSet: Set<Int>
    /// The pages pinned (`pinned` state), one reference each until teardown.
    private(set) var pins: [Pfn] = []

    /// The references ``pins`` hold, per folio: what the invariant checker is told to expect.
    var pinReferences: [Pfn: Int32] {
        var references: [Pfn: Int32] = [:]
        for p in pins { references[mm.memory.folio(containing: p).pfn, default: 0] += 1 }
        return references
    }

    /// Offset of the mutators' stamp within a page.
    static let stampOffset: UInt64 = 16
    /// Offset of the stamp an injected CPU fault stores (``FaultInjector/Point/cpufault``).
    static let injectedStampOffset: UInt64 = FaultInjector.defaultCPUFaultStampOffset

    /// Why a workload could not be built.
    struct BuildError: Error, CustomStringConvertible {
        public var description: String
    }

    /// `copyWorkerHook` runs on each of the device's copy worker threads (``CopyEngine/workerThreadHook``).
    public init(
        memory: PhysicalMemory, swap: SwapArea?, config: RunConfig, seed: UInt64,
        copyWorkerHook: (@Sendable () -> Void)? = nil
    ) throws(BuildError) {
        pages = config.pages
        self.seed = seed
        do {
            mm = try AddressSpace(memory: memory, swap: swap)
        } catch {
            throw BuildError(description: "address space: \(error)")
        }
        (kinds, thpBlockSet) = Self.assign(pages: config.pages, mix: config.mix, thp: config.thp, seed: seed)
        built = Array(repeating: 0, count: PageKind.allCases.count)
        do {
            start = try mm.mmap(length: config.pages * PageSize.bytes, protection: .readWrite)
        } catch {
            throw BuildError(description: "mmap of \(config.pages) pages: \(error)")
        }
        precondition(
            config.devices <= memory.devicePools.count,
            "\(config.devices) devices on \(memory.devicePools.count) device pools")
        windowPages = config.windowPages
        let mm = self.mm
        devices = (0..<config.devices).map { i in
            Device(
                memory: memory, mm: mm, copyWorkers: config.threads, verify: config.verify,
                selfInvalidation: config.selfInvalidation,
                splitPolicy: config.splitPolicy, copyWorkerHook: copyWorkerHook, pool: memory.devicePools[i])
        }
        for d in devices { d.rangeTimeoutNanoseconds = config.rangeTimeoutNanoseconds }
        device = devices[0]
        if config.deviceLargeFail > 0 {
            for (i, d) in devices.enumerated() {
                d.setAllocationFailure(
                    FailureInjection(order9: config.deviceLargeFail, seed: seed ^ 0x6465_7669_6365 &+ UInt64(i)))
            }
        }
        do {
            try populate(config: config)
        } catch {
            throw BuildError(description: "building the \(config.mix) range: \(error)")
        }
    }

    /// The state of every page, and the THP blocks: whole 2 MiB blocks of present pages chosen at
    /// random (`thp` of the blocks the present pages could fill), then the other states' counts
    /// shuffled over the remaining pages.
    static func assign(pages: Int, mix: Mix, thp: Double, seed: UInt64) -> (kinds: [PageKind], thpBlocks: Set<Int>) {
        var counts = mix.counts(pages: pages)
        var rng = SplitMix64(seed: seed ^ 0x6D69_78)
        var kinds = [PageKind](repeating: .none, count: pages)
        let present = Int(PageKind.present.rawValue)
        let blocks = pages / PageSize.pmdPages
        let wanted = min(blocks, Int((thp * Double(counts[present] / PageSize.pmdPages)).rounded()))
        var chosen = Set<Int>()
        if wanted > 0 {
            var order = Array(0..<blocks)
            order.shuffle(using: &rng)
            chosen = Set(order.prefix(wanted))
            for b in chosen { for k in b * PageSize.pmdPages..<(b + 1) * PageSize.pmdPages { kinds[k] = .present } }
            counts[present] -= wanted * PageSize.pmdPages
        }
        var rest: [PageKind] = []
        rest.reserveCapacity(pages - wanted * PageSize.pmdPages)
        for kind in PageKind.allCases { rest += Array(repeating: kind, count: counts[Int(kind.rawValue)]) }
        rest.shuffle(using: &rng)
        var j = 0
        for k in 0..<pages where !chosen.contains(k / PageSize.pmdPages) {
            kinds[k] = rest[j]
            j += 1
        }
        return (kinds, chosen)
    }

    /// The header a written page `k` holds (two 64-bit words).
    public func header(_ k: Int) -> (UInt64, UInt64) { Self.header(page: k, seed: seed) }

    /// The header of page `k` of a range built from `seed` (the kernel engine's range holds the same).
    public static func header(page k: Int, seed: UInt64) -> (UInt64, UInt64) {
        let a = UInt64(k) &* 0x9E37_79B9_7F4A_7C15 ^ seed
        return (a, ~a)
    }

    public func address(_ k: Int) -> UInt64 { pageAddress(start, k) }

    /// The device that migrates window `op` (round-robin over ``devices``).
    @inline(__always) func device(forWindow op: Int) -> Device {
        devices.count == 1 ? device : devices[op % devices.count]
    }

    private func writeHeader(_ k: Int) throws(FaultError) {
        let (a, b) = header(k)
        try mm.store(a, at: address(k))
        try mm.store(b, at: address(k) + 8)
    }

    private func populate(config: RunConfig) throws {
        let thp = thpBlockSet
        for k in 0..<pages where !thp.contains(k / PageSize.pmdPages) {
            switch kinds[k] {
            case .none: break
            case .zero: _ = try mm.load(UInt8.self, from: address(k))
            default: try writeHeader(k)
            }
        }
        if !thp.isEmpty {
            try mm.madvise(start, length: pages * PageSize.bytes, hugepage: true)
            for b in thp.sorted() {
                for k in b * PageSize.pmdPages..<(b + 1) * PageSize.pmdPages { try writeHeader(k) }
            }
        }
        if kinds.contains(.cow) {
            let child = try mm.fork()
            self.child = child
            try forEachRun(where: { $0 != .cow }) { k, n in try child.munmap(address(k), length: n * PageSize.bytes) }
            for k in 0..<pages where kinds[k].isWritten && kinds[k] != .cow { try writeHeader(k) }
        }
        try forEachRun(where: { $0 == .swap }) { k, n in
            let r = try mm.swapOut(address(k), pages: n)
            guard r.swapped == n else {
                throw BuildError(description: "swap-out of \(n) pages at page \(k) swapped \(r.swapped): \(r.skipped)")
            }
        }
        try forEachRun(where: { $0 == .device }) { k, n in
            try placeOnDevices(k, n, offset: config.devicePages == .other ? 1 : 0)
        }
        for k in 0..<pages where kinds[k] == .pinned { pins.append(try mm.pinUserPage(address(k))) }
        for k in 0..<pages { built[Int(kinds[k].rawValue)] += 1 }
    }

    /// Migrates `n` pages from page `k` to the device: with one device in one go; with several, each
    /// window's part to the device that migrates that window (`offset` 0) or to the next one (1).
    private func placeOnDevices(_ k: Int, _ n: Int, offset: Int) throws {
        var a = k
        while a < k + n {
            let w = a / windowPages
            let e = devices.count == 1 ? k + n : min(k + n, (w + 1) * windowPages)
            let r = devices[(w + offset) % devices.count].migrateToDevice(address(a), pages: e - a)
            guard r.errno == 0 else {
                throw BuildError(
                    description: "migrating \(e - a) pages at page \(a) to the device: \(Errno.name(r.errno))")
            }
            a = e
        }
    }

    /// Calls `body(firstPage, count)` for each maximal run of pages whose state matches.
    private func forEachRun(where match: (PageKind) -> Bool, _ body: (Int, Int) throws -> Void) rethrows {
        var k = 0
        while k < pages {
            guard match(kinds[k]) else {
                k += 1
                continue
            }
            var e = k
            while e < pages, match(kinds[e]) { e += 1 }
            try body(k, e - k)
            k = e
        }
    }

    /// What ``checkContent(expectedStamp:acceptsInjected:)`` found, as page indices.
    struct ContentCheck: Sendable, Equatable {
        /// Pages whose header, zeros or injected CPU-fault stamp are wrong.
        var corrupt: [Int] = []
        /// Pages that do not hold their mutators' last stamp.
        var lost: [Int] = []
        /// Pages the device could not read (each counted as corrupt too).
        var unreadable: [Int] = []
        /// Why the first unreadable window could not be read: the device's error.
        var unreadableError: MirrorError?
        /// Reads of a window that ran out of `hmm_range_fault`'s time budget (`-EBUSY`) and were
        /// tried again (at most ``Workload/busyReadTries`` in all per window).
        var busyRetries = 0
        /// The longest one read of a window took (its `-EBUSY` tries each counted apart).
        var slowestReadNanoseconds: UInt64 = 0
        /// What the first corrupt page holds, for the message.
        var firstCorruption: String?
        public init() {}
    }

    /// Reads every page through the device (`HMM_DMIRROR_READ`: no migration; a swapped page is faulted
    /// in) and checks, wherever the page lives: its header (written pages) or zeros (untouched and zero
    /// pages), its mutators' stamp at ``stampOffset`` (`expectedStamp(k)`, 0 when none was stored), the
    /// stamp of an injected CPU fault at ``injectedStampOffset`` (`acceptsInjected(k, value)`, which
    /// must accept 0 for a page no injected store reached), and zeros in every other byte. The end of
    /// a repetition (``Runner``) and of a stress round (``Stress``) both check with it.
    func checkContent(
        expectedStamp: (Int) -> UInt64, acceptsInjected: (Int, UInt64) -> Bool = { $1 == 0 }
    ) -> ContentCheck {
        var found = ContentCheck()
        let window = Device.migrationWindow
        let words = PageSize.bytes / 8
        var first = 0
        while first < pages {
            let n = min(window, pages - first)
            let bytes: [UInt8]
            do throws(MirrorError) {
                bytes = try readCheckingBusy(first, pages: n, &found)
            } catch {
                if found.unreadable.isEmpty { found.unreadableError = error }
                found.unreadable += Array(first..<(first + n))
                found.corrupt += Array(first..<(first + n))
                first += n
                continue
            }
            bytes.withUnsafeBytes { b in
                for i in 0..<n {
                    let k = first + i
                    let base = i * PageSize.bytes
                    let h0 = b.loadUnaligned(fromByteOffset: base, as: UInt64.self)
                    let h1 = b.loadUnaligned(fromByteOffset: base + 8, as: UInt64.self)
                    let stamp = b.loadUnaligned(fromByteOffset: base + Int(Self.stampOffset), as: UInt64.self)
                    let injected = b.loadUnaligned(
                        fromByteOffset: base + Int(Self.injectedStampOffset), as: UInt64.self)
                    let (e0, e1) = kinds[k].isWritten ? header(k) : (0, 0)
                    var rest: UInt64 = 0
                    for j in Int(Self.injectedStampOffset + 8) / 8..<words {
                        rest |= b.loadUnaligned(fromByteOffset: base + j * 8, as: UInt64.self)
                    }
                    if h0 != e0 || h1 != e1 || rest != 0 || !acceptsInjected(k, injected) {
                        if found.corrupt.isEmpty {
                            let hex = { (v: UInt64) in "0x" + String(v, radix: 16) }
                            found.firstCorruption =
                                "page \(k) (\(kinds[k])): header \(hex(h0)) \(hex(h1)), expected \(hex(e0)) \(hex(e1)); injected stamp \(hex(injected)); other bytes \(rest == 0 ? "zero" : "not zero")"
                        }
                        found.corrupt.append(k)
                    }
                    if stamp != expectedStamp(k) { found.lost.append(k) }
                }
            }
            first += n
        }
        return found
    }

    /// Tries to read a window of a check: `-EBUSY` only says `dmirror_range_fault` spent its 1 s
    /// budget (`HMM_RANGE_DEFAULT_TIMEOUT`), which a loaded machine can make it do with nothing
    /// wrong, so such a read is tried again, up to ``busyReadTries`` in all, and counted; any other
    /// error, or `-EBUSY` every time, is the window's error.
    func readCheckingBusy(_ first: Int, pages n: Int, _ found: inout ContentCheck) throws(MirrorError) -> [UInt8] {
        var tries = 1
        while true {
            let started = monotonicNanoseconds()
            defer { found.slowestReadNanoseconds = max(found.slowestReadNanoseconds, monotonicNanoseconds() - started) }
            do throws(MirrorError) {
                return try device.read(address(first), pages: n).bytes
            } catch {
                guard error == .errno(Errno.EBUSY), tries < Self.busyReadTries else { throw error }
                tries += 1
                found.busyRetries += 1
            }
        }
    }

    /// Reads a check makes of one window before a `-EBUSY` counts as unreadable.
    static let busyReadTries = 4

    /// Drops the pins, the device (evicting nothing: unmapping frees its pages), the child and the range.
    func tearDown() {
        guard device != nil else { return }
        for pfn in pins { mm.unpinUserPage(pfn) }
        pins = []
        try? mm.munmap(start, length: pages * PageSize.bytes)
        if let child {
            child.teardown()
            self.child = nil
        }
        for d in devices { d.close() }
        devices = []
        device = nil
        mm.teardown()  // drains every LRU add batch, so the leak check finds every frame
    }
}
