/// Which pool a frame belongs to.
public enum PoolKind: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Ordinary system RAM, on the system node.
    case system
    /// Device memory (the `MEMORY_DEVICE_PRIVATE` pages a driver's `dev_pagemap` provides), on the device node.
    case device

    public var description: String { rawValue }
}

/// One pool of frames: a ``Region`` of real memory, the pfn range it is numbered as, and its allocator.
public final class MemoryPool: Sendable {
    public let kind: PoolKind
    /// The memory.
    public let region: Region
    /// The pfn of the first frame (2 MiB-aligned).
    public let firstPfn: Pfn
    /// Frames in the pool.
    let frameCount: Int
    /// The pool's allocator; indices are `pfn - firstPfn`.
    public let allocator: FrameAllocator
    /// One past the last pfn.
    public let endPfn: Pfn
    /// `region.base`, kept here so a frame's address costs one load, not a walk through the region.
    @usableFromInline nonisolated(unsafe) let base: UnsafeMutableRawPointer

    init(kind: PoolKind, region: Region, firstPfn: Pfn) {
        self.kind = kind
        self.region = region
        self.firstPfn = firstPfn
        self.frameCount = region.length / PageSize.bytes
        self.allocator = FrameAllocator(frames: frameCount)
        self.endPfn = firstPfn + frameCount
        self.base = region.base
    }

    /// The node the pool's memory is on.
    public var node: Int { region.node }

    /// Whether `pfn` is one of this pool's frames.
    @inlinable public func contains(_ pfn: Pfn) -> Bool { pfn >= firstPfn && pfn < endPfn }

    /// The address of a frame's first byte (`page_address` / `kmap_local_page`).
    @inlinable public func address(of pfn: Pfn) -> UnsafeMutableRawPointer {
        base + (pfn.index &- firstPfn.index) << PageSize.shift
    }
}
