/// A metric stream ready to export (`opentelemetry.proto.metrics.v1.Metric`).
public struct OTLPMetric: Sendable, Hashable {
    /// How the points of a sum or histogram relate in time.
    public enum Temporality: Int, Sendable, Hashable {
        /// Each point covers the time since the previous export.
        case delta = 1
        /// Each point covers the time since the start.
        case cumulative = 2
    }

    /// Its points.
    public enum Data: Sendable, Hashable {
        /// Values at a time.
        case gauge([OTLPNumberPoint])
        /// Running sums; monotonic for counters.
        case sum([OTLPNumberPoint], monotonic: Bool, temporality: Temporality)
        /// Explicit-bucket histograms.
        case histogram([OTLPHistogramPoint], temporality: Temporality)
    }

    /// The metric name.
    public var name: String
    /// Its description.
    public var description: String
    /// Its unit (`s`, `1`, ...).
    public var unit: String
    /// Its points.
    public var data: Data

    /// Creates a metric.
    public init(name: String, description: String, unit: String, data: Data) {
        self.name = name
        self.description = description
        self.unit = unit
        self.data = data
    }
}

/// A number at a time, with its attributes.
public struct OTLPNumberPoint: Sendable, Hashable {
    /// Its attributes (the Prometheus labels).
    public var attributes: [OTLPAttribute]
    /// Start of the period it covers, nanoseconds since the epoch.
    public var startTimeUnixNano: UInt64
    /// When it was read.
    public var timeUnixNano: UInt64
    /// The value.
    public var value: Double

    /// Creates a point.
    public init(attributes: [OTLPAttribute], startTimeUnixNano: UInt64, timeUnixNano: UInt64, value: Double) {
        self.attributes = attributes
        self.startTimeUnixNano = startTimeUnixNano
        self.timeUnixNano = timeUnixNano
        self.value = value
    }
}

/// One explicit-bucket histogram point.
public struct OTLPHistogramPoint: Sendable, Hashable {
    /// Its attributes.
    public var attributes: [OTLPAttribute]
    /// Start of the period it covers.
    public var startTimeUnixNano: UInt64
    /// When it was read.
    public var timeUnixNano: UInt64
    /// Observations.
    public var count: UInt64
    /// Their sum.
    public var sum: Double
    /// Observations per bucket (not cumulative), one more than `explicitBounds`.
    public var bucketCounts: [UInt64]
    /// Upper bounds of every bucket but the last.
    public var explicitBounds: [Double]
    /// Traces of some observations.
    public var exemplars: [OTLPExemplar]

    /// Creates a point.
    public init(attributes: [OTLPAttribute], startTimeUnixNano: UInt64, timeUnixNano: UInt64, count: UInt64, sum: Double, bucketCounts: [UInt64], explicitBounds: [Double], exemplars: [OTLPExemplar] = []) {
        self.attributes = attributes
        self.startTimeUnixNano = startTimeUnixNano
        self.timeUnixNano = timeUnixNano
        self.count = count
        self.sum = sum
        self.bucketCounts = bucketCounts
        self.explicitBounds = explicitBounds
        self.exemplars = exemplars
    }
}

/// The trace of one observation.
public struct OTLPExemplar: Sendable, Hashable {
    /// When it was observed.
    public var timeUnixNano: UInt64
    /// The observed value.
    public var value: Double
    /// 16 bytes.
    public var traceID: [UInt8]
    /// 8 bytes.
    public var spanID: [UInt8]

    /// Creates an exemplar.
    public init(timeUnixNano: UInt64, value: Double, traceID: [UInt8], spanID: [UInt8]) {
        self.timeUnixNano = timeUnixNano
        self.value = value
        self.traceID = traceID
        self.spanID = spanID
    }
}
