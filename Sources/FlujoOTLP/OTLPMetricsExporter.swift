import Flujo
import Foundation
import Logging

/// Pushes metrics to an OpenTelemetry collector over OTLP/HTTP (protobuf,
/// libcurl): `{endpoint}/v1/metrics`, with the retry, `Retry-After`, gzip and
/// header rules of the span exporter.
///
/// A periodic reader (`MetricsPush` in FlujoTelemetry) submits a snapshot at
/// each interval; the exporter sends it on its own thread, one request at a
/// time, so a slow collector never blocks the caller. With cumulative
/// snapshots at most one waits: a newer one replaces it (counted as
/// superseded), since it contains the one before. Delta snapshots each carry
/// their own change, so up to 16 wait, in order; past that the oldest is
/// dropped (counted).
public final class OTLPMetricsExporter: CounterSource, @unchecked Sendable {
    // @unchecked: every mutable field below is read and written only while
    // holding `condition`; the transport is used only by the worker thread.
    private let condition = NSCondition()
    private var pending: [[OTLPMetric]] = []
    private let maxPending: Int
    private var exporting = false
    private var stopped = false
    private var delivered = 0
    private var failed = 0
    private var superseded = 0
    private var rejectedPoints: Int64 = 0
    private var failing = false
    /// Partial successes: a line a minute at most, not one per push.
    private let partialSuccesses = LogStreak()

    private let settings: OTLPSettings
    private let origin: OTLPOrigin
    private let logger: Logger

    /// Creates an exporter posting to `settings.tracesURL` (give it
    /// `OTLPMetricsSettings.transport(from:)`) and starts its thread.
    /// `delta`: snapshots carry changes, so none is replaced by a newer one.
    public init(
        settings: OTLPSettings, serviceName: String, serviceVersion: String? = nil, delta: Bool = false,
        logger: Logger = Logger(label: "flujo.otlp.metrics")
    ) {
        self.settings = settings
        maxPending = delta ? 16 : 1
        self.logger = logger
        origin = OTLPOrigin.flujo(settings: settings, serviceName: serviceName, serviceVersion: serviceVersion)
        let thread = Thread { self.run() }
        thread.name = "flujo-otlp-metrics"
        thread.start()
    }

    /// Queues a snapshot for export; a snapshot still waiting is replaced.
    public func submit(_ metrics: [OTLPMetric]) {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped else { return }
        if pending.count >= maxPending {
            pending.removeFirst()
            superseded += 1
        }
        pending.append(metrics)
        condition.broadcast()
    }

    /// Waits until the snapshot submitted last is sent (or failed); false when `timeout` passed first.
    @discardableResult
    public func forceFlush(timeout: Duration = .seconds(30)) -> Bool {
        let deadline = Date().addingTimeInterval(timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while !pending.isEmpty || exporting {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    /// Flushes within `timeout`, then stops; later snapshots are ignored.
    @discardableResult
    public func shutdown(timeout: Duration = .seconds(30)) -> Bool {
        let flushed = forceFlush(timeout: timeout)
        condition.lock()
        if !flushed { logger.warning("OTLP metrics exporter stopped with a snapshot not sent") }
        stopped = true
        condition.broadcast()
        condition.unlock()
        return flushed
    }

    /// Pushes delivered, failed and superseded (replaced, or dropped past the queue), and data points the receiver rejected.
    public var statistics: (delivered: Int, failed: Int, superseded: Int, rejectedPoints: Int64) {
        condition.lock()
        defer { condition.unlock() }
        return (delivered, failed, superseded, rejectedPoints)
    }

    public func counterSamples() -> [CounterSample] {
        let now = statistics
        let help = "OTLP metric pushes, by result."
        return [
            CounterSample(name: "flujo_otlp_metric_exports_total", help: help, labels: ["result": "delivered"], value: Double(now.delivered)),
            CounterSample(name: "flujo_otlp_metric_exports_total", help: help, labels: ["result": "failed"], value: Double(now.failed)),
            CounterSample(name: "flujo_otlp_metric_exports_total", help: help, labels: ["result": "superseded"], value: Double(now.superseded)),
        ]
    }

    private func run() {
        let transport = OTLPHTTPTransport(settings: settings, logger: logger, decodeResponse: { OTLPMetricsEncoder.decodeExportResponse($0) })
        while true {
            condition.lock()
            while !stopped && pending.isEmpty { condition.wait() }
            guard !pending.isEmpty else {
                condition.unlock()
                return
            }
            let metrics = pending.removeFirst()
            exporting = true
            condition.unlock()

            let body = OTLPMetricsEncoder.encodeExportRequest(origin: origin, metrics: metrics)
            let outcome = transport.export(body, deadline: .now + .milliseconds(settings.exportTimeoutMs))

            condition.lock()
            switch outcome {
            case let .delivered(partial):
                delivered += 1
                if let partial {
                    rejectedPoints += partial.rejectedSpans
                    if let report = partialSuccesses.failure() {
                        logger.warning("OTLP receiver rejected \(partial.rejectedSpans) metric data point(s): \(partial.loggableMessage)\(report.tail(unreported: "partial success(es)"))")
                    }
                } else {
                    _ = partialSuccesses.success()
                }
                if failing {
                    failing = false
                    logger.warning("OTLP metrics export to \(OTLPRules.redactedURL(settings.tracesURL)) recovered")
                }
            case let .failed(reason):
                failed += 1
                if !failing {
                    failing = true
                    logger.warning("OTLP metrics export to \(OTLPRules.redactedURL(settings.tracesURL)) is failing (\(reason)); counted in flujo_otlp_metric_exports_total{result=\"failed\"}, a line follows when it recovers")
                }
            }
            exporting = false
            condition.broadcast()
            condition.unlock()
        }
    }
}
