/// One sample of a counter (or gauge) that a component exports for metric endpoints.
public struct CounterSample: Sendable, Hashable {
    /// Whether the value only grows (a counter) or goes up and down (a gauge).
    public enum Kind: Sendable, Hashable {
        case counter
        case gauge
    }

    /// The metric family name, e.g. `flujo_otlp_spans_exported_total`.
    public var name: String
    /// The family's help text.
    public var help: String
    /// Label names and values.
    public var labels: [String: String]
    /// The current value.
    public var value: Double
    /// Counter or gauge.
    public var kind: Kind

    /// Creates a sample.
    public init(name: String, help: String, labels: [String: String] = [:], value: Double, kind: Kind = .counter) {
        self.name = name
        self.help = help
        self.labels = labels
        self.value = value
        self.kind = kind
    }
}

/// A component with counters of its own (the OTLP exporter, for example) that
/// a metrics endpoint can export without depending on the component's module.
public protocol CounterSource: Sendable {
    /// The current value of every counter.
    func counterSamples() -> [CounterSample]
}

/// The version of this package, reported as `telemetry.sdk.version` and in the User-Agent.
public let flujoVersion = "0.1.0"
