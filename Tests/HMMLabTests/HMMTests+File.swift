import Testing

@testable import HMMLab

/// hmm-tests cases on file mappings: file_read, file_write, migrate_file_private. The file is the lab's
/// page cache without a disk (``File``), made and written as `hmm_create_file` + `pwrite` do.
extension HMMTests {
    /// The kernel tests' buffer contents: `ptr[i] = i` for `int` i over `pages` pages.
    static func intSequence(pages: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: pages * 4096)
        bytes.withUnsafeMutableBytes { b in
            let ints = b.bindMemory(to: Int32.self)
            for i in ints.indices { ints[i] = Int32(i) }
        }
        return bytes
    }

    @Test(
        "file_read: the device reads a MAP_SHARED read-only file mapping in one fault batch and sees the file's contents"
    )
    func file_read() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = Self.npages
        let data = Self.intSequence(pages: n)
        let file = File(pages: n, memory: f.memory)
        try file.write(offset: 0, bytes: data)  // pwrite before mmap
        let a = try f.mm.mmap(file: file, length: n * 4096, protection: .read, shared: true)
        let (bytes, faults) = try d.read(a, pages: n)
        #expect(faults == 1)
        #expect(d.deviceMappings().count == n, "cpages == npages")
        #expect(bytes == data, "the device read the file's contents")
        // Lab: each page is its page-cache folio, mapped read-only by a read fault (do_read_fault).
        #expect(f.mm.counters.faults(.file) == n)
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .read })
        f.check(devices: [d])
        file.close()
        f.finish(devices: [d])
    }

    @Test("file_write: the device writes a MAP_SHARED file mapping; the CPU and pread see the data")
    func file_write() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = Self.npages
        let data = Self.intSequence(pages: n)
        let file = File(pages: n, memory: f.memory)
        let a = try f.mm.mmap(file: file, length: n * 4096, protection: .readWrite, shared: true)
        #expect(try d.write(a, bytes: data) == 1, "faults == 1")
        #expect(d.deviceMappings().count == n, "cpages == npages")
        #expect(try f.mm.loadBytes(n * 4096, from: a) == data, "what the device wrote, through the mapping")
        #expect(try file.read(offset: 0, count: n * 4096) == data, "the device also wrote the file (pread)")
        // Lab: do_shared_fault mapped each page-cache folio writable and dirtied it.
        #expect(f.mm.counters.faults(.file) == n)
        #expect(f.mm.snapshot(a, pages: n).allSatisfy { $0 == .write })
        let dirty = f.mm.mmapLock.withReadLock {
            (0..<n).allSatisfy { k in
                f.mm.pageTable.pteSlot(a + UInt64(k) << 12).map { f.memory.page($0.load().pfn).test(.dirty) } ?? false
            }
        }
        #expect(dirty, "every page-cache folio is dirty")
        f.check(devices: [d])
        file.close()
        f.finish(devices: [d])
    }

    @Test(
        "migrate_file_private: a MAP_PRIVATE file mapping the CPU wrote (COW pages, anonymous) migrates to the device")
    func migrate_file_private() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = Self.npages
        let data = Self.intSequence(pages: n)
        let file = File(pages: n, memory: f.memory)
        let a = try f.mm.mmap(file: file, length: n * 4096, protection: .readWrite, shared: false)
        try f.mm.store(data, at: a)  // do_cow_fault per page: anonymous copies
        #expect(f.mm.counters.faults(.copyOnWrite) == n)
        let r = d.migrateToDevice(a, pages: n)
        #expect(r.errno == 0, "ret == 0")
        #expect(d.deviceMappings().count == n, "cpages == npages")
        #expect(r.collected == n && r.migrated == n)
        let (bytes, _) = try d.read(a, pages: n)
        #expect(bytes == data, "the device read the data")
        // Lab: the private writes never reached the file; the CPU faults the pages back intact.
        #expect(try file.read(offset: 0, count: n * 4096).allSatisfy { $0 == 0 })
        f.check(devices: [d])
        #expect(try f.mm.loadBytes(n * 4096, from: a) == data)
        file.close()
        f.finish(devices: [d])
    }

    @Test(
        "lab: page-cache pages are collected but not migrated (not anonymous); holes of file mappings are not collected"
    )
    func migrate_file_pagecache() throws {
        let f = try MMFixture()
        let d = Device(memory: f.memory, mm: f.mm, verify: true)
        let n = 16
        let data = Self.intSequence(pages: n)
        let file = File(pages: n, memory: f.memory)
        try file.write(offset: 0, bytes: data)
        for shared in [false, true] {
            let a = try f.mm.mmap(file: file, length: n * 4096, protection: .readWrite, shared: shared)
            #expect(try f.mm.loadBytes(n / 2 * 4096, from: a) == Array(data[0..<n / 2 * 4096]))  // do_read_fault: half mapped
            let r = d.migrateToDevice(a, pages: n)
            #expect(r.errno == Errno.ENOENT, "nothing reached the device")
            #expect(
                r.collected == n / 2 && r.migrated == 0,
                "the mapped half is collected, refused by migrate_vma_pages, restored")
            #expect(
                f.mm.snapshot(a, pages: n) == Array(repeating: .read, count: n / 2)
                    + Array(repeating: .none, count: n / 2))
            f.check(devices: [d])
            // A private write copies the page-cache page (wp_page_copy); that anonymous page migrates.
            let kind: FaultKind = shared ? .reuse : .copyOnWrite
            let before = f.mm.counters.faults(kind)
            try f.mm.store(UInt32(7), at: a)
            #expect(f.mm.counters.faults(kind) == before + 1)
            _ = d.migrateToDevice(a, pages: n)
            #expect(f.mm.snapshot(a, pages: 1) == [shared ? .write : .devicePrivate])
            f.check(devices: [d])
            try f.mm.munmap(a, length: n * 4096)
        }
        #expect(try file.read(offset: 0, count: 4) == [7, 0, 0, 0], "only the shared write reached the file")
        file.close()
        f.finish(devices: [d])
    }

    @Test(
        "lab: fork of file mappings: the child shares the page cache; private writes stay private, shared ones reach the file"
    )
    func file_fork() throws {
        let f = try MMFixture()
        let n = 8
        let data = Self.intSequence(pages: n)
        let file = File(pages: n, memory: f.memory)
        try file.write(offset: 0, bytes: data)
        let p = try f.mm.mmap(file: file, length: n * 4096, protection: .readWrite, shared: false)
        let s = try f.mm.mmap(file: file, length: n * 4096, protection: .readWrite, shared: true)
        #expect(try f.mm.loadBytes(n * 4096, from: p) == data)  // the page cache, read-only in both
        let child = try f.mm.fork()
        try child.store(UInt32(0xAAAA), at: p)  // the child's copy (wp_page_copy of a page-cache page)
        try child.store(UInt32(0xBBBB), at: s + 4096)  // the shared mapping: the file
        #expect(try f.mm.load(UInt32.self, from: p) == 0, "the parent's private page is the file's")
        #expect(try f.mm.load(UInt32.self, from: s + 4096) == 0xBBBB)
        #expect(try file.read(offset: 0, count: 4) == [0, 0, 0, 0], "private writes never reach the file")
        #expect(Invariants.check([f.mm, child]).isEmpty, "\(Invariants.check([f.mm, child]))")
        // The parent's read mapped the page clean: mprotect back to read-write keeps it read-only until a
        // write dirties the PTE (can_change_pte_writable: pte_dirty for a shared file page).
        try f.mm.mprotect(s, length: n * 4096, protection: .read)
        try f.mm.mprotect(s, length: n * 4096, protection: .readWrite)
        #expect(f.mm.snapshot(s + 4096, pages: 2) == [.read, .none])
        try f.mm.store(UInt32(0xCCCC), at: s + 4096)
        try f.mm.mprotect(s, length: n * 4096, protection: .read)
        try f.mm.mprotect(s, length: n * 4096, protection: .readWrite)
        #expect(f.mm.snapshot(s + 4096, pages: 2) == [.write, .none], "a dirty PTE is made writable again")
        #expect(try child.load(UInt32.self, from: s + 4096) == 0xCCCC)
        file.close()
        try f.mm.munmap(s, length: n * 4096)
        f.finish(devices: [], others: [child])
    }
}
