import Instrumentation
import W3CTraceContext

/// Trace context between Flujo and the instrument the application installed
/// with swift-distributed-tracing (swift-otel, or any other tracer).
///
/// Both ways go through the instrument's own propagation, as W3C headers
/// (`traceparent`, `tracestate`): Flujo needs no knowledge of the tracer. With
/// no instrument installed (the default no-op), neither way does anything.
enum ServiceContextBridge {
    /// The caller's span: `ServiceContext.current` injected by the installed
    /// instrument. Nil without an instrument, without a current context, or
    /// when the instrument writes no valid `traceparent`.
    static func callerTrace() -> TraceContext? {
        guard let current = ServiceContext.current else { return nil }
        let instrument = InstrumentationSystem.instrument
        if instrument is NoOpInstrument { return nil }
        var carrier = HeaderCarrier()
        instrument.inject(current, into: &carrier, using: HeaderInjector())
        guard let traceParent = carrier.traceParent else { return nil }
        return try? TraceContext(traceParentHeaderValue: traceParent, traceStateHeaderValue: carrier.traceState)
    }

    /// Whether the application installed an instrument (bootstrapped, or bound with `withTracer`).
    static var isInstrumented: Bool {
        !(InstrumentationSystem.instrument is NoOpInstrument)
    }

    /// Runs `body` with `ServiceContext.current` carrying `span`, extracted by
    /// the installed instrument, so the spans of instrumented libraries called
    /// in `body` become children of `span`. Without an instrument, runs `body` as it is.
    static func withSpan<Result>(_ span: SpanPosition, _ body: () async throws -> Result) async rethrows -> Result {
        let instrument = InstrumentationSystem.instrument
        if instrument is NoOpInstrument { return try await body() }
        var context = ServiceContext.current ?? .topLevel
        instrument.extract(HeaderCarrier(traceParent: span.traceparent, traceState: span.tracestate), into: &context, using: HeaderExtractor())
        return try await ServiceContext.withValue(context) { try await body() }
    }
}

/// The two W3C trace context headers, as a carrier of no allocation.
struct HeaderCarrier: Sendable {
    var traceParent: String?
    var traceState: String?
}

struct HeaderInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout HeaderCarrier) {
        switch key.lowercased() {
        case "traceparent": carrier.traceParent = value
        case "tracestate": carrier.traceState = value
        default: break
        }
    }
}

struct HeaderExtractor: Extractor {
    func extract(key: String, from carrier: HeaderCarrier) -> String? {
        switch key.lowercased() {
        case "traceparent": return carrier.traceParent
        case "tracestate": return carrier.traceState
        default: return nil
        }
    }
}
