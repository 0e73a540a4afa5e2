import Synchronization

/// Why an allocation returned nothing.
public enum AllocationFailure: Error, Equatable, Sendable {
    /// No free block of that order is left.
    case exhausted
    /// ``FailureInjection`` drew a failure.
    case injected
}

/// A buddy allocator restricted to the two orders the lab uses, 0 (4 KiB) and 9 (2 MiB), over a pool
/// of `blocks × 512` frames numbered from 0.
///
/// Models the kernel's page allocator for these orders (`__alloc_pages()` → `rmqueue()`, and
/// `__free_pages()` → `__free_one_page()` with buddy merging): an order-9 request takes a whole free
/// 2 MiB block; an order-0 request takes a frame from a block that has already been split, or splits a
/// whole one (`expand()`); freeing the 512th frame of a split block merges it back into a whole block.
/// Blocks are naturally aligned, so an order-9 folio is always 2 MiB-aligned.
///
/// Departures from the kernel: no per-CPU page lists, no migrate types or watermarks, no orders 1–8
/// or 10. One ``LabMutex`` guards the state (the kernel's `zone->lock`); ``allocateBulk(order:count:into:)``
/// takes it once for many frames, as `alloc_pages_bulk()` does. The allocator hands out indices only:
/// it never touches the frames, so allocation never enters the host's page-fault path.
///
/// Misuse (a double free, freeing an order the block was not allocated at) is a precondition failure,
/// as `free_pages` reports `Bad page state` in the kernel.
public final class FrameAllocator: Sendable {
    /// Frames per block (`1 << 9`).
    static let blockFrames = 512

    /// Frames managed, a multiple of 512.
    let frameCount: Int
    /// 2 MiB blocks managed.
    var blockCount: Int { frameCount / Self.blockFrames }

    /// Counters, read with ``statistics``.
    struct Statistics: Sendable, Equatable {
        public var allocations = [0, 0]
        var frees = [0, 0]
        var exhausted = [0, 0]
        public var injected = [0, 0]
        /// Whole blocks split to serve order-0 requests (`expand()`).
        var splits = 0
        /// Split blocks merged back into a whole free block.
        var merges = 0
    }

    private enum BlockState: UInt8 {
        case whole  // free, available at order 9
        case split  // serving order-0 frames; bitmap marks the free ones
        case large  // allocated as one order-9 folio
    }

    /// The allocator's state, in buffers allocated once: the hot path does no reference counting,
    /// uniqueness check or bounds check (`zone->free_area` in the kernel). Copyable only because the
    /// thread sanitizer's compiler crashes on a `Mutex` over a `~Copyable` struct with a deinit
    /// (Swift 6.3, "Invalid bitcast"); it is never copied, and the allocator frees its buffers.
    private struct State {
        let blocks: Int
        let state: UnsafeMutablePointer<BlockState>
        let freeInBlock: UnsafeMutablePointer<UInt16>
        let bitmap: UnsafeMutablePointer<UInt64>  // 8 words per block, bit set = frame free
        let onPartial: UnsafeMutablePointer<Bool>
        var wholeFree: Stack  // whole free blocks
        var partial: Stack  // split blocks with free frames (may hold stale entries)
        var freeFrames: Int
        var injection: FailureInjection
        var rng: SplitMix64
        var counts = Counts()

        init(blocks: Int, injection: FailureInjection) {
            self.blocks = blocks
            state = .allocate(capacity: blocks)
            state.initialize(repeating: .whole, count: blocks)
            freeInBlock = .allocate(capacity: blocks)
            freeInBlock.initialize(repeating: 0, count: blocks)
            bitmap = .allocate(capacity: blocks * 8)
            bitmap.initialize(repeating: 0, count: blocks * 8)
            onPartial = .allocate(capacity: blocks)
            onPartial.initialize(repeating: false, count: blocks)
            wholeFree = Stack(capacity: blocks)
            for b in (0..<Int32(blocks)).reversed() { wholeFree.push(b) }
            partial = Stack(capacity: blocks)
            freeFrames = blocks * blockFrames
            self.injection = injection
            rng = SplitMix64(seed: injection.seed)
        }

