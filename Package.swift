// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "flujo",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Flujo", targets: ["Flujo"]),
        .library(name: "FlujoSQLite", targets: ["FlujoSQLite"]),
        .library(name: "FlujoOTLP", targets: ["FlujoOTLP"]),
        .library(name: "FlujoTesting", targets: ["FlujoTesting"]),
        .library(name: "FlujoPrometheus", targets: ["FlujoPrometheus"]),
        .library(name: "FlujoTelemetry", targets: ["FlujoTelemetry"]),
        .library(name: "FlujoLifecycle", targets: ["FlujoLifecycle"]),
        .library(name: "FlujoSwiftMetrics", targets: ["FlujoSwiftMetrics"]),
        .library(name: "FlujoPostgres", targets: ["FlujoPostgres"]),
        .library(name: "FlujoCLI", targets: ["FlujoCLI"]),
        .executable(name: "flujo", targets: ["flujo"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-otel/swift-w3c-trace-context.git", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // C bridges: system libraries from Debian's -dev packages.
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CProtobufC", pkgConfig: "libprotobuf-c", providers: [.apt(["libprotobuf-c-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(
            name: "CCurlShim",
            dependencies: ["CCurl"],
            linkerSettings: [.linkedLibrary("curl")]
        ),
        .target(
            name: "CSQLiteVFS",
            dependencies: ["CSQLite"],
            linkerSettings: [.linkedLibrary("sqlite3")]
        ),
        .target(
            name: "COTLP",
            dependencies: ["CProtobufC"],
            linkerSettings: [.linkedLibrary("protobuf-c")]
        ),

        // The core and its modules.
        .target(name: "Flujo", dependencies: [
            .product(name: "Logging", package: "swift-log"),
            .product(name: "TOMLKit", package: "TOMLKit"),
            .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
            .product(name: "Instrumentation", package: "swift-distributed-tracing"),
        ]),
        .target(name: "FlujoSQLite", dependencies: ["Flujo", "CSQLite", "CSQLiteVFS", .product(name: "Logging", package: "swift-log")]),
        .target(name: "FlujoTesting", dependencies: ["Flujo"]),
        .target(name: "FlujoPrometheus", dependencies: [
            "Flujo",
            .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "FlujoOTLP", dependencies: ["Flujo", "COTLP", "CProtobufC", "CCurlShim", "CZlib"]),
        .target(name: "FlujoTelemetry", dependencies: [
            "Flujo", "FlujoOTLP", "FlujoPrometheus",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "FlujoPostgres", dependencies: [
            "Flujo",
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "FlujoSwiftMetrics", dependencies: [
            "Flujo",
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        .target(name: "FlujoLifecycle", dependencies: [
            "Flujo", "FlujoTelemetry",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "FlujoCLI", dependencies: [
            "Flujo", "FlujoSQLite", "FlujoPostgres", "FlujoOTLP", "FlujoPrometheus", "FlujoTelemetry",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "flujo", dependencies: [
            "Flujo", "FlujoCLI", "FlujoPrometheus", "FlujoTelemetry",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(
            name: "FlujoTestHelper",
            dependencies: ["Flujo", "FlujoSQLite", "FlujoPostgres", "CSQLite"],
            path: "Tests/FlujoTestHelper"
        ),

        .target(name: "FlujoTestSupport", dependencies: [.product(name: "Logging", package: "swift-log")], path: "Tests/FlujoTestSupport"),
        .testTarget(name: "FlujoSQLiteTests", dependencies: ["Flujo", "FlujoSQLite", "CSQLite", "CSQLiteVFS", "FlujoTestSupport", "FlujoTestHelper"]),
        .testTarget(name: "FlujoTests", dependencies: [
            "Flujo", "FlujoTesting", "FlujoSQLite", "FlujoOTLP", "FlujoPrometheus", "FlujoTelemetry", "FlujoTestSupport", "FlujoTestHelper",
            "FlujoSwiftMetrics", .product(name: "MetricsTestKit", package: "swift-metrics"),
        ]),
        .testTarget(name: "FlujoPrometheusTests", dependencies: ["Flujo", "FlujoPrometheus", "FlujoSQLite", "FlujoTesting", "FlujoTestSupport"]),
        .testTarget(name: "FlujoLifecycleTests", dependencies: [
            "Flujo", "FlujoSQLite", "FlujoTelemetry", "FlujoLifecycle", "FlujoTesting", "FlujoTestSupport",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "FlujoPostgresTests", dependencies: ["Flujo", "FlujoPostgres", "FlujoTestSupport", "FlujoTestHelper"]),
        .testTarget(name: "FlujoStoreConformanceTests", dependencies: ["Flujo", "FlujoTesting", "FlujoSQLite", "FlujoPostgres", "FlujoTestSupport"]),
        .testTarget(name: "FlujoDocumentationTests", dependencies: [
            "Flujo", "FlujoCLI", "FlujoOTLP", "FlujoPrometheus", "FlujoSQLite", "FlujoTelemetry", "FlujoTesting", "FlujoTestSupport", "FlujoLifecycle",
            "FlujoSwiftMetrics",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
        ]),
        .testTarget(name: "FlujoCLITests", dependencies: ["Flujo", "FlujoSQLite", "FlujoPostgres", "CSQLite", "FlujoTestSupport", "FlujoCLI", "flujo"]),
        .testTarget(name: "FlujoOTLPTests", dependencies: [
            "Flujo", "FlujoOTLP", "FlujoSQLite", "FlujoTesting", "FlujoTestSupport", "FlujoTestHelper", "FlujoTelemetry", "FlujoPrometheus", .product(name: "Logging", package: "swift-log"),
            .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
            .product(name: "Tracing", package: "swift-distributed-tracing"),
            .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
        ]),
    ]
)
