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

        /// Creates a sample.
        public init(name: String, labels: [(String, String)] = [], value: Double) {
            self.name = name
            self.labels = labels
            self.value = value
        }

        public static func == (lhs: Sample, rhs: Sample) -> Bool {
            lhs.name == rhs.name && lhs.value == rhs.value && lhs.labels.elementsEqual(rhs.labels) { $0 == $1 }
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(name)
            hasher.combine(value)
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
