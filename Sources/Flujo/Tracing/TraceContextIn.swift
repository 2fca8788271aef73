import W3CTraceContext

extension HookEvent.TraceParent {
    /// The parent a W3C trace context names (parsed by swift-w3c-trace-context).
    public init(_ context: TraceContext) {
        self.init(
            traceID: withUnsafeBytes(of: context.traceID.bytes) { Array($0) },
            spanID: withUnsafeBytes(of: context.spanID.bytes) { Array($0) },
            sampled: context.flags.contains(.sampled),
            traceState: context.traceStateHeaderValue)
    }

    /// Parses `traceparent` and `tracestate` header values. A malformed
    /// `traceparent` is refused (nil) with the reason, as the W3C Trace Context
    /// specification asks: the receiver then starts a new trace.
    public static func parse(traceParent: String, traceState: String? = nil) -> (parent: Self?, problem: String?) {
        do {
            let context = try TraceContext(traceParentHeaderValue: traceParent, traceStateHeaderValue: traceState)
            return (Self(context), nil)
        } catch {
            return (nil, "ignoring a malformed traceparent (\(error)); a new trace starts")
        }
    }
}