        func deallocate() {
            state.deallocate()
            freeInBlock.deallocate()
            bitmap.deallocate()
            onPartial.deallocate()
            wholeFree.deallocate()
            partial.deallocate()
        }
    }

    /// The counters as plain fields: counting costs no array uniqueness or bounds check per frame.
    private struct Counts {
        var allocations0 = 0, allocations9 = 0, frees0 = 0, frees9 = 0
        var exhausted0 = 0, exhausted9 = 0, injected0 = 0, injected9 = 0
        var splits = 0, merges = 0

        var statistics: Statistics {
            var st = Statistics()
            st.allocations = [allocations0, allocations9]
            st.frees = [frees0, frees9]
            st.exhausted = [exhausted0, exhausted9]
            st.injected = [injected0, injected9]
            st.splits = splits
            st.merges = merges
            return st
        }
    }

    /// A fixed-capacity stack of block numbers.
    private struct Stack {
        let base: UnsafeMutablePointer<Int32>
        var count = 0
        init(capacity: Int) { base = .allocate(capacity: capacity) }
        @inline(__always) mutating func push(_ v: Int32) {
            base[count] = v
            count += 1
        }
        @inline(__always) mutating func pop() -> Int32? {
            guard count > 0 else { return nil }
            count -= 1
            return base[count]
        }
        @inline(__always) var top: Int32? { count > 0 ? base[count - 1] : nil }
        func deallocate() { base.deallocate() }
    }

    private let state: LabMutex<State>
    /// Time spent waiting for the allocator's lock (`zone->lock`), contended acquisitions only
    /// (`alloc_lock_wait_ns`).
    let lockWait = LockWait.make()

    deinit {
        state.withLock { $0.deallocate() }
        lockWait.free()
    }

    /// `spin_lock(&zone->lock)` … `spin_unlock`: `body` on the state under the lock. The lock is tried
    /// first; only when that fails is the wait timed into ``lockWait``.
    @inline(__always)
    private func locked<R: Sendable>(_ body: (inout State) -> R) -> R {
        if let r = state.withLockIfAvailable({ s in body(&s) }) { return r }
        let started = monotonicNanoseconds()
        return state.withLock { s in
            lockWait.add(since: started)
            return body(&s)
        }
    }

    /// A pool of `frames` frames, all free. `frames` must be a positive multiple of 512.
    public init(frames: Int, injection: FailureInjection = .none) {
        precondition(frames > 0 && frames % Self.blockFrames == 0, "frame count must be a positive multiple of 512")
        frameCount = frames
        let blocks = frames / Self.blockFrames
        state = LabMutex(State(blocks: blocks, injection: injection))
    }

    /// Changes the injected failure probabilities and reseeds the generator.
    func setFailureInjection(_ injection: FailureInjection) {
        state.withLock {
            $0.injection = injection
            $0.rng = SplitMix64(seed: injection.seed)
        }
    }

    /// The current injection settings.
    var failureInjection: FailureInjection { state.withLock { $0.injection } }

    /// Frames currently free.
    var freeFrames: Int { state.withLock { $0.freeFrames } }

    /// Whole 2 MiB blocks currently free (order-9 allocations that can succeed).
    var freeBlocks: Int { state.withLock { $0.wholeFree.count } }

    /// A snapshot of the counters.
    var statistics: Statistics { state.withLock { $0.counts.statistics } }

    /// Allocates one naturally aligned block of `1 << order` frames and returns its first index.
    ///
    /// - Parameter order: 0 or 9.
    public func allocate(order: Int) -> Result<Int, AllocationFailure> {
        precondition(order == 0 || order == 9, "the lab allocates orders 0 and 9 only, not \(order)")
        return locked { s in Self.take(&s, order: order) }
    }

