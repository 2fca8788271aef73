/// A finished span of a run's trace, as kept in the `spans` table.
///
/// Times are wall-clock nanoseconds since the Unix epoch, so time filters and
/// exporters agree.
public struct SpanRecord: Sendable, Hashable, Codable {
    /// 32 lowercase hex digits.
    public var traceID: String
    /// 16 lowercase hex digits.
    public var spanID: String
    /// The parent span, absent for a root span.
    public var parentSpanID: String?
    /// The run that produced the span.
    public var runID: String
    /// `pipeline_run` for a root span, the step name for a step span.
    public var name: String
    /// Start, in nanoseconds since the epoch.
    public var startUnixNano: UInt64
    /// End, in nanoseconds since the epoch.
    public var endUnixNano: UInt64
    /// `ok`, `error` or `unset`.
    public var status: String
    /// The error message when status is `error`.
    public var statusMessage: String?
    /// Attributes as a flat string map (values rendered as text).
    public var attributes: [String: String]
    /// Whether the span belongs to a background execution or its launch.
    public var isBackground: Bool

    /// Creates a span record.
    public init(
        traceID: String, spanID: String, parentSpanID: String?, runID: String, name: String,
        startUnixNano: UInt64, endUnixNano: UInt64, status: String = "unset", statusMessage: String? = nil,
        attributes: [String: String] = [:], isBackground: Bool = false
    ) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.runID = runID
        self.name = name
        self.startUnixNano = startUnixNano
        self.endUnixNano = endUnixNano
        self.status = status
        self.statusMessage = statusMessage
        self.attributes = attributes
        self.isBackground = isBackground
    }
}

extension Array where Element == SpanRecord {
    /// The records in order, each span id once, with its last record: what a
    /// batch given to `StateStore.saveSpans` leaves, as one replace after another would.
    public var lastRecordPerSpan: [SpanRecord] {
        var last: [String: Int] = [:]
        for (index, span) in enumerated() { last[span.spanID] = index }
        return indices.filter { last[self[$0].spanID] == $0 }.map { self[$0] }
    }
}
