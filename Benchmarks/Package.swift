// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "flujo-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "flujo", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
        // W12 claims tasks with its own SQL, to compare claim strategies on one server.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        .executableTarget(
            name: "flujo-bench",
            dependencies: [
                .product(name: "Flujo", package: "flujo"),
                .product(name: "FlujoSQLite", package: "flujo"),
                .product(name: "FlujoOTLP", package: "flujo"),
                .product(name: "FlujoPrometheus", package: "flujo"),
                .product(name: "FlujoTesting", package: "flujo"),
                .product(name: "FlujoTelemetry", package: "flujo"),
                .product(name: "FlujoPostgres", package: "flujo"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Per-event cost and allocations of the hook path (package-benchmark, malloc counts).
        .executableTarget(
            name: "FlujoMicro",
            dependencies: [
                .product(name: "Flujo", package: "flujo"),
                .product(name: "FlujoTesting", package: "flujo"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/FlujoMicro",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
