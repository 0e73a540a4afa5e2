// swift-tools-version: 6.1
import PackageDescription

// `HMM_LAB_TSAN=1` in the environment (scripts/tsan sets it) builds the model's locks over pthread
// mutexes, which the thread sanitizer intercepts, instead of `Synchronization.Mutex`, whose contended
// path it cannot see (Sources/HMMLab/Platform/LabMutex.swift). They cost a few ns more per lock, so
// normal builds leave it off.
let threadSanitizerLocks: [SwiftSetting] = Context.environment["HMM_LAB_TSAN"] == "1" ? [.define("HMM_LAB_TSAN")] : []

let package = Package(
    name: "hmm-lab",
    products: [
        .library(name: "HMMLab", targets: ["HMMLab"]),
        .executable(name: "bench", targets: ["bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // Layer 1: platform shims. Only what Swift cannot call directly.
        .target(
            name: "CLinux",
            path: "Sources/CLinux",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .systemLibrary(name: "CNuma", path: "Sources/CNuma", pkgConfig: "numa", providers: [.apt(["libnuma-dev"])]),
        .systemLibrary(name: "CPfm", path: "Sources/CPfm", providers: [.apt(["libpfm4-dev"])]),
        // Layers 2-6: the model, one folder per layer.
        .target(
            name: "HMMLab",
            dependencies: ["CLinux", "CNuma", "CPfm", .product(name: "Histogram", package: "hdrhistogram-swift")],
            path: "Sources/HMMLab",
            swiftSettings: threadSanitizerLocks
        ),
        // Layer 7: the command line.
        .executableTarget(
            name: "bench",
            dependencies: ["HMMLab", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/bench"
        ),
        .testTarget(name: "HMMLabTests", dependencies: ["HMMLab"], path: "Tests/HMMLabTests"),
        // The command line end to end: runs the built `bench` as a process.
        .testTarget(
            name: "BenchTests", dependencies: ["bench", "HMMLab"], path: "Tests/BenchTests", exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
