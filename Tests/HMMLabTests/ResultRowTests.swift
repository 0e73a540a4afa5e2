import Testing

@testable import HMMLab

@Suite("ResultRow: the CSV header and each row's values come from one list of columns")
struct ResultRowTests {
    /// A row whose fields are set to values that tell them apart (consecutive counts from 101, phase
    /// means 1.1 to 8.8, text columns named after themselves), with three counters and two kernel
    /// function counts.
    static func distinctiveRow() throws -> ResultRow {
        var m = RunMetadata.unknown
        m.runId = "RUN"
        m.toolVersion = "9.9.9"
        (m.host, m.kernel, m.cpuModel) = ("ho,st", "k\"ern", "cpu")
        (m.cpus, m.numaNodes, m.systemNode, m.deviceNode) = (3, 4, 5, 6)
        (m.backing, m.systemBacking, m.deviceBacking, m.pinnedCPUs, m.thpMode, m.tlbShootdown) = (
            "bk", "sb", "db", "0-1", "tm", "ts"
        )
        (m.memcpyGBps, m.kernelWalkNs, m.memcpyThreadsGBps) = (1.23456, 2.5, 7.0001)
        let c = try RunConfig.parse(
            [
                "pages": "1024", "window-pages": "256", "mix": "present=0.5,swap=0.5", "thp": "0.25",
                "device-large-fail": "0.125",
                "split-policy": "before-collect", "self-invalidation": "bump", "device-access": "write",
                "fault-pages": "32", "costs": "lru",
                "threads": "7", "jobs": "8", "mutators": "9", "seed": "12345", "devices": "2", "device-pages": "other",
                "counters": "none",
            ], nodes: [0])
        var r = ResultRow(metadata: m, timestamp: "TS", strategy: "STRAT", direction: "DIR", config: c, rep: 11)
        let counts: [WritableKeyPath<ResultRow, Int>] = [
            \.ops, \.pagesRequested, \.pagesMigrated, \.pagesSkipped, \.walks, \.walkRestarts, \.ptesVisited, \.faults,
            \.cowBreaks, \.swapins,
            \.migrationEntries, \.tlbFlushes, \.lruDrains, \.invalidations, \.notifierRetries, \.crossJobRetries,
            \.folioLockFails, \.thpMigrated,
            \.thpSplits, \.deviceAllocFails, \.bytesCopied,
        ]
        for (i, path) in counts.enumerated() { r[keyPath: path] = 101 + i }
        (r.verifyFailures, r.mutatorStores, r.lostStores, r.wallNs) = (122, 123, 124, 125)
        (r.opMeanNs, r.opP50Ns, r.opP90Ns, r.opP99Ns, r.opMaxNs) = (1234.5678, 126, 127, 128, 129)
        (r.walkNs, r.faultNs, r.collectNs, r.allocNs, r.copyNs, r.finalizeNs, r.flushNs, r.copyGBps) = (
            1.1, 2.2, 3.3, 4.4, 5.5, 6.6, 7.7, 8.8
        )
        (r.mmapLockWaitNs, r.ptlWaitNs, r.lruLockWaitNs, r.allocLockWaitNs, r.notifierWaitNs) = (
            130, 131, 132, 133, 134
        )
        (r.throughputGBps, r.wallGBps) = (9.87654, 0.5)
        r.counters = [1, nil, 3]
        r.kernelCalls = [nil, 5]
        return r
    }

    static let filesHeader =
        [
            #"run_id,timestamp,tool_version,host,kernel,cpu_model,cpus,numa_nodes,system_node,device_node,backing,system_backing,"#,
            #"device_backing,pinned_cpus,thp_mode,engine,strategy,direction,pages,window_pages,mix,thp,device_large_fail,"#,
            #"split_policy,self_invalidation,device_access,fault_pages,costs,tlb_shootdown,threads,jobs,mutators,seed,"#,
            #"rep,ops,pages_requested,pages_migrated,pages_skipped,walks,walk_restarts,ptes_visited,faults,cow_breaks,"#,
            #"swapins,migration_entries,tlb_flushes,lru_drains,invalidations,notifier_retries,cross_job_retries,folio_lock_fails,"#,
            #"thp_migrated,thp_splits,device_alloc_fails,bytes_copied,verify_failures,mutator_stores,lost_stores,wall_ns,"#,
            #"op_mean_ns,op_p50_ns,op_p90_ns,op_p99_ns,op_max_ns,walk_ns,fault_ns,collect_ns,alloc_ns,copy_ns,finalize_ns,"#,
            #"flush_ns,copy_gbps,throughput_gbps,wall_gbps,memcpy_gbps,kernel_walk_ns,mmap_lock_wait_ns,ptl_wait_ns,"#,
            #"lru_lock_wait_ns,alloc_lock_wait_ns,devices,device_nodes,device_pages,memcpy_threads_gbps,notifier_wait_ns,"#,
            #"cnt_cycles,cnt_page_faults,cnt_dTLB_load_misses,kfn_a,kfn_b"#,
        ].joined() + "\n"

