import W3CTraceContext

/// One metric family as the text exposition format describes it.
public struct MetricFamily: Sendable, Hashable {
    /// `counter`, `gauge` or `histogram`.
    public enum Kind: String, Sendable, Hashable {
        case counter, gauge, histogram
    }

    /// One sample line: a suffixed name, labels and a value.
    public struct Sample: Sendable, Hashable {
        /// The full sample name (`_bucket`, `_sum`, `_count` for histograms).
        public var name: String
        /// Label names and values, in order.
        public var labels: [(String, String)]
        /// The value.
        public var value: Double
        /// An exemplar (OpenMetrics only): the trace of one observation in this bucket.
        public var exemplar: Exemplar?
        /// The rendered `name{labels} ` of this sample, when its source keeps
        /// it (a histogram renders the same series at every scrape).
        var renderedPrefix: [UInt8]?

        /// Creates a sample.
        public init(name: String, labels: [(String, String)] = [], value: Double, exemplar: Exemplar? = nil) {
            self.name = name
            self.labels = labels
            self.value = value
            self.exemplar = exemplar
        }

        public static func == (lhs: Sample, rhs: Sample) -> Bool {
            lhs.name == rhs.name && lhs.value == rhs.value && lhs.labels.elementsEqual(rhs.labels) { $0 == $1 }
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(name)
            hasher.combine(value)
        }
    }

    /// One observation's trace, shown next to a histogram bucket in OpenMetrics.
    public struct Exemplar: Sendable, Hashable {
        /// The observation's trace (`trace_id`, written as 32 hex digits).
        public var traceID: TraceID
        /// Its span (`span_id`, 16 hex digits).
        public var spanID: SpanID
        /// The observed value.
        public var value: Double
        /// When it was observed, seconds since the epoch.
        public var timestamp: Double

        /// Creates an exemplar.
        public init(traceID: TraceID, spanID: SpanID, value: Double, timestamp: Double) {
            self.traceID = traceID
            self.spanID = spanID
            self.value = value
            self.timestamp = timestamp
        }
    }

    /// The family name.
    public var name: String
    /// The help text.
    public var help: String
    /// The type.
    public var kind: Kind
    /// Its samples, contiguous.
    public var samples: [Sample]

    /// Creates a family.
    public init(name: String, help: String, kind: Kind, samples: [Sample]) {
        self.name = name
        self.help = help
        self.kind = kind
        self.samples = samples
    }
}
