import Flujo
import FlujoOTLP
import FlujoPrometheus
import Foundation
import Logging
import Synchronization

/// Everything `[telemetry]` configures, built from `FlujoSettings` in one call,
/// with one shutdown: the hook bus, the console tracer, the span pipeline (spans
/// kept in the state store and exported over OTLP), event metrics and the
/// `/metrics` server.
///
/// Every `enabled` flag is honoured: `[telemetry.console] enabled` registers
/// the console tracer, `[telemetry.otlp] enabled` (or an `OTEL_*` endpoint)
/// the OTLP exporter, `[telemetry.prometheus] enabled` the event metrics and,
/// with `startMetricsServer()`, the server on its `host` and `port`. Each
/// exporter gets its background policy where it is registered.
///
/// ```swift
/// let telemetry = Telemetry(settings: settings, store: store)
/// let runner = Runner(store: store, settings: settings, hooks: telemetry.hooks)
/// try await telemetry.startMetricsServer()
/// // ... run pipelines ...
/// await runner.close()
/// await telemetry.shutdown()
/// ```
public final class Telemetry: Sendable {
    /// The bus to give the runner and the task operations.
    public let hooks: HookBus
    /// The console tracer, when `[telemetry.console] enabled`.
    public let console: ConsoleTracer?
    /// The OTLP exporter, when `[telemetry.otlp] enabled`.
    public let otlp: OTLPExporter?
    /// Event-derived metrics, when `[telemetry.prometheus] enabled`.
    public let events: EventMetrics?
    /// Task lifecycle counters, when `[telemetry.prometheus] enabled`.
    public let tasks: TaskMetrics?
    /// Spans kept in the store and handed to the exporter; nil when neither is wanted.
    public let spans: SpanPipeline?
    /// The OTLP metrics push, when `[telemetry.otlp_metrics] enabled`; started by `init`.
    public let metricsPush: MetricsPush?
    private let settings: FlujoSettings
    private let store: (any StateStore)?
    private let server = Mutex<MetricsServer?>(nil)
    private let logger: Logger

    /// Builds telemetry for `settings` on a new bus (or `hooks`).
    /// - Parameters:
    ///   - store: where spans are kept (for `flujo trace`) and what the metrics
    ///     collector reads; nil keeps no spans and serves event metrics only.
    ///   - persistSpans: keep every run's spans in `store`.
    ///   - consoleWrite: where console lines go (standard output by default); what it
    ///     throws is the console sink's error for that event.
    ///   - serviceVersion: `service.version` of exported spans.
    public init(
        settings: FlujoSettings, store: (any StateStore)?, hooks: HookBus = HookBus(), persistSpans: Bool = true,
        consoleWrite: (@Sendable (String) throws -> Void)? = nil, serviceVersion: String? = nil,
        logger: Logger = Logger(label: "flujo.telemetry")
    ) {
        self.settings = settings
        self.store = store
        self.hooks = hooks
        self.logger = logger
        let telemetry = settings.telemetry
        if telemetry.console.enabled {
            let tracer = ConsoleTracer(settings: settings, write: consoleWrite)
            hooks.register(tracer, background: settings.consoleBackground)
            console = tracer
        } else {
            console = nil
        }
        if telemetry.prometheus.enabled {
            let metrics = EventMetrics(maxStepLabels: telemetry.prometheus.maxStepLabels)
            hooks.register(metrics, background: settings.prometheusBackground)
            events = metrics
            // Task lifecycle counters count every task: their events are background ones.
            let taskMetrics = TaskMetrics()
            hooks.register(taskMetrics, background: .include)
            tasks = taskMetrics
        } else {
            events = nil
            tasks = nil
        }
        otlp = telemetry.otlp.enabled ? OTLPExporter(settings: settings, serviceVersion: serviceVersion) : nil
        let spanStore = persistSpans ? store : nil
        if spanStore != nil || otlp != nil {
            spans = SpanPipeline(
                hooks: hooks, store: spanStore,
                exporters: otlp.map { [SpanDestination($0, background: settings.otlpBackground)] } ?? [],
                maxSpansPerRun: settings.state.maxSpansPerRun)
        } else {
            spans = nil
        }
        if telemetry.otlpMetrics.enabled {
            let exporter = OTLPMetricsExporter(
                settings: telemetry.otlpMetrics.transport(from: telemetry.otlp), serviceName: telemetry.serviceName, serviceVersion: serviceVersion,
                delta: telemetry.otlpMetrics.temporality != "cumulative")
            let push = MetricsPush(
                collector: MetricsCollector(
                    store: store, events: events, tasks: tasks, hooks: hooks,
                    counterSources: (otlp.map { [$0] } ?? []) + (spans?.persister.map { [$0] } ?? []) + [exporter]),
                exporter: exporter, settings: telemetry.otlpMetrics)
            push.start()
            metricsPush = push
        } else {
            metricsPush = nil
        }
    }

    /// A collector of every metric this telemetry knows: state gauges from the
    /// store (when given), event metrics, hook errors and exporter counters.
    public func collector() -> MetricsCollector {
        MetricsCollector(
            store: store, events: events, tasks: tasks, hooks: hooks,
            counterSources: (otlp.map { [$0] } ?? []) + (spans?.persister.map { [$0] } ?? []) + (metricsPush.map { [$0.exporter] } ?? []))
    }

    /// Starts the `/metrics` server on `[telemetry.prometheus] host` and `port`
    /// when Prometheus is enabled; returns it (nil when disabled). Stopped by `shutdown()`.
    @discardableResult
    public func startMetricsServer() async throws -> MetricsServer? {
        let prometheus = settings.telemetry.prometheus
        guard prometheus.enabled else { return nil }
        if let running = server.withLock({ $0 }) { return running }
        let started = try await MetricsServer.start(host: prometheus.host, port: prometheus.port, collector: collector())
        server.withLock { $0 = started }
        return started
    }

    /// The running `/metrics` server, if any.
    public var metricsServer: MetricsServer? { server.withLock { $0 } }

    /// Stops the metrics server, writes queued spans to the store, pushes a
    /// last metrics snapshot, and flushes and stops the OTLP exporters within `timeout` (default
    /// `[telemetry] shutdown_timeout_seconds`). Call it after `Runner.close()`.
    public func shutdown(timeout: Duration? = nil) async {
        let timeout = timeout ?? .seconds(settings.telemetry.shutdownTimeoutSeconds)
        if let running = server.withLock({ server -> MetricsServer? in
            defer { server = nil }
            return server
        }) {
            await running.stop()
        }
        await spans?.close()
        // A last snapshot, so counts made since the last interval are not lost.
        await metricsPush?.shutdown(timeout: timeout)
        if let otlp {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                // The exporter's shutdown blocks its caller; keep it off the cooperative pool.
                let thread = Thread {
                    _ = otlp.shutdown(timeout: timeout)
                    done.resume()
                }
                thread.start()
            }
        }
    }
}
