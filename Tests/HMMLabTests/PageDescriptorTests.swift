import Dispatch
import Testing

@testable import HMMLab

@Suite("PageDescriptor: the struct page analogue in mmap'd memory")
struct PageDescriptorTests {
    @Test("a descriptor is 32 bytes")
    func size() {
        #expect(MemoryLayout<PageDescriptor>.stride == 32)
    }

    @Test("PageRef and FolioRef are one pointer wide, and reach the descriptors of a folio's pages")
    func handles() throws {
        #expect(MemoryLayout<PageRef>.size == MemoryLayout<UnsafeMutableRawPointer>.size)
        #expect(MemoryLayout<FolioRef>.size == MemoryLayout<UnsafeMutableRawPointer>.size)
        let memory = try PhysicalMemory(.init(systemBytes: 6 << 20, deviceBytes: 2 << 20, backing: .small))
        guard case .success(let folio) = memory.allocate(.system, order: 9) else { Issue.record("no folio"); return }
        let head = memory.folioRef(folio)
        #expect(head.order == 9 && head.nrPages == 512 && head.refCount == 1)
        #expect(
            memory.folioRef(containing: folio.pfn + 300).descriptor == head.descriptor,
            "pfn_folio of a tail is its head")
        #expect(head.page(300).descriptor == memory.page(folio.pfn + 300).descriptor && head.page(300).isTail)
        memory.put(folio)
    }

    @Test("flag operations keep the order byte and report what they changed")
    func flags() throws {
        // A 2 MiB folio, beside the zero page's block and the huge zero folio's.
        let memory = try PhysicalMemory(.init(systemBytes: 6 << 20, deviceBytes: 2 << 20, backing: .small))
        guard case .success(let folio) = memory.allocate(.system, order: 9) else { Issue.record("no folio"); return }
        let head = memory.folioRef(folio)
        #expect(head.order == 9)
        head.set([.dirty, .lru])
        #expect(holds(head.test([.dirty, .lru, .head])))
        #expect(holds(head.testAndClear(.lru)))
        #expect(holds(!head.testAndClear(.lru)))
        #expect(head.order == 9, "flag updates leave the order alone")
        #expect(head.flags == [.head, .dirty])
        memory.put(folio)
    }

    @Test("refcount get/put under contention from several threads")
    func refcountContention() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 2 << 20, deviceBytes: 2 << 20, backing: .small))
        guard case .success(let folio) = memory.allocate(.system, order: 0) else { Issue.record("no folio"); return }
        let page = memory.folioRef(folio)
        let perThread = 100_000
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            var reachedZero = 0
            var tryGetFailed = 0
            for _ in 0..<perThread { page.get() }
            for _ in 0..<perThread / 2 where page.putTestZero() { reachedZero += 1 }
            for _ in 0..<perThread / 2 where !page.tryGet() { tryGetFailed += 1 }
            for _ in 0..<perThread where page.putTestZero() { reachedZero += 1 }
            #expect(reachedZero == 0 && tryGetFailed == 0)
        }
        #expect(page.refCount == 1, "every get matched by a put")
        #expect(memory.put(folio), "the last put frees")
        #expect(holds(!page.tryGet()), "folio_try_get fails on a free folio")
    }

    @Test("folio_trylock gives mutual exclusion under contention")
    func trylockContention() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 2 << 20, deviceBytes: 2 << 20, backing: .small))
        guard case .success(let folio) = memory.allocate(.system, order: 0) else { Issue.record("no folio"); return }
        let page = memory.folioRef(folio)
        // A plain (non-atomic) counter in the frame itself, guarded only by the folio lock.
        let counter = SendableRawPointer(memory.address(of: folio.pfn))
        counter.pointer.storeBytes(of: 0, as: Int.self)
        let perThread = 50_000
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            var done = 0
            while done < perThread {
                guard page.tryLock() else { continue }
                let v = counter.pointer.load(as: Int.self)
                counter.pointer.storeBytes(of: v + 1, as: Int.self)
                page.unlock()
                done += 1
            }
        }
        #expect(counter.pointer.load(as: Int.self) == 4 * perThread)
        #expect(holds(!page.isLocked))
        memory.put(folio)
    }
}

struct SendableRawPointer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
}

/// Evaluates a condition before `#expect` sees it: the macro cannot decompose calls on a
/// `~Copyable` base such as `PageDescriptor`.
func holds(_ condition: Bool) -> Bool { condition }
