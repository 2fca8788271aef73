import Synchronization
import W3CTraceContext

/// What a running step can see and do: its identity, the run context, usage
/// reporting, pause and abort.
public final class StepContext: Sendable {
    /// The run (or background task run) executing the step.
    public let runID: String
    /// The step's registered name.
    public let stepName: String
    /// 1 for the first attempt.
    public let attempt: Int
    /// Whether the step runs as a background task.
    public let isBackground: Bool
    /// The background task id, when any.
    public let taskID: String?
    /// The step's own span. Put `span.traceparent` (and `span.tracestate`) on
    /// an outgoing call so the callee joins the trace below this step. With
    /// an instrument installed through swift-distributed-tracing,
    /// `ServiceContext.current` carries this span while the step runs, so
    /// instrumented clients do this on their own.
    public let span: SpanPosition

    private let mutable: Mutex<(context: RunContext, usage: Usage)>
    private let ledger: QuotaLedger?
    private let budget: Quota?

    init(runID: String, stepName: String, attempt: Int, isBackground: Bool, taskID: String?, span: SpanPosition, context: RunContext, ledger: QuotaLedger?, budget: Quota?) {
        self.span = span
        self.runID = runID
        self.stepName = stepName
        self.attempt = attempt
        self.isBackground = isBackground
        self.taskID = taskID
        self.mutable = Mutex((context, Usage()))
        self.ledger = ledger
        self.budget = budget
    }

    /// The step span's W3C trace context (trace id, span id, sampling decision, `tracestate`).
    public var traceContext: TraceContext { span.traceContext }

    /// The run context as it is now.
    public var context: RunContext { mutable.withLock { $0.context } }

    /// Changes the run context (a background task changes only its own copy).
    public func updateContext(_ change: (inout RunContext) -> Void) {
        mutable.withLock { change(&$0.context) }
    }

    /// Usage reported so far by this attempt.
    public var usage: Usage { mutable.withLock { $0.usage } }

    /// Reports cost and tokens. Throws `QuotaExceededError` when this takes the
    /// run (or the background task) past its budget, and `InvalidUsageError`
    /// for a negative or non-finite amount.
    public func reportUsage(costUSD: Double = 0, tokens: Int = 0) throws {
        guard costUSD.isFinite, costUSD >= 0, tokens >= 0 else { throw InvalidUsageError(costUSD: costUSD, tokens: tokens) }
        let added = Usage(costUSD: costUSD, tokens: tokens)
        let total = mutable.withLock { state -> Usage in
            state.usage = state.usage + added
            return state.usage
        }
        if let ledger, !ledger.consume(added) {
            throw QuotaExceededError(budget: budget ?? ledger.current, used: total)
        }
    }

    /// Stops the run (or task) as `paused` with a message; it can be resumed.
    public func pause(_ message: String) throws -> Never {
        throw PausedSignal(message)
    }

    /// Stops the pipeline gracefully as `failed`, category control_flow.
    public func abort(_ reason: String) throws -> Never {
        throw PipelineAbortSignal(reason)
    }
}
