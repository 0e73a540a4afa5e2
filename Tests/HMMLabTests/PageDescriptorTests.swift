import Dispatch
import Testing

@testable import HMMLab

@Suite("PageDescriptor: the struct page analogue in mmap'd memory")
struct PageDescriptorTests {
    @Test("a descriptor is 32 bytes")
    func size() {
        #expect(MemoryLayout<PageDescriptor>.stride == 32)
    }

    @Test("flag operations keep the order byte and report what they changed")
    func flags() throws {
        // A 2 MiB folio, beside the zero page's block and the huge zero folio's.
        let memory = try PhysicalMemory(.init(systemBytes: 6 << 20, deviceBytes: 2 << 20, backing: .small))
        guard case .success(let folio) = memory.allocate(.system, order: 9) else { Issue.record("no folio"); return }
        let head = memory.page(folio.pfn)
        #expect(head.pointee.order == 9)
        head.pointee.set([.dirty, .lru])
        #expect(holds(head.pointee.test([.dirty, .lru, .head])))
        #expect(holds(head.pointee.testAndClear(.lru)))
        #expect(holds(!head.pointee.testAndClear(.lru)))
        #expect(head.pointee.order == 9, "flag updates leave the order alone")
        #expect(head.pointee.pageFlags == [.head, .dirty])
        memory.put(folio)
    }

    @Test("refcount get/put under contention from several threads")
    func refcountContention() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 2 << 20, deviceBytes: 2 << 20, backing: .small))
        guard case .success(let folio) = memory.allocate(.system, order: 0) else { Issue.record("no folio"); return }
        let page = SendablePointer(memory.page(folio.pfn))
        let perThread = 100_000
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            var reachedZero = 0
            var tryGetFailed = 0
            for _ in 0..<perThread { page.pointer.pointee.get() }
            for _ in 0..<perThread / 2 where page.pointer.pointee.putTestZero() { reachedZero += 1 }
            for _ in 0..<perThread / 2 where !page.pointer.pointee.tryGet() { tryGetFailed += 1 }
            for _ in 0..<perThread where page.pointer.pointee.putTestZero() { reachedZero += 1 }
            #expect(reachedZero == 0 && tryGetFailed == 0)
        }
        #expect(page.pointer.pointee.references == 1, "every get matched by a put")
        #expect(memory.put(folio), "the last put frees")
        #expect(holds(!page.pointer.pointee.tryGet()), "folio_try_get fails on a free folio")
    }

    @Test("folio_trylock gives mutual exclusion under contention")
    func trylockContention() throws {
        let memory = try PhysicalMemory(.init(systemBytes: 2 << 20, deviceBytes: 2 << 20, backing: .small))
        guard case .success(let folio) = memory.allocate(.system, order: 0) else { Issue.record("no folio"); return }
        let page = SendablePointer(memory.page(folio.pfn))
        // A plain (non-atomic) counter in the frame itself, guarded only by the folio lock.
        let counter = SendableRawPointer(memory.address(of: folio.pfn))
        counter.pointer.storeBytes(of: 0, as: Int.self)
        let perThread = 50_000
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            var done = 0
            while done < perThread {
                guard page.pointer.pointee.tryLock() else { continue }
                let v = counter.pointer.load(as: Int.self)
                counter.pointer.storeBytes(of: v + 1, as: Int.self)
                page.pointer.pointee.unlock()
                done += 1
            }
        }
        #expect(counter.pointer.load(as: Int.self) == 4 * perThread)
        #expect(holds(!page.pointer.pointee.isLocked))
        memory.put(folio)
    }
}

struct SendablePointer<T: ~Copyable>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<T>
    init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}

struct SendableRawPointer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
}

/// Evaluates a condition before `#expect` sees it: the macro cannot decompose calls on a
/// `~Copyable` base such as `PageDescriptor`.
func holds(_ condition: Bool) -> Bool { condition }
