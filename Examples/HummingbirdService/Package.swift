// swift-tools-version: 6.1
// An example service: Hummingbird 2 with Flujo, run by one ServiceGroup.
import PackageDescription

let package = Package(
    name: "orders-service",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "flujo", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(name: "OrdersService", dependencies: [
            .product(name: "Flujo", package: "flujo"),
            .product(name: "FlujoSQLite", package: "flujo"),
            .product(name: "FlujoTelemetry", package: "flujo"),
            .product(name: "FlujoPrometheus", package: "flujo"),
            .product(name: "FlujoLifecycle", package: "flujo"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
    ]
)
