import Flujo
import Foundation
import Logging

/// Exports spans to an OpenTelemetry collector over OTLP/HTTP (protobuf, libcurl).
///
/// A batch span processor as the SDK specification describes it: "the
/// processor SHOULD export a batch when `maxExportBatchSize` spans are
/// queued or `scheduledDelayMillis` passed", with a bounded queue
/// (`maxQueueSize`; when full, new spans are dropped and counted) and one
/// export at a time on the exporter's own thread, so `onEnd` never blocks
/// the runner. Which spans reach it (background ones or not) is decided where
/// it is registered: `SpanPipeline` applies the background policy.
public final class OTLPExporter: SpanProcessor, CounterSource, @unchecked Sendable {
    // @unchecked: every mutable field below is read and written only while
    // holding `condition`; the transport is used only by the worker thread.
    private let condition = NSCondition()
    private var queue: [TraceSpan] = []
    private var flushRequested = false
    private var exporting = false
    /// Spans of the export under way (0 when none).
    private var inFlight = 0
    private var stopped = false
    private var exportedCount = 0
    private var droppedQueueFull = 0
    private var droppedExportFailed = 0
    private var failedExports = 0
    private var rejectedByReceiver = 0
    private var retryCount = 0
    /// The failure streak under way: exports failed and spans dropped since the last success.
    private var failureStreak: (exports: Int, spans: Int)?
    /// Partial successes: a receiver rejecting part of every batch is a line a minute, not one per export.
    private let partialSuccesses = LogStreak()

    private let settings: OTLPSettings
    private let origin: OTLPOrigin
    private let logger: Logger
    private var worker: Thread?

    /// Creates an exporter for `settings` and starts its thread.
    /// - Parameters:
    ///   - serviceName: `service.name` of the resource.
    ///   - serviceVersion: `service.version`, when known.
    public init(settings: OTLPSettings, serviceName: String, serviceVersion: String? = nil, logger: Logger = Logger(label: "flujo.otlp")) {
        self.settings = settings
        self.logger = logger
        origin = OTLPOrigin.flujo(settings: settings, serviceName: serviceName, serviceVersion: serviceVersion)
        // The thread keeps the exporter alive until `shutdown` stops it.
        let thread = Thread { self.run() }
        thread.name = "flujo-otlp-exporter"
        worker = thread
        thread.start()
    }

    /// Creates an exporter from loaded settings (service name and `[telemetry.otlp]`).
    public convenience init(settings: FlujoSettings, serviceVersion: String? = nil) {
        self.init(settings: settings.telemetry.otlp, serviceName: settings.telemetry.serviceName, serviceVersion: serviceVersion)
    }

    public func onEnd(_ span: TraceSpan) {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped, queue.count < settings.maxQueueSize else {
            droppedQueueFull += 1
            return
        }
        queue.append(span)
        if queue.count >= settings.maxExportBatchSize { condition.broadcast() }
    }

