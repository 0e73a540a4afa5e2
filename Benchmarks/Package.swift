// swift-tools-version: 6.1
// Micro-benchmarks of hmm-lab (package-benchmark), kept out of the root package so that
// `swift build`, `swift run bench` and `swift test` stay lean. Run from this folder:
//   swift package --disable-sandbox benchmark
import PackageDescription

let package = Package(
    name: "hmm-lab-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "hmm-lab", path: "../"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "Substrate",
            dependencies: [
                .product(name: "HMMLab", package: "hmm-lab"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/Substrate",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "Paths",
            dependencies: [
                .product(name: "HMMLab", package: "hmm-lab"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/Paths",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