    /// Allocates up to `count` blocks of one order under a single lock acquisition and writes their first
    /// indices to `out`; returns how many it got (fewer when exhausted or when a failure is injected,
    /// which ends the batch as `alloc_pages_bulk` does).
    func allocateBulk(order: Int, count: Int, into out: UnsafeMutablePointer<Int>) -> Int {
        precondition(order == 0 || order == 9, "the lab allocates orders 0 and 9 only, not \(order)")
        return locked { s in
            var i = 0
            while i < count {
                // A request for a whole block's worth of frames, with no partly used block to finish
                // first and no failure to draw per frame, takes a whole free block at once (`expand()`
                // of one order-9 block into the request).
                if order == 0, count - i >= Self.blockFrames, s.injection.order0 == 0, Self.partialBlock(&s) == nil,
                    let whole = s.wholeFree.pop()
                {
                    let block = Int(whole)
                    s.state[block] = .split
                    s.freeInBlock[block] = 0
                    for w in 0..<8 { s.bitmap[block * 8 + w] = 0 }
                    s.freeFrames -= Self.blockFrames
                    s.counts.splits += 1
                    s.counts.allocations0 += Self.blockFrames
                    for k in 0..<Self.blockFrames { out[i + k] = block * Self.blockFrames + k }
                    i += Self.blockFrames
                    continue
                }
                switch Self.take(&s, order: order) {
                case .success(let index): out[i] = index
                case .failure: return i
                }
                i += 1
            }
            return count
        }
    }

    /// Returns a block to the pool (`__free_pages`), merging a split block whose 512 frames are all free.
    public func free(_ index: Int, order: Int) {
        precondition(index >= 0 && index < frameCount, "free of frame \(index) outside the pool of \(frameCount)")
        locked { s in Self.give(&s, index, order: order) }
    }

    /// Frees many order-0 frames under one lock acquisition (`free_unref_folios`).
    ///
    /// Consecutive indices of one block (a window's pages were mostly allocated together and die
    /// together) are freed as a run: their bitmap bits are set a word at a time, each word checked for
    /// a double free, and the block is merged once if the run completes it. The state and the counts
    /// are those of freeing the frames one by one (`__free_one_page`, merging up to order 9).
    func freeBulk(_ indices: UnsafeBufferPointer<Int>, order: Int) {
        guard order == 0 else {
            state.withLock { s in
                for index in indices { Self.give(&s, index, order: order) }
            }
            return
        }
        let n = indices.count
        locked { s in
            var i = 0
            while i < n {
                let first = indices[i]
                var run = 1
                while i + run < n, indices[i + run] == first + run, (first + run) % Self.blockFrames != 0 { run += 1 }
                Self.giveRun(&s, first: first, count: run)
                i += run
            }
        }
    }

    /// Turns an allocated order-9 block into 512 allocated order-0 frames, so each can be freed alone.
    /// Models the allocator side of `split_folio()` / `split_page()`.
    func splitAllocated(_ index: Int) {
        precondition(index % Self.blockFrames == 0, "split of frame \(index), not the head of a block")
        state.withLock { s in
            let block = index / Self.blockFrames
            precondition(s.state[block] == .large, "split of block \(block), which is not allocated at order 9")
            s.state[block] = .split
            s.freeInBlock[block] = 0
            for w in 0..<8 { s.bitmap[block * 8 + w] = 0 }
        }
    }

    /// Whether a frame is currently free.
    func isFree(_ index: Int) -> Bool {
        state.withLock { s in
            let block = index / Self.blockFrames
            switch s.state[block] {
            case .whole: return true
            case .large: return false
            case .split:
                let bit = index % Self.blockFrames
                return s.bitmap[block * 8 + bit / 64] & (1 << UInt64(bit % 64)) != 0
            }
        }
    }

    // MARK: - Under the lock

    private static func take(_ s: inout State, order: Int) -> Result<Int, AllocationFailure> {
        let p = s.injection.probability(order: order)
        if p > 0, s.rng.nextUnit() < p {
            if order == 0 { s.counts.injected0 += 1 } else { s.counts.injected9 += 1 }
            return .failure(.injected)
        }
        if order == 9 {
            guard let block = s.wholeFree.pop() else {
                s.counts.exhausted9 += 1
                return .failure(.exhausted)
            }
            s.state[Int(block)] = .large
            s.freeFrames -= blockFrames
            s.counts.allocations9 += 1
            return .success(Int(block) * blockFrames)
        }
        // Order 0: the most recently split block with free frames, else split a whole one.
        if let block = partialBlock(&s) { return .success(takeFrame(&s, block: block)) }
        guard let whole = s.wholeFree.pop() else {
            s.counts.exhausted0 += 1
            return .failure(.exhausted)
        }
        let block = Int(whole)
        s.state[block] = .split
        s.freeInBlock[block] = UInt16(blockFrames)
        for w in 0..<8 { s.bitmap[block * 8 + w] = ~0 }
        s.counts.splits += 1
        if !s.onPartial[block] {
            s.partial.push(whole)
            s.onPartial[block] = true
        }
        return .success(takeFrame(&s, block: block))
    }

