import Flujo
import FlujoTelemetry
import Logging
import ServiceLifecycle

/// The engine as a swift-service-lifecycle `Service`: maintenance (heartbeats,
/// recovery, stale cleanup, retention) runs while the group runs; on graceful
/// shutdown (SIGTERM, say) the engine closes, waiting up to
/// `shutdown_timeout_seconds` for its background tasks and persisting the rest
/// as `cancelled`.
///
/// Put it after `TelemetryService` in the group: a group shuts its services
/// down in reverse order, so the engine closes before telemetry flushes.
public struct EngineService: Service {
    /// The engine.
    public let runner: Runner
    let logger: Logger

    /// Creates the service.
    public init(runner: Runner, logger: Logger = Logger(label: "flujo.engine")) {
        self.runner = runner
        self.logger = logger
    }

    public func run() async throws {
        runner.startMaintenance()
        // Returns on graceful shutdown, throws on cancellation: either way the engine closes.
        try? await gracefulShutdown()
        let report = await runner.close()
        if !report.isComplete {
            logger.error("closed with \(report.unpersisted.count) task outcome(s) not persisted; they are recovered as lost workers once this process ends")
        }
    }
}

/// A `TaskWorker` as a `Service`: runs due tasks until graceful shutdown; then
/// claims no new task and lets the running ones finish.
public struct WorkerService: Service {
    /// The worker.
    public let worker: TaskWorker

    /// Creates the service.
    public init(worker: TaskWorker) {
        self.worker = worker
    }

    public func run() async throws {
        _ = await cancelWhenGracefulShutdown { await worker.run() }
    }
}

/// `Telemetry` as a `Service`: starts the `/metrics` server (when
/// `[telemetry.prometheus] enabled`, unless `servesMetrics` is false because
/// the application serves `/metrics` itself from `telemetry.collector()`) and,
/// on graceful shutdown, stops it, writes queued spans, pushes the last OTLP
/// metrics and flushes the OTLP exporters within `shutdownTimeout` (default
/// `[telemetry] shutdown_timeout_seconds`).
public struct TelemetryService: Service {
    /// The telemetry.
    public let telemetry: Telemetry
    /// The bound of the flush at shutdown; nil: the setting.
    public let shutdownTimeout: Duration?
    /// Whether Flujo's own `/metrics` server starts.
    public let servesMetrics: Bool

    /// Creates the service.
    public init(telemetry: Telemetry, shutdownTimeout: Duration? = nil, servesMetrics: Bool = true) {
        self.telemetry = telemetry
        self.shutdownTimeout = shutdownTimeout
        self.servesMetrics = servesMetrics
    }

    public func run() async throws {
        if servesMetrics { try await telemetry.startMetricsServer() }
        try? await gracefulShutdown()
        await telemetry.shutdown(timeout: shutdownTimeout)
    }
}
