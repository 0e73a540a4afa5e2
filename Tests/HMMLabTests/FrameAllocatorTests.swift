import Dispatch
import Synchronization
import Testing

@testable import HMMLab

@Suite("FrameAllocator: orders 0 and 9, exhaustion, failure injection, concurrency")
struct FrameAllocatorTests {
    @Test("order-9 blocks are 512-aligned and order-0 frames are distinct")
    func alignment() {
        let a = FrameAllocator(frames: 4 * 512)
        var large: [Int] = []
        for _ in 0..<2 {
            guard case .success(let i) = a.allocate(order: 9) else { Issue.record("order-9 failed"); return }
            #expect(i % 512 == 0)
            large.append(i)
        }
        var small = Set<Int>()
        for _ in 0..<1024 {
            guard case .success(let i) = a.allocate(order: 0) else { Issue.record("order-0 failed"); return }
            #expect(small.insert(i).inserted, "frame \(i) handed out twice")
            #expect(!large.contains(i / 512 * 512), "order-0 frame \(i) inside an allocated 2 MiB block")
        }
        #expect(a.freeFrames == 0)
    }

    @Test("exhaustion is reported per order, and freeing the last frame of a block merges it")
    func exhaustionAndMerge() {
        let a = FrameAllocator(frames: 2 * 512)
        guard case .success(let big) = a.allocate(order: 9) else { Issue.record("order-9 failed"); return }
        guard case .success(let one) = a.allocate(order: 0) else { Issue.record("order-0 failed"); return }
        #expect(a.allocate(order: 9) == .failure(.exhausted), "the other block is split")
        var rest: [Int] = []
        while case .success(let i) = a.allocate(order: 0) { rest.append(i) }
        #expect(rest.count == 511)
        #expect(a.allocate(order: 0) == .failure(.exhausted))
        #expect(a.statistics.exhausted == [2, 1])
        for i in rest { a.free(i, order: 0) }
        #expect(a.freeBlocks == 0, "one frame still allocated: no merge yet")
        a.free(one, order: 0)
        #expect(a.freeBlocks == 1, "all 512 buddies free: merged")
        #expect(a.statistics.merges == 1)
        guard case .success(let again) = a.allocate(order: 9) else {
            Issue.record("merged block not allocatable"); return
        }
        #expect(again != big)
        a.free(big, order: 9)
        a.free(again, order: 9)
        #expect(a.freeFrames == 1024)
    }

