import Flujo

/// An attribute value as OTLP carries it (`opentelemetry.proto.common.v1.AnyValue`).
public indirect enum OTLPValue: Sendable, Hashable {
    /// A UTF-8 string.
    case string(String)
    /// A boolean.
    case bool(Bool)
    /// A signed 64-bit integer.
    case int(Int64)
    /// A double.
    case double(Double)
    /// Raw bytes.
    case bytes([UInt8])
    /// A list of values.
    case array([OTLPValue])
    /// A nested list of key-value pairs.
    case keyValues([OTLPAttribute])
}

/// One key-value attribute (`opentelemetry.proto.common.v1.KeyValue`).
public struct OTLPAttribute: Sendable, Hashable {
    /// The attribute key, e.g. `flujo.run_id`.
    public var key: String
    /// The attribute value.
    public var value: OTLPValue

    /// Creates an attribute.
    public init(_ key: String, _ value: OTLPValue) {
        self.key = key
        self.value = value
    }
}

/// The span's role (`Span.SpanKind`).
public enum OTLPSpanKind: Int32, Sendable, Hashable {
    case unspecified = 0, `internal` = 1, server = 2, client = 3, producer = 4, consumer = 5
}

/// The span's outcome (`Status`).
public struct OTLPStatus: Sendable, Hashable {
    /// `STATUS_CODE_UNSET`, `_OK` or `_ERROR`.
    public enum Code: Int32, Sendable, Hashable { case unset = 0, ok = 1, error = 2 }
    /// The code.
    public var code: Code
    /// A developer-facing message, set with `error`.
    public var message: String

    /// Creates a status.
    public init(code: Code = .unset, message: String = "") {
        self.code = code
        self.message = message
    }
}

/// A time-stamped annotation (`Span.Event`), e.g. `flujo.retry`.
public struct OTLPEvent: Sendable, Hashable {
    /// Nanoseconds since the Unix epoch.
    public var timeUnixNano: UInt64
    /// The event name.
    public var name: String
    /// Event attributes.
    public var attributes: [OTLPAttribute]

    /// Creates an event.
    public init(timeUnixNano: UInt64, name: String, attributes: [OTLPAttribute] = []) {
        self.timeUnixNano = timeUnixNano
        self.name = name
        self.attributes = attributes
    }
}

/// A link to another span (`Span.Link`).
public struct OTLPLink: Sendable, Hashable {
    /// 16 bytes.
    public var traceID: [UInt8]
    /// 8 bytes.
    public var spanID: [UInt8]
    /// Link attributes.
    public var attributes: [OTLPAttribute]

    /// Creates a link.
    public init(traceID: [UInt8], spanID: [UInt8], attributes: [OTLPAttribute] = []) {
        self.traceID = traceID
        self.spanID = spanID
        self.attributes = attributes
    }
}

/// A finished span ready to export (`opentelemetry.proto.trace.v1.Span`).
public struct OTLPSpan: Sendable, Hashable {
    /// 16 bytes, not all zero.
    public var traceID: [UInt8]
    /// 8 bytes, not all zero.
    public var spanID: [UInt8]
    /// 8 bytes, or empty for a root span.
    public var parentSpanID: [UInt8]
    /// `pipeline_run` or the step name.
    public var name: String
    /// The span kind; Flujo's spans are internal.
    public var kind: OTLPSpanKind
    /// Start, nanoseconds since the Unix epoch.
    public var startTimeUnixNano: UInt64
    /// End, nanoseconds since the Unix epoch.
    public var endTimeUnixNano: UInt64
    /// Span attributes.
    public var attributes: [OTLPAttribute]
    /// Span events.
    public var events: [OTLPEvent]
    /// Span links.
    public var links: [OTLPLink]
    /// The outcome.
    public var status: OTLPStatus

    /// Creates a span.
    public init(
        traceID: [UInt8], spanID: [UInt8], parentSpanID: [UInt8] = [], name: String, kind: OTLPSpanKind = .internal,
        startTimeUnixNano: UInt64, endTimeUnixNano: UInt64, attributes: [OTLPAttribute] = [],
        events: [OTLPEvent] = [], links: [OTLPLink] = [], status: OTLPStatus = OTLPStatus()
    ) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.name = name
        self.kind = kind
        self.startTimeUnixNano = startTimeUnixNano
        self.endTimeUnixNano = endTimeUnixNano
        self.attributes = attributes
        self.events = events
        self.links = links
        self.status = status
    }
}

/// The producer of the spans (`Resource`) and the library that made them (`InstrumentationScope`).
public struct OTLPOrigin: Sendable, Hashable {
    /// Resource attributes, e.g. `service.name`.
    public var resourceAttributes: [OTLPAttribute]
    /// The instrumentation scope name.
    public var scopeName: String
    /// The instrumentation scope version.
    public var scopeVersion: String

    /// Creates an origin.
    public init(resourceAttributes: [OTLPAttribute], scopeName: String = "flujo", scopeVersion: String = "") {
        self.resourceAttributes = resourceAttributes
        self.scopeName = scopeName
        self.scopeVersion = scopeVersion
    }
}

/// What a receiver said in `ExportTraceServiceResponse.partial_success`.
public struct OTLPPartialSuccess: Sendable, Hashable {
    /// Spans the receiver rejected.
    public var rejectedSpans: Int64
    /// Why, in the receiver's words.
    public var errorMessage: String

    /// Creates a partial-success report.
    public init(rejectedSpans: Int64, errorMessage: String) {
        self.rejectedSpans = rejectedSpans
        self.errorMessage = errorMessage
    }

    /// How much of the receiver's message a log line shows.
    public static let loggedMessageLimit = 512

    /// The receiver's message as a log line shows it: control characters
    /// escaped (no receiver can forge a line or drive a terminal) and cut at
    /// `loggedMessageLimit` characters, saying how many more there were.
    public var loggableMessage: String {
        let shown = errorMessage.count > Self.loggedMessageLimit ? String(errorMessage.prefix(Self.loggedMessageLimit)) : errorMessage
        let more = errorMessage.count - shown.count
        return TerminalText.escaped(shown) + (more > 0 ? "… (\(more) more characters)" : "")
    }
}