    /// Exports everything queued now; false when `timeout` passed first.
    @discardableResult
    public func forceFlush(timeout: Duration = .seconds(30)) -> Bool {
        let deadline = Date().addingTimeInterval(timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        flushRequested = true
        condition.broadcast()
        while !queue.isEmpty || exporting {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    /// Flushes within `timeout`, then stops the exporter; later spans are dropped.
    @discardableResult
    public func shutdown(timeout: Duration = .seconds(30)) -> Bool {
        let flushed = forceFlush(timeout: timeout)
        condition.lock()
        if !flushed || failureStreak != nil {
            let dropped = failureStreak?.spans ?? 0
            let unsent = queue.count + inFlight
            let retrying = inFlight > 0 ? " (\(inFlight) of them in an export still being tried)" : ""
            logger.warning("OTLP exporter stopped with \(unsent) span(s) not sent\(retrying)\(dropped > 0 ? "; \(dropped) span(s) dropped since export began failing" : "")")
        }
        stopped = true
        condition.broadcast()
        condition.unlock()
        return flushed
    }

    /// The exporter's own figures: spans exported, dropped by reason, failed exports, retries.
    public func counterSamples() -> [CounterSample] {
        condition.lock()
        defer { condition.unlock() }
        return [
            CounterSample(name: "flujo_otlp_spans_exported_total", help: "Spans the OTLP receiver accepted.", value: Double(exportedCount)),
            CounterSample(name: "flujo_otlp_spans_dropped_total", help: "Spans not exported, by reason.", labels: ["reason": "queue_full"], value: Double(droppedQueueFull)),
            CounterSample(name: "flujo_otlp_spans_dropped_total", help: "Spans not exported, by reason.", labels: ["reason": "export_failed"], value: Double(droppedExportFailed)),
            CounterSample(name: "flujo_otlp_spans_dropped_total", help: "Spans not exported, by reason.", labels: ["reason": "rejected"], value: Double(rejectedByReceiver)),
            CounterSample(name: "flujo_otlp_exports_failed_total", help: "OTLP export requests that failed for good.", value: Double(failedExports)),
            CounterSample(name: "flujo_otlp_export_retries_total", help: "OTLP export requests retried.", value: Double(retryCount)),
        ]
    }

    /// A snapshot of the counters, for tests and reports.
    public var statistics: (exported: Int, droppedQueueFull: Int, droppedExportFailed: Int, failedExports: Int, retries: Int, rejected: Int, queued: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (exportedCount, droppedQueueFull, droppedExportFailed, failedExports, retryCount, rejectedByReceiver, queue.count)
    }

    private func run() {
        let transport = OTLPHTTPTransport(settings: settings, logger: logger)
        while true {
            condition.lock()
            let scheduled = Date().addingTimeInterval(Double(settings.scheduleDelayMs) / 1000)
            while !stopped && !flushRequested && queue.count < settings.maxExportBatchSize {
                if !condition.wait(until: scheduled) { break }
            }
            if queue.isEmpty {
                flushRequested = false
                condition.broadcast()
                let done = stopped
                condition.unlock()
                if done { return }
                continue
            }
            let batch = Array(queue.prefix(settings.maxExportBatchSize))
            queue.removeFirst(batch.count)
            exporting = true
            inFlight = batch.count
            condition.unlock()

            let body = OTLPTraceEncoder.encodeExportRequest(origin: origin, spans: batch.map(Self.convert))
            let retriesBefore = transport.retries
            let outcome = transport.export(body, deadline: .now + .milliseconds(settings.exportTimeoutMs))

            condition.lock()
            retryCount += transport.retries - retriesBefore
            switch outcome {
            case let .delivered(partial):
                let rejected = Int(partial?.rejectedSpans ?? 0)
                exportedCount += batch.count - rejected
                rejectedByReceiver += rejected
                if let partial {
                    if let report = partialSuccesses.failure() {
                        logger.warning("OTLP receiver rejected \(partial.rejectedSpans) span(s): \(partial.loggableMessage)\(report.tail(unreported: "partial success(es), counted in flujo_otlp_spans_dropped_total{reason=\"rejected\"}"))")
                    }
                } else {
                    _ = partialSuccesses.success()
                }
                if let streak = failureStreak {
                    failureStreak = nil
                    logger.warning("OTLP export to \(OTLPRules.redactedURL(settings.tracesURL)) recovered after \(streak.exports) failed export(s); \(streak.spans) span(s) were dropped")
                }
            case let .failed(reason):
                failedExports += 1
                droppedExportFailed += batch.count
                // One warning per failure streak, and one when it ends: a collector that is down does not flood the log.
                if var streak = failureStreak {
                    streak.exports += 1
                    streak.spans += batch.count
                    failureStreak = streak
                    logger.debug("OTLP export of \(batch.count) span(s) failed again: \(reason)")
                } else {
                    failureStreak = (1, batch.count)
                    logger.warning("OTLP export to \(OTLPRules.redactedURL(settings.tracesURL)) is failing (\(reason)); \(batch.count) span(s) dropped. Further failures are counted in flujo_otlp_spans_dropped_total; a line follows when export recovers.")
                }
            }
            exporting = false
            inFlight = 0
            condition.broadcast()
            condition.unlock()
        }
    }

    /// A span in OTLP's terms.
    static func convert(_ span: TraceSpan) -> OTLPSpan {
        OTLPSpan(
            traceID: span.traceID, spanID: span.spanID, parentSpanID: span.parentSpanID ?? [], name: span.name,
            kind: .internal, startTimeUnixNano: span.startUnixNano, endTimeUnixNano: span.endUnixNano,
            attributes: span.attributes.map { OTLPAttribute($0.key, value($0.value)) },
            events: span.events.map { event in
                OTLPEvent(timeUnixNano: event.unixNano, name: event.name, attributes: event.attributes.map { OTLPAttribute($0.key, value($0.value)) })
            },
            links: span.links.map { link in
                OTLPLink(traceID: link.traceID, spanID: link.spanID, attributes: link.attributes.map { OTLPAttribute($0.key, value($0.value)) })
            },
            status: OTLPStatus(code: span.status == .error ? .error : (span.status == .ok ? .ok : .unset), message: span.statusMessage ?? ""))
    }

    private static func value(_ value: SpanAttributeValue) -> OTLPValue {
        switch value {
        case let .string(text): return .string(text)
        case let .int(number): return .int(number)
        case let .double(number): return .double(number)
        case let .bool(flag): return .bool(flag)
        }
    }
}

extension OTLPOrigin {
    /// Flujo's resource (`service.name`, `service.version`, `telemetry.sdk.*`,
    /// `OTEL_RESOURCE_ATTRIBUTES`) and instrumentation scope.
    static func flujo(settings: OTLPSettings, serviceName: String, serviceVersion: String?) -> OTLPOrigin {
        var resource: [String: String] = settings.resourceAttributes
        resource["service.name"] = serviceName
        if let serviceVersion { resource["service.version"] = serviceVersion }
        resource["telemetry.sdk.name"] = "flujo"
        resource["telemetry.sdk.language"] = "swift"
        resource["telemetry.sdk.version"] = flujoVersion
        return OTLPOrigin(
            resourceAttributes: resource.keys.sorted().map { OTLPAttribute($0, .string(resource[$0]!)) },
            scopeName: "flujo", scopeVersion: flujoVersion)
    }
}
