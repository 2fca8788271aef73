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
    public var samples: [Sample] {
        get { sources.isEmpty ? ownSamples : ownSamples + sources.flatMap(\.samples) }
        set {
            ownSamples = newValue
            sources = []
        }
    }
    /// Samples held by the family.
    var ownSamples: [Sample]
    /// Series that keep their own samples and write their own lines (histograms),
    /// after `ownSamples`: a render reads them in place, without copying a sample.
    var sources: [any SampleSource]

    /// Creates a family.
    public init(name: String, help: String, kind: Kind, samples: [Sample]) {
        self.name = name
        self.help = help
        self.kind = kind
        ownSamples = samples
        sources = []
    }

    /// A family whose series write themselves.
    init(name: String, help: String, kind: Kind, sources: [any SampleSource]) {
        self.name = name
        self.help = help
        self.kind = kind
        ownSamples = []
        self.sources = sources
    }

    public static func == (lhs: MetricFamily, rhs: MetricFamily) -> Bool {
        lhs.name == rhs.name && lhs.help == rhs.help && lhs.kind == rhs.kind && lhs.samples == rhs.samples
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(kind)
    }

    /// Writes every sample line.
    func writeSamples(into out: inout ExpositionWriter, exemplars: Bool) {
        out.appendLines(ownSamples, exemplars: exemplars)
        for source in sources { source.write(into: &out, exemplars: exemplars) }
    }
}

/// A series that keeps its own samples and writes its lines in place.
protocol SampleSource: AnyObject, Sendable {
    /// Its samples, copied.
    var samples: [MetricFamily.Sample] { get }
    /// Writes its sample lines.
    func write(into out: inout ExpositionWriter, exemplars: Bool)
}