    @Test("a bulk free (runs of consecutive frames) leaves the state and counts of freeing frame by frame")
    func bulkFreeRunsMatchSingleFrees() {
        // Four blocks handed out frame by frame; then freed in one batch of mixed runs: a whole block in
        // order, a run crossing a block boundary, a half block, scattered frames, and the rest.
        let one = FrameAllocator(frames: 4 * 512)
        let bulk = FrameAllocator(frames: 4 * 512)
        var frames: [Int] = []
        for _ in 0..<(4 * 512) {
            guard case .success(let a) = one.allocate(order: 0), case .success(let b) = bulk.allocate(order: 0) else {
                Issue.record("order-0 failed")
                return
            }
            #expect(a == b)
            frames.append(a)
        }
        frames.sort()
        var order = Array(frames[0..<512])  // block 0, whole and in order
        order += frames[700..<1100]  // crosses from block 1 into block 2
        order += stride(from: 1537, to: 2048, by: 2).map { frames[$0] }  // scattered in block 3
        order += frames[512..<700].reversed()  // the rest of block 1, backwards
        order += frames[1100..<1400]
        var rng = SplitMix64(seed: 7)
        var rest = Array(frames[1400..<1536]) + stride(from: 1536, to: 2048, by: 2).map { frames[$0] }
        rest.shuffle(using: &rng)
        order += rest
        #expect(Set(order).count == frames.count && order.count == frames.count)
        for index in order { one.free(index, order: 0) }
        order.withUnsafeBufferPointer { bulk.freeBulk($0, order: 0) }
        #expect(bulk.freeFrames == one.freeFrames && bulk.freeFrames == 4 * 512)
        #expect(bulk.freeBlocks == one.freeBlocks && bulk.freeBlocks == 4, "every block merged back")
        #expect(bulk.statistics == one.statistics)
        // Partly freed blocks report the same frames free.
        let p1 = FrameAllocator(frames: 2 * 512)
        let p2 = FrameAllocator(frames: 2 * 512)
        var got: [Int] = []
        for _ in 0..<1024 {
            guard case .success(let a) = p1.allocate(order: 0), case .success = p2.allocate(order: 0) else { return }
            got.append(a)
        }
        got.sort()
        let partial = Array(got[100..<300]) + Array(got[500..<530]) + [got[900]]
        for index in partial { p1.free(index, order: 0) }
        partial.withUnsafeBufferPointer { p2.freeBulk($0, order: 0) }
        for f in 0..<1024 { #expect(p1.isFree(f) == p2.isFree(f), "frame \(f)") }
        #expect(p1.statistics == p2.statistics && p1.freeFrames == p2.freeFrames && p1.freeFrames == partial.count)
        // What is handed out next is the same too.
        for _ in 0..<partial.count {
            guard case .success(let a) = p1.allocate(order: 0), case .success(let b) = p2.allocate(order: 0) else {
                Issue.record("order-0 failed after the free")
                return
            }
            #expect(a == b)
        }
    }

    @Test("a split 2 MiB allocation frees frame by frame")
    func splitAllocated() {
        let a = FrameAllocator(frames: 512)
        guard case .success(let big) = a.allocate(order: 9) else { Issue.record("order-9 failed"); return }
        a.splitAllocated(big)
        for i in 0..<512 { a.free(big + i, order: 0) }
        #expect(a.freeBlocks == 1)
    }

    @Test("failure injection is per order, seeded and reproducible")
    func failureInjection() {
        let injection = FailureInjection(order0: 0, order9: 0.5, seed: 42)
        func draw() -> [Bool] {
            let a = FrameAllocator(frames: 64 * 512, injection: injection)
            return (0..<64).map { _ in
                switch a.allocate(order: 9) {
                case .success(let i):
                    a.free(i, order: 9)
                    return true
                case .failure(let why):
                    #expect(why == .injected)
                    return false
                }
            }
        }
        let first = draw()
        #expect(first == draw(), "same seed, same failures")
        let failed = first.filter { !$0 }.count
        #expect(failed > 10 && failed < 54, "about half of 64 fail, got \(failed)")

        let a = FrameAllocator(frames: 512, injection: FailureInjection(order0: 0, order9: 1))
        #expect(a.allocate(order: 9) == .failure(.injected))
        guard case .success = a.allocate(order: 0) else { Issue.record("order-0 must not be injected"); return }
        #expect(a.statistics.injected == [0, 1])
    }

    @Test("concurrent allocation and free from several threads never hands a frame out twice")
    func concurrency() {
        let frames = 16 * 512
        let a = FrameAllocator(frames: frames)
        let owners = OwnershipMap(count: frames)
        let threads = 4
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            var rng = SplitMix64(seed: UInt64(t))
            var held: [(Int, Int)] = []
            for _ in 0..<20_000 {
                if held.count > 0, rng.next() % 3 == 0 {
                    let k = Int(rng.next() % UInt64(held.count))
                    let (index, order) = held.swapAt(k)
                    owners.release(index, order: order)
                    a.free(index, order: order)
                } else {
                    let order = rng.next() % 16 == 0 ? 9 : 0
                    if case .success(let index) = a.allocate(order: order) {
                        owners.claim(index, order: order)
                        held.append((index, order))
                    }
                }
            }
            for (index, order) in held {
                owners.release(index, order: order)
                a.free(index, order: order)
            }
        }
        #expect(owners.violations.load(ordering: .relaxed) == 0)
        #expect(a.freeFrames == frames)
        #expect(a.freeBlocks == 16, "everything merged back")
    }
}

/// One atomic owner flag per frame: claiming a claimed frame is a violation.
final class OwnershipMap: @unchecked Sendable {
    let flags: UnsafeMutablePointer<Atomic<UInt8>>
    let count: Int
    let violations = Atomic<Int>(0)
    init(count: Int) {
        self.count = count
        flags = .allocate(capacity: count)
        for i in 0..<count { (flags + i).initialize(to: Atomic(0)) }
    }
    deinit {
        flags.deinitialize(count: count)
        flags.deallocate()
    }
    func claim(_ index: Int, order: Int) {
        for i in index..<(index + (1 << order)) where flags[i].exchange(1, ordering: .relaxed) != 0 {
            violations.add(1, ordering: .relaxed)
        }
    }
    func release(_ index: Int, order: Int) {
        for i in index..<(index + (1 << order)) { flags[i].store(0, ordering: .relaxed) }
    }
}

extension Array {
    /// Removes element k by swapping in the last one.
    mutating func swapAt(_ k: Int) -> Element {
        swapAt(k, count - 1)
        return removeLast()
    }
}
