import Glibc

extension ThpTable {
    /// `bench thp-table --engine kernel`: hmm-tests' `benchmark_thp_migration` itself, through the
    /// running kernel's test driver: per size, a real anonymous buffer (`MADV_HUGEPAGE` or
    /// `MADV_NOHUGEPAGE`, 2 MiB aligned) written page by page, one warm-up round trip, then
    /// `iterations` times `HMM_DMIRROR_MIGRATE_TO_DEV` and `HMM_DMIRROR_MIGRATE_TO_SYS` over the whole
    /// buffer, timed apart. 2 MiB folios moved whole per iteration come from the function profiler:
    /// `folio_isolate_lru` is called once per folio, so a buffer of `p` pages isolated in `n` calls
    /// moved `(p - n) / 511` THPs (0 when the profiler is not there).
    public static func measureKernel(
        sizes: [Int] = sizes, iterations: Int = 5, progress: (Int, Bool) -> Void = { _, _ in }
    ) throws(MeasureError) -> ThpTable {
        let largest = (sizes.max() ?? 0) / PageSize.bytes
        let device: DmirrorDevice
        do {
            device = try DmirrorDevice(index: 0, maxPages: max(largest, 1))
        } catch {
            throw MeasureError(description: "\(error)")
        }
        let functions = try? KernelFunctions()
        var rows: [Row] = []
        for size in sizes {
            progress(size, true)
            let thp = try timeKernel(device, functions, bytes: size, hugepage: true, iterations: iterations)
            progress(size, false)
            let small = try timeKernel(device, functions, bytes: size, hugepage: false, iterations: iterations)
            rows.append(
                Row(
                    bytes: size, thpToDeviceMs: thp.toDevice, thpToSystemMs: thp.toSystem,
                    smallToDeviceMs: small.toDevice, smallToSystemMs: small.toSystem,
                    thpFolios: thp.folios))
        }
        return ThpTable(rows: rows)
    }

    static func timeKernel(
        _ device: DmirrorDevice, _ functions: KernelFunctions?, bytes: Int, hugepage: Bool, iterations: Int
    ) throws(MeasureError) -> (toDevice: Double, toSystem: Double, folios: Int) {
        let what = "\(Region.formatBytes(bytes)) \(hugepage ? "THP" : "4 KiB")"
        let pages = bytes / PageSize.bytes
        let mapped = bytes + PageSize.pmdBytes
        guard let p = mmap(nil, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED
        else {
            throw MeasureError(description: "\(what): mmap: \(SystemError.name(of: errno))")
        }
        defer { munmap(p, mapped) }
        let a = (UInt64(UInt(bitPattern: p)) + PageSize.pmdSize - 1) & PageSize.pmdMask
        let base = UnsafeMutableRawPointer(bitPattern: UInt(a))!
        guard madvise(base, bytes, hugepage ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0 else {
            throw MeasureError(description: "\(what): madvise: \(SystemError.name(of: errno))")
        }
        for k in 0..<pages { base.storeBytes(of: UInt64(k), toByteOffset: k * PageSize.bytes, as: UInt64.self) }
        let isolate = KernelFunctions.traced.firstIndex { $0.name == "folio_isolate_lru" }!
        var toDevice: UInt64 = 0
        var toSystem: UInt64 = 0
        var folios = 0
        for i in 0...iterations {
            let before = functions?.read()[isolate]
            let t0 = monotonicNanoseconds()
            let r = device.migrateToDevice(a, pages: pages)
            let t1 = monotonicNanoseconds()
            let isolated = before.flatMap { b in functions?.read()[isolate].map { $0 - b } }
            let t2 = monotonicNanoseconds()
            let back = device.migrateToSystem(a, pages: pages)
            let t3 = monotonicNanoseconds()
            guard r.errno == 0, back.errno == 0 else {
                throw MeasureError(
                    description:
                        "\(what): MIGRATE_TO_DEV \(SystemError.name(of: r.errno)), MIGRATE_TO_SYS \(SystemError.name(of: back.errno))"
                )
            }
            if i == 0 { continue }  // the warm-up round trip
            toDevice += t1 - t0
            toSystem += t3 - t2
            folios = isolated.map { (pages - Int($0)) / (PageSize.pmdPages - 1) } ?? 0
        }
        let n = Double(iterations) * 1e6
        return (Double(toDevice) / n, Double(toSystem) / n, folios)
    }
}