    @Test("the header is the files' header, byte for byte")
    func header() {
        #expect(
            CSV.line(
                ResultRow.header(counters: ["cycles", "page-faults", "dTLB-load-misses"], kernelFunctions: ["a", "b"]))
                == Self.filesHeader)
        #expect(Set(ResultRow.columns).count == ResultRow.columns.count, "no column twice")
    }

    @Test("a row's values line up with the header: as many, each under its own name, written as the files write them")
    func valuesLineUp() throws {
        var r = try Self.distinctiveRow()
        let header = ResultRow.header(
            counters: ["cycles", "page-faults", "dTLB-load-misses"], kernelFunctions: ["a", "b"])
        #expect(r.fields.count == header.count)
        let byName = Dictionary(uniqueKeysWithValues: zip(header, r.fields))
        let expected = [
            "run_id": "RUN", "host": "ho,st", "cpus": "3", "numa_nodes": "4", "system_node": "5", "device_node": "6",
            "thp_mode": "tm",
            "engine": "model", "strategy": "STRAT", "direction": "DIR", "pages": "1024", "window_pages": "256",
            "thp": "0.25",
            "device_large_fail": "0.125", "fault_pages": "32", "costs": "lru", "tlb_shootdown": "ts", "threads": "7",
            "jobs": "8", "mutators": "9",
            "seed": "12345", "rep": "11", "ops": "101", "walks": "105", "lru_drains": "113", "cross_job_retries": "116",
            "bytes_copied": "121",
            "verify_failures": "122", "lost_stores": "124", "wall_ns": "125", "op_mean_ns": "1234.568",
            "op_max_ns": "129", "walk_ns": "1.1",
            "copy_gbps": "8.8", "throughput_gbps": "9.877", "memcpy_gbps": "1.235", "kernel_walk_ns": "2.5",
            "mmap_lock_wait_ns": "130",
            "devices": "2", "device_nodes": "6", "device_pages": "other", "memcpy_threads_gbps": "7",
            "notifier_wait_ns": "134",
            "cnt_cycles": "1", "cnt_page_faults": "", "cnt_dTLB_load_misses": "3", "kfn_a": "", "kfn_b": "5",
        ]
        for (column, value) in expected { #expect(byName[column] == value, "\(column)") }
        #expect(
            CSV.line(r.fields) == [
                #"RUN,TS,9.9.9,"ho,st","k""ern",cpu,3,4,5,6,bk,sb,db,0-1,tm,model,STRAT,DIR,1024,256,"present=0.5,swap=0.5","#,
                #"0.25,0.125,before-collect,bump,write,32,lru,ts,7,8,9,12345,11,101,102,103,104,105,106,107,108,109,110,"#,
                #"111,112,113,114,115,116,117,118,119,120,121,122,123,124,125,1234.568,126,127,128,129,1.1,2.2,3.3,4.4,"#,
                #"5.5,6.6,7.7,8.8,9.877,0.5,1.235,2.5,130,131,132,133,2,6,other,7,134,1,,3,,5"#,
            ].joined() + "\n")
        r.metadata.deviceNodes = "1,2"
        (r.verifyFailures, r.walkNs, r.copyGBps, r.opMeanNs, r.config.faultPages) = (nil, nil, nil, .nan, nil)
        #expect(
            CSV.line(r.fields) == [
                #"RUN,TS,9.9.9,"ho,st","k""ern",cpu,3,4,5,6,bk,sb,db,0-1,tm,model,STRAT,DIR,1024,256,"present=0.5,swap=0.5","#,
                #"0.25,0.125,before-collect,bump,write,window,lru,ts,7,8,9,12345,11,101,102,103,104,105,106,107,108,109,"#,
                #"110,111,112,113,114,115,116,117,118,119,120,121,,123,124,125,,126,127,128,129,,2.2,3.3,4.4,5.5,6.6,7.7,"#,
                #",9.877,0.5,1.235,2.5,130,131,132,133,2,"1,2",other,7,134,1,,3,,5"#,
            ].joined() + "\n", "not measured: empty; fault_pages 'window' when not given")
        r.unmeasured = ["walks", "faults", "thp_splits", "lru_drains", "notifier_wait_ns"]
        #expect(
            CSV.line(r.fields) == [
                #"RUN,TS,9.9.9,"ho,st","k""ern",cpu,3,4,5,6,bk,sb,db,0-1,tm,model,STRAT,DIR,1024,256,"present=0.5,swap=0.5","#,
                #"0.25,0.125,before-collect,bump,write,window,lru,ts,7,8,9,12345,11,101,102,103,104,,106,107,,109,110,111,"#,
                #"112,,114,115,116,117,118,,120,121,,123,124,125,,126,127,128,129,,2.2,3.3,4.4,5.5,6.6,7.7,,9.877,0.5,1.235,"#,
                #"2.5,130,131,132,133,2,"1,2",other,7,,1,,3,,5"#,
            ].joined() + "\n", "the unmeasured columns empty, by name")
    }

    @Test("every column is found by its name")
    func columnNamed() {
        for column in ResultRow.fixedColumns { #expect(ResultRow.column(named: column.name)?.name == column.name) }
        #expect(ResultRow.column(named: "no_such_column") == nil)
    }
}
