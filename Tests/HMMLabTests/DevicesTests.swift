import Testing

@testable import HMMLab

/// Several dmirror devices (`--devices`), each with its own device pool and `dev_pagemap`: the pfn
/// layout, the default nodes, the per-node memory check, and the counts of a run.
@Suite("Devices: several devices, each with its own pool")
struct DevicesTests {
    @Test("each device pool is its own pfn range after a one-block gap; frames, addresses and pools are found by pfn")
    func pfnLayout() throws {
        let memory = try PhysicalMemory(
            .init(systemBytes: 4 << 20, deviceBytes: 2 << 20, deviceNode: 0, backing: .small, moreDeviceNodes: [0, 0]))
        let pools = memory.devicePools
        #expect(pools.count == 3 && pools[0] === memory.device)
        #expect(pools[0].firstPfn == memory.system.endPfn + FrameAllocator.blockFrames)
        #expect(
            pools[1].firstPfn == pools[0].endPfn + FrameAllocator.blockFrames
                && pools[2].firstPfn == pools[1].endPfn + FrameAllocator.blockFrames)
        #expect(memory.endPfn == pools[2].endPfn)
        for pool in pools {
            guard case .success(let folio) = memory.allocate(from: pool, order: 0) else {
                Issue.record("no frame in \(pool.region.name)")
                continue
            }
            #expect(pool.contains(folio.pfn) && memory.pool(of: folio.pfn) === pool && memory.isDeviceFrame(folio.pfn))
            #expect(memory.address(of: folio.pfn) == pool.address(of: folio.pfn))
            let zoneDevice = memory.page(folio.pfn).test(.zoneDevice)
            #expect(zoneDevice)
            memory.put(folio)
        }
        #expect(memory.deviceFreeFrames == 3 * 512)
        #expect(!memory.isDeviceFrame(memory.zeroPage))
    }

    @Test("devices on their own pools: windows round-robin, each device's pages in its own pool and its own pagemap")
    func windowsRoundRobin() throws {
        let memory = try PhysicalMemory(
            .init(systemBytes: 16 << 20, deviceBytes: 4 << 20, deviceNode: 0, backing: .small, moreDeviceNodes: [0]))
        var config = RunConfig()
        config.pages = 2048
        config.devices = 2
        let w = try Workload(memory: memory, swap: nil, config: config, seed: 3)
        defer { w.tearDown() }
        for op in 0..<4 {
            let r = w.device(forWindow: op).makeResident(w.address(op * 512), pages: 512, strategy: .unified)
            #expect(r.errno == 0 && r.migrated == 512)
        }
        for (i, device) in w.devices.enumerated() {
            let mapped = device.deviceMappings()
            #expect(mapped.count == 1024, "device \(i)")
            #expect(
                mapped.allSatisfy { device.pool.contains($0.pfn) && memory.pagemap(of: $0.pfn)?.owner == device.owner },
                "device \(i)")
            #expect(Set(mapped.map { Int(($0.address - w.start) >> 12) / 512 }) == (i == 0 ? [0, 2] : [1, 3]))
        }
        #expect(Invariants.check([w.mm], devices: w.devices).isEmpty)
    }

    @Test(
        "default device nodes: round-robin over the other nodes with memory, farthest first; all on the system node when alone"
    )
    func defaultNodes() {
        let snc = NodeTableTests.snc
        #expect(snc.deviceNodes(count: 4, systemNode: 0) == [2, 3, 1, 2])
        #expect(snc.deviceNodes(count: 2, systemNode: 3) == [0, 1])
        let one = NodeTable(nodes: [NodeTableTests.node(0, cpus: [0, 1])])
        #expect(one.deviceNodes(count: 3, systemNode: 0) == [0, 0, 0])
        var config = RunConfig()
        config.devices = 3
        #expect(config.resolvedDeviceNodes(table: snc) == [2, 3, 1])
        config.deviceNode = 1
        #expect(config.resolvedDeviceNodes(table: snc) == [1, 1, 1], "--device-node puts every device there")
    }

    @Test("the per-node memory check plans one pool per device on its node")
    func poolPlan() {
        let table = NodeTable(nodes: [
            NodeTableTests.node(0, cpus: [0], available: 8, hugetlb: 200, distances: [10, 20, 20]),
            NodeTableTests.node(1, cpus: [1], available: 8, hugetlb: 40, distances: [20, 10, 20]),
            NodeTableTests.node(2, cpus: [2], available: 0.01, hugetlb: 0, distances: [20, 20, 10]),
        ])
        var config = RunConfig()
        config.devices = 2
        config.deviceNodes = [1, 2]
        let plan = PoolPlan(config: config, table: table, thpEnabled: "madvise")
        #expect(
            plan.areas.map(\.name) == ["system pool", "device pool 0", "device pool 1", "descriptors", "swap area"])
        #expect(
            plan.areas[1].node == 1 && plan.areas[1].predicted == .hugetlb && plan.areas[2].node == 2
                && plan.areas[2].predicted == .thp)
        let problem = plan.shortfall()
        #expect(
            problem?.contains("node 2") == true && problem?.contains("device pool 1") == true, "\(problem ?? "nil")")
    }

    @Test("bad device options name the value and what is allowed")
    func badOptions() {
        func message(_ options: [String: String]) -> String {
            do {
                _ = try RunConfig.parse(options, nodes: [0])
                return ""
            } catch { return error.message }
        }
        #expect(
            message(["device-nodes": "7"]).contains(
                "'7' is not a node with memory on this machine; use a comma-separated list of 0"))
        #expect(message(["devices": "3", "device-nodes": "0,0"]).contains("names 2 nodes for --devices 3"))
        #expect(message(["devices": "0"]).contains("--devices '0'"))
        #expect(message(["device-pages": "other"]).contains("needs --devices 2"))
        #expect(message(["device-pages": "maybe"]).contains("use own or other"))
        #expect(message(["device-node": "0", "device-nodes": "0"]).contains("give one of them"))
        #expect((try? RunConfig.parse(["device-nodes": "0,0"], nodes: [0]))?.devices == 2, "the list gives the count")
    }

    /// A small run in process with verify, on 4 KiB pages.
    func run(_ options: [String: String]) throws -> [ResultRow] {
        try runInProcess(options).rows
    }

    @Test(
        "2 devices, 1 and 2 jobs: every page state faults and moves what one device does; walks differ only by counted notifier retries"
    )
    func countsEqualBarRetries() throws {
        let options = [
            "strategy": "all", "pages": "4096", "reps": "1", "mix": "none=0.1,zero=0.1,present=0.5,cow=0.1,swap=0.2",
        ]
        let one = try run(options)
        for jobs in ["1", "2"] {
            let many = try run(options.merging(["devices": "2", "jobs": jobs]) { _, b in b })
            for (a, b) in zip(one, many) {
                let key = "\(a.strategy) jobs \(jobs)"
                #expect(
                    [b.faults, b.pagesMigrated, b.swapins, b.cowBreaks] == [
                        a.faults, a.pagesMigrated, a.swapins, a.cowBreaks,
                    ], "\(key)")
                #expect(
                    b.walks - b.notifierRetries == a.walks - a.notifierRetries,
                    "\(key): walks \(a.walks)/\(b.walks), retries \(a.notifierRetries)/\(b.notifierRetries)")
                #expect(b.verifyFailures == 0 && b.lostStores == 0, "\(key)")
            }
        }
    }

    @Test(
        "2 devices, 2 jobs, a mutator, device pages on the other device, there and back: data intact, no store lost, nothing leaked"
    )
    func crossDeviceWithMutators() throws {
        let rows = try run([
            "strategy": "all", "pages": "2048", "reps": "2", "jobs": "2", "devices": "2", "device-pages": "other",
            "mutators": "1",
            "direction": "round-trip", "mix": "none=0.1,present=0.4,cow=0.1,swap=0.1,device=0.3",
        ])
        #expect(rows.count == 12)
        for row in rows {
            #expect(row.verifyFailures == 0 && row.lostStores == 0, "\(row.strategy) \(row.direction) rep \(row.rep)")
        }
        #expect(rows.filter { $0.direction == "to-device" }.allSatisfy { $0.pagesSkipped == 0 || $0.mutatorStores > 0 })
    }
}
