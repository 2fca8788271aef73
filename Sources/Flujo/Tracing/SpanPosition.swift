import Synchronization
import W3CTraceContext

/// Where a span sits in its trace: its trace id, its own span id, its parent
/// and the trace's sampling decision.
///
/// The engine decides it before the span starts, so a step can hand its own
/// context to the calls it makes (`StepContext.span`), and a task can record
/// the context of its launch and continue that trace in any later attempt.
/// Fixed-size values: making one allocates nothing.
public struct SpanPosition: Sendable, Hashable {
    /// The trace the span belongs to.
    public var traceID: TraceID
    /// The span's own id.
    public var spanID: SpanID
    /// The parent span's id; nil for the root of a trace.
    public var parentSpanID: SpanID?
    /// Whether the trace is sampled (recorded and exported).
    public var sampled: Bool
    /// The W3C `tracestate` the trace carries, if any.
    public var traceState: TraceState

    /// Creates a position.
    public init(traceID: TraceID, spanID: SpanID, parentSpanID: SpanID? = nil, sampled: Bool = true, traceState: TraceState = TraceState()) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.sampled = sampled
        self.traceState = traceState
    }

    /// The root of a new trace, sampled or not by `sampler`; or, given a
    /// caller's context, a child of the caller's span in the caller's trace.
    public static func root(continuing caller: TraceContext? = nil, sampler: TraceSampler = .parentBasedAlwaysOn) -> SpanPosition {
        if let caller {
            return SpanPosition(
                traceID: caller.traceID, spanID: IDSource.spanID(), parentSpanID: caller.spanID,
                sampled: sampler.decide(traceID: caller.traceID, parentSampled: caller.flags.contains(.sampled)),
                traceState: caller.state)
        }
        let traceID = IDSource.traceID()
        return SpanPosition(traceID: traceID, spanID: IDSource.spanID(), sampled: sampler.decide(traceID: traceID, parentSampled: nil))
    }

    /// A new span below this one, in the same trace with the same decision.
    public func child() -> SpanPosition {
        SpanPosition(traceID: traceID, spanID: IDSource.spanID(), parentSpanID: spanID, sampled: sampled, traceState: traceState)
    }

    /// The span's W3C trace context, as a callee receives it.
    public var traceContext: TraceContext {
        TraceContext(traceID: traceID, spanID: spanID, flags: sampled ? .sampled : [], state: traceState)
    }

    /// The span's W3C `traceparent` header value.
    public var traceparent: String { traceContext.traceParentHeaderValue }

    /// The W3C `tracestate` header value, nil when empty.
    public var tracestate: String? { traceContext.traceStateHeaderValue }

    /// The trace id's 16 bytes.
    public var traceIDBytes: [UInt8] { withUnsafeBytes(of: traceID.bytes) { Array($0) } }
    /// The span id's 8 bytes.
    public var spanIDBytes: [UInt8] { withUnsafeBytes(of: spanID.bytes) { Array($0) } }
    /// The parent span id's 8 bytes, if any.
    public var parentSpanIDBytes: [UInt8]? { parentSpanID.map { id in withUnsafeBytes(of: id.bytes) { Array($0) } } }
}

/// A link from one attempt of a task to the attempt before it.
public struct AttemptLink: Sendable, Hashable {
    /// Why the new attempt runs.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// An operator or the API resumed the task.
        case resume
        /// A retry (`tasks retry`, or a worker taking a task whose backoff elapsed).
        case retry
        /// A worker took over a task whose process died.
        case recovery
    }

    /// Why the new attempt runs.
    public var kind: Kind
    /// The previous attempt's root span.
    public var previous: SpanPosition
    /// The previous attempt's number (1 for the launch's execution).
    public var previousAttempt: Int

    /// Creates a link.
    public init(kind: Kind, previous: SpanPosition, previousAttempt: Int) {
        self.kind = kind
        self.previous = previous
        self.previousAttempt = previousAttempt
    }
}

