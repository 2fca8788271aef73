import Flujo
import FlujoLifecycle
import FlujoPrometheus
import FlujoSQLite
import FlujoTelemetry
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

struct Order: Codable, Sendable {
    var id: String
    var amount: Double
}

/// The pipeline a request starts: two steps in the request, two in the background.
enum OrderPipeline {
    static let validate = Step<Order, Order>("validate") { order, _ in
        guard order.amount > 0 else { throw OrderError.invalidAmount(order.amount) }
        return order
    }
    static let charge = Step<Order, Order>("charge") { order, context in
        try context.reportUsage(costUSD: 0.002, tokens: 120)
        return order
    }
    static let sendReceipt = Step<Order, String>("send_receipt") { order, context in
        // An outgoing call would carry context.span.traceparent: the callee joins this step's trace.
        try await Task.sleep(for: .milliseconds(20))
        return "receipt for \(order.id) (trace \(context.span.traceID))"
    }
    static let updateAnalytics = Step<Order, Order>("update_analytics") { order, _ in order }

    static let pipeline = Pipeline(name: "orders", version: "1", steps: [
        .run(validate), .run(charge), .background(sendReceipt), .background(updateAnalytics),
    ])
}

enum OrderError: Error, CategorizedError {
    case invalidAmount(Double)
    var category: ErrorCategory { .validation }
}

struct Started: ResponseEncodable {
    var runID: String
    var status: String
    var backgroundTaskIDs: [String]
}

@main
struct OrdersService {
    static func main() async throws {
        let logger = Logger(label: "orders-service")
        // One configuration for the service and the `flujo` command: flujo.toml and FLUJO_*/OTEL_* variables.
        var settings = try SettingsLoader.load(file: "flujo.toml").settings
        if ProcessInfo.processInfo.environment["FLUJO_STATE_URI"] == nil {
            settings.state.uri = FileManager.default.temporaryDirectory.appendingPathComponent("orders-service.db").path
        }
        // Event and task metrics are kept for this app's own /metrics; Flujo's server is not started.
        settings.telemetry.prometheus.enabled = true
        let store = try SQLiteStateStore(settings: settings.state)
        let telemetry = Telemetry(settings: settings, store: store)
        let runner = Runner(store: store, settings: settings, hooks: telemetry.hooks)
        let collector = telemetry.collector()

        let router = Router()
        // With a tracer bootstrapped (swift-otel, say), each request is a span and the run its child.
        router.middlewares.add(TracingMiddleware())
        router.post("/orders") { request, context -> Started in
            let order = try await request.decode(as: Order.self, context: context)
            let result = try await runner.run(OrderPipeline.pipeline, input: order)
            return Started(runID: result.runID, status: result.status.rawValue, backgroundTaskIDs: result.backgroundTaskIDs)
        }
        router.get("/metrics") { request, _ -> Response in
            // Flujo's renderer on the app's own port: Prometheus text, or OpenMetrics with exemplars when asked.
            let (contentType, body) = try await collector.exposition(accept: request.headers[.accept])
            return Response(status: .ok, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("/health") { _, _ in "ok" }

        let port = Int(ProcessInfo.processInfo.environment["PORT"] ?? "") ?? 8080
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: port)),
            // Stopped in reverse order on SIGTERM: the HTTP server first, then the engine
            // (background tasks finish or are saved cancelled), then telemetry (flushed).
            services: [TelemetryService(telemetry: telemetry, servesMetrics: false), EngineService(runner: runner)],
            onServerRunning: { channel in
                // The port, for scripts that start the service on port 0. The throwing
                // `write(contentsOf:)`: a full disk or a closed pipe is an error, not a trap.
                let line = "listening on \(channel.localAddress?.port ?? 0)\n"
                try? FileHandle.standardOutput.write(contentsOf: Data(line.utf8))
            },
            logger: logger)
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        // Everything that writes has stopped: the last connection folds SQLite's log into the file.
        store.close()
    }
}