    /// The most recently split block that still has free frames, dropping stale entries on the way.
    private static func partialBlock(_ s: inout State) -> Int? {
        while let top = s.partial.top {
            let block = Int(top)
            if s.state[block] == .split, s.freeInBlock[block] > 0 { return block }
            _ = s.partial.pop()
            s.onPartial[block] = false
        }
        return nil
    }

    private static func takeFrame(_ s: inout State, block: Int) -> Int {
        for w in 0..<8 where s.bitmap[block * 8 + w] != 0 {
            let word = s.bitmap[block * 8 + w]
            let bit = word.trailingZeroBitCount
            s.bitmap[block * 8 + w] = word & (word - 1)
            s.freeInBlock[block] -= 1
            s.freeFrames -= 1
            s.counts.allocations0 += 1
            return block * blockFrames + w * 64 + bit
        }
        preconditionFailure("block \(block) has a free count but an empty bitmap")
    }

    /// Frees the order-0 frames `first..<first+count`, all in one block (``freeBulk(_:order:)``'s runs).
    private static func giveRun(_ s: inout State, first: Int, count: Int) {
        if count == 1 { return give(&s, first, order: 0) }
        precondition(
            first >= 0 && first + count <= s.blocks * blockFrames,
            "free of frames \(first)..<\(first + count) outside the pool")
        let block = first / blockFrames
        precondition((first + count - 1) / blockFrames == block, "a free run crosses a block")
        precondition(
            s.state[block] == .split,
            "order-0 free of frames from \(first) in a block that is \(s.state[block]) (double free?)")
        var bit = first % blockFrames
        let end = bit + count
        while bit < end {
            let w = bit / 64
            let upTo = min(end, (w + 1) * 64)
            let width = upTo - bit
            let mask: UInt64 = (width == 64 ? ~0 : (1 << UInt64(width)) - 1) << UInt64(bit % 64)
            precondition(s.bitmap[block * 8 + w] & mask == 0, "double free of a frame in \(first)..<\(first + count)")
            s.bitmap[block * 8 + w] |= mask
            bit = upTo
        }
        freed(&s, count, inBlock: block)
    }

    private static func give(_ s: inout State, _ index: Int, order: Int) {
        let block = index / blockFrames
        if order == 9 {
            precondition(index % blockFrames == 0, "order-9 free of frame \(index), not 2 MiB-aligned")
            precondition(
                s.state[block] == .large,
                "order-9 free of block \(block), which is not allocated at order 9 (double free?)")
            s.state[block] = .whole
            s.wholeFree.push(Int32(block))
            s.freeFrames += blockFrames
            s.counts.frees9 += 1
            return
        }
        precondition(order == 0, "the lab frees orders 0 and 9 only, not \(order)")
        precondition(
            s.state[block] == .split,
            "order-0 free of frame \(index) in a block that is \(s.state[block]) (double free?)")
        let bit = index % blockFrames
        let mask: UInt64 = 1 << UInt64(bit % 64)
        precondition(s.bitmap[block * 8 + bit / 64] & mask == 0, "double free of frame \(index)")
        s.bitmap[block * 8 + bit / 64] |= mask
        freed(&s, 1, inBlock: block)
    }

    /// Counts `count` order-0 frames of split block `block` as freed (their bitmap bits are set) and
    /// merges the block back to a whole one when all its buddies are free; a stale partial entry is
    /// skipped later.
    @inline(__always)
    private static func freed(_ s: inout State, _ count: Int, inBlock block: Int) {
        s.freeInBlock[block] += UInt16(count)
        s.freeFrames += count
        s.counts.frees0 += count
        if s.freeInBlock[block] == UInt16(blockFrames) {
            s.state[block] = .whole
            s.wholeFree.push(Int32(block))
            s.counts.merges += 1
        } else if !s.onPartial[block] {
            s.partial.push(Int32(block))
            s.onPartial[block] = true
        }
    }
}