/// What a task keeps of its trace, so that every later attempt (a resume, a
/// retry, a recovery, in any process) continues the trace of its launch, and
/// so that recovery can end the span of an attempt whose process died.
///
/// Stored with the task as one line of text (`encoded`); baggage is never kept.
public struct TaskTrace: Sendable, Hashable {
    /// The launch step's span: every attempt's root is its child. Its own
    /// parent is not kept (nil).
    public var launch: SpanPosition
    /// The latest attempt's root span (`pipeline_run` of the task run).
    public var attempt: SpanPosition
    /// When the latest attempt started, nanoseconds since the epoch.
    public var attemptStartUnixNano: UInt64
    /// The latest attempt's number, 1 for the launch's execution.
    public var attemptNumber: Int

    /// Creates a record.
    public init(launch: SpanPosition, attempt: SpanPosition, attemptStartUnixNano: UInt64, attemptNumber: Int) {
        var launch = launch
        launch.parentSpanID = nil
        self.launch = launch
        self.attempt = attempt
        self.attemptStartUnixNano = attemptStartUnixNano
        self.attemptNumber = attemptNumber
    }

    /// The record of the next attempt: a new child of the launch span.
    public func nextAttempt(startingAt unixNano: UInt64, number: Int) -> TaskTrace {
        TaskTrace(launch: launch, attempt: launch.child(), attemptStartUnixNano: unixNano, attemptNumber: number)
    }

    /// `traceparent of the launch;attempt span id;start;attempt number;tracestate`.
    public var encoded: String {
        let state = launch.tracestate ?? ""
        return "\(launch.traceparent);\(attempt.spanID);\(attemptStartUnixNano);\(attemptNumber);\(state)"
    }

    /// Reads `encoded` text back; nil when it is not such a record.
    public init?(encoded text: String) {
        let fields = text.split(separator: ";", maxSplits: 4, omittingEmptySubsequences: false)
        guard fields.count == 5, let start = UInt64(fields[2]), let number = Int(fields[3]),
              let context = try? TraceContext(traceParentHeaderValue: String(fields[0]), traceStateHeaderValue: fields[4].isEmpty ? nil : String(fields[4])),
              let attemptSpan = SpanID(hex: fields[1])
        else { return nil }
        launch = SpanPosition(traceID: context.traceID, spanID: context.spanID, sampled: context.flags.contains(.sampled), traceState: context.state)
        attempt = SpanPosition(traceID: context.traceID, spanID: attemptSpan, parentSpanID: context.spanID, sampled: context.flags.contains(.sampled), traceState: context.state)
        attemptStartUnixNano = start
        attemptNumber = number
    }
}

extension SpanID {
    /// Reads 16 lowercase hex digits.
    init?(hex: Substring) {
        guard hex.utf8.count == 16, let value = UInt64(hex, radix: 16) else { return nil }
        let big = value.bigEndian
        self.init(bytes: withUnsafeBytes(of: big) { raw in
            (raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7])
        })
    }
}

/// Trace and span ids without a system call each: SplitMix64 over a counter
/// that starts at a random point of the process. SplitMix64 is a bijection,
/// so no id repeats within a process; its output is evenly spread, as
/// `traceidratio` sampling needs; and every process starts from its own
/// random seed. An id is never all zeros.
enum IDSource {
    private static let seed: UInt64 = {
        var generator = SystemRandomNumberGenerator()
        return generator.next()
    }()
    private static let counter = Atomic<UInt64>(0)

    private static func next() -> UInt64 {
        while true {
            let step = counter.add(1, ordering: .relaxed).newValue
            var z = seed &+ step &* 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            if z != 0 { return z }
        }
    }

    static func spanID() -> SpanID {
        let value = next().bigEndian
        return SpanID(bytes: withUnsafeBytes(of: value) { raw in (raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7]) })
    }

    static func traceID() -> TraceID {
        let high = next().bigEndian
        let low = next().bigEndian
        return TraceID(bytes: withUnsafeBytes(of: (high, low)) { raw in
            (raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7], raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15])
        })
    }
}
