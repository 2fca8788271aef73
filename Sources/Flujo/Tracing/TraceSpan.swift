/// A typed span attribute value.
public enum SpanAttributeValue: Sendable, Hashable, CustomStringConvertible {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)

    public var description: String {
        switch self {
        case let .string(value): return value
        case let .int(value): return String(value)
        case let .double(value): return String(value)
        case let .bool(value): return String(value)
        }
    }
}

/// A finished span of a run's trace, built from hook events.
public struct TraceSpan: Sendable, Hashable {
    /// A time-stamped annotation: `flujo.retry` or `flujo.paused`.
    public struct Event: Sendable, Hashable {
        /// Nanoseconds since the Unix epoch.
        public var unixNano: UInt64
        /// The event name.
        public var name: String
        /// Its attributes, in order.
        public var attributes: [(key: String, value: SpanAttributeValue)]

        /// Creates an event.
        public init(unixNano: UInt64, name: String, attributes: [(key: String, value: SpanAttributeValue)]) {
            self.unixNano = unixNano
            self.name = name
            self.attributes = attributes
        }

        public static func == (lhs: Event, rhs: Event) -> Bool {
            lhs.unixNano == rhs.unixNano && lhs.name == rhs.name && lhs.attributes.elementsEqual(rhs.attributes) { $0.key == $1.key && $0.value == $1.value }
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(unixNano)
            hasher.combine(name)
        }
    }

    /// A link to a span of another attempt: the attempt before a resume, retry or recovery.
    public struct Link: Sendable, Hashable {
        /// The linked span's trace, 16 bytes.
        public var traceID: [UInt8]
        /// The linked span, 8 bytes.
        public var spanID: [UInt8]
        /// Its attributes: `flujo.link.kind` and the linked attempt's number.
        public var attributes: [(key: String, value: SpanAttributeValue)]

        /// Creates a link.
        public init(traceID: [UInt8], spanID: [UInt8], attributes: [(key: String, value: SpanAttributeValue)]) {
            self.traceID = traceID
            self.spanID = spanID
            self.attributes = attributes
        }

        public static func == (lhs: Link, rhs: Link) -> Bool {
            lhs.traceID == rhs.traceID && lhs.spanID == rhs.spanID
                && lhs.attributes.elementsEqual(rhs.attributes) { $0.key == $1.key && $0.value == $1.value }
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(spanID)
        }
    }

    /// The outcome of the span.
    public enum Status: String, Sendable, Hashable {
        case unset, ok, error
    }

    /// 16 random bytes, shared by every span of a trace.
    public var traceID: [UInt8]
    /// 8 random bytes.
    public var spanID: [UInt8]
    /// The parent span, nil for a root.
    public var parentSpanID: [UInt8]?
    /// The run the span belongs to.
    public var runID: String
    /// `pipeline_run` or the step name.
    public var name: String
    /// Start, nanoseconds since the Unix epoch (wall clock).
    public var startUnixNano: UInt64
    /// End, nanoseconds since the Unix epoch (wall clock).
    public var endUnixNano: UInt64
    /// Attributes, in the order they were set.
    public var attributes: [(key: String, value: SpanAttributeValue)]
    /// Events.
    public var events: [Event]
    /// Outcome.
    public var status: Status
    /// The error message when status is error.
    public var statusMessage: String?
    /// Whether the span belongs to a background execution or its launch.
    public var isBackground: Bool
    /// Links to spans of other attempts.
    public var links: [Link]

    /// Creates a span.
    public init(
        traceID: [UInt8], spanID: [UInt8], parentSpanID: [UInt8]?, runID: String, name: String, startUnixNano: UInt64,
        endUnixNano: UInt64, attributes: [(key: String, value: SpanAttributeValue)], events: [Event], status: Status,
        statusMessage: String?, isBackground: Bool, links: [Link] = []
    ) {
        self.links = links
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.runID = runID
        self.name = name
        self.startUnixNano = startUnixNano
        self.endUnixNano = endUnixNano
        self.attributes = attributes
        self.events = events
        self.status = status
        self.statusMessage = statusMessage
        self.isBackground = isBackground
    }

    /// The value of an attribute.
    public func attribute(_ key: String) -> SpanAttributeValue? {
        attributes.first { $0.key == key }?.value
    }

    public static func == (lhs: TraceSpan, rhs: TraceSpan) -> Bool {
        lhs.spanID == rhs.spanID && lhs.traceID == rhs.traceID && lhs.endUnixNano == rhs.endUnixNano
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(spanID)
    }

    /// The span as the state store keeps it (hex ids, attributes as text).
    public var record: SpanRecord {
        var flat: [String: String] = [:]
        for (key, value) in attributes { flat[key] = value.description }
        return SpanRecord(
            traceID: Self.hex(traceID), spanID: Self.hex(spanID), parentSpanID: parentSpanID.map(Self.hex), runID: runID,
            name: name, startUnixNano: startUnixNano, endUnixNano: endUnixNano, status: status.rawValue,
            statusMessage: statusMessage, attributes: flat, isBackground: isBackground)
    }

    /// Lowercase hex of bytes.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Receives spans as they finish. Must not block: queue and return.
public protocol SpanProcessor: Sendable {
    /// Called once per finished span, on the emitting task.
    func onEnd(_ span: TraceSpan)
}
