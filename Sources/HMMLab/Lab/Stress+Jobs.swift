/// Strategy ops on several op threads and devices (``Stress/Configuration/jobs``, ``Stress/Configuration/devices``).
extension Stress {
    /// A device drawn at random from the round's devices; with one device, that one (no draw, so a
    /// seed replays the same ops it did before devices existed).
    func pickDevice(_ r: Round) -> Device {
        r.w.devices.count == 1 ? r.w.device : r.w.devices[r.below(r.w.devices.count)]
    }

    /// A strategy op: one random window per job (drawn on the stress thread, so the seed decides
    /// them), each on a random device, made resident at once by the jobs while the mutators store.
    /// Returns the windows that ended with an errno.
    func makeResident(_ strategy: Strategy, _ r: Round) -> Int {
        let w = r.w
        let jobs = configuration.jobs
        var windows: [(first: Int, pages: Int, compound: Bool, device: Device)] = []
        for _ in 0..<jobs {
            let (first, n) = window(r)
            let compound = r.below(2) == 0
            windows.append((first, n, compound, pickDevice(r)))
        }
        let errors = UnsafeMutablePointer<Int32>.allocate(capacity: jobs)
        defer { errors.deallocate() }
        let body = { (job: Int) in
            let x = windows[job]
            errors[job] =
                x.device.makeResident(w.address(x.first), pages: x.pages, strategy: strategy, compound: x.compound)
                .errno
        }
        r.mutators.start()
        if let jobThreads { jobThreads.run(body) } else { body(0) }
        r.mutators.finish()
        return (0..<jobs).reduce(0) { $0 + (errors[$1] != 0 ? 1 : 0) }
    }
}
