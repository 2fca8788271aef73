import Synchronization
import Logging

/// Who events are about: shared by every event of one execution.
struct EventIdentity: Sendable {
    let runID: String
    let parentRunID: String?
    let taskID: String?
    let pipelineName: String
    let pipelineVersion: String
    let isBackground: Bool
    /// The execution's root span (`pipeline_run`); its steps' spans are children.
    let span: SpanPosition
    /// Steps run with their span in `ServiceContext.current`: propagation is on
    /// and the application installed an instrument (looked up once per execution).
    var instrumented = false

    func with(isBackground flag: Bool) -> EventIdentity {
        EventIdentity(
            runID: runID, parentRunID: parentRunID, taskID: taskID, pipelineName: pipelineName, pipelineVersion: pipelineVersion,
            isBackground: flag, span: span, instrumented: instrumented)
    }
}

/// How one step execution (all its attempts) ended.
struct StepOutcome: Sendable {
    enum Ending: Sendable {
        case success(StepValue)
        case failure(ErrorClassification)
        case paused(String)
        case aborted(String)
    }

    var ending: Ending
    var context: RunContext
    var attempts: Int
    var latencySeconds: Double
    var usage: Usage
    var retries: [HookEvent.RetryNote]
    /// An abort signal or strict-sink error raised while emitting this step's end event.
    var hookFailure: (any Error)?
    /// A failed task's next attempt is scheduled: this failure is not the final one.
    var retryScheduled = false

    var status: RunStatus {
        switch ending {
        case .success: return .completed
        case .paused: return .paused
        case let .failure(classification): return classification.category == .cancelled ? .cancelled : .failed
        case .aborted: return .failed
        }
    }

    var errorMessage: String? {
        switch ending {
        case .success: return nil
        case let .failure(classification): return classification.message
        case let .paused(message): return message
        case let .aborted(reason): return "Pipeline aborted: \(reason)"
        }
    }

    var errorCategory: ErrorCategory? {
        switch ending {
        case .success: return nil
        case let .failure(classification): return classification.category
        case .paused, .aborted: return .controlFlow
        }
    }

    var output: StepValue? {
        if case let .success(value) = ending { return value }
        return nil
    }
}

/// Output and input summaries in events are cut to this many characters.
let summaryLimit = 256

func summary(_ json: String?) -> String? {
    guard let json else { return nil }
    return json.count <= summaryLimit ? json : String(json.prefix(summaryLimit)) + "…"
}

/// What executing a step needs, shared by the engine (`Runner`) and the task
/// operations (`TaskOperations`): the bus its events go to, the classifier of
/// its errors, and the store its outcome is saved in.
struct Executor: Sendable {
    let store: any StateStore
    let settings: FlujoSettings
    let hooks: HookBus
    let classifier: any ErrorClassifier
    let logger: Logger
    /// Outcomes the store refused, counted and logged as a streak, and the ones kept unwritten now.
    let outcomes: OutcomeStats
}

/// What a metrics endpoint shows of task outcomes the store refused:
/// `flujo_task_outcomes_refused_total` and `flujo_task_outcomes_unwritten`.
final class OutcomeStats: CounterSource {
    let refused = Atomic<Int>(0)
    /// Refused outcomes are logged as a streak (a full disk), not one line per task.
    let streak = LogStreak()
    /// The outcomes kept unwritten now; nil for task operations, which keep none.
    private let tracker: BackgroundTracker?

    init(tracker: BackgroundTracker?) {
        self.tracker = tracker
    }

    func counterSamples() -> [CounterSample] {
        [
            CounterSample(
                name: "flujo_task_outcomes_refused_total",
                help: "Task outcomes the state store refused when first written (a full disk, a lock held too long); each is kept and written again.",
                value: Double(refused.load(ordering: .relaxed))),
            CounterSample(
                name: "flujo_task_outcomes_unwritten",
                help: "Task outcomes kept in memory, not written yet: the store refuses them. If the process ends first, its tasks are recovered as lost workers.",
                value: Double(tracker?.pendingCount ?? 0), kind: .gauge),
        ]
    }
}

extension Executor {
    /// Runs a step with its retry policy and emits its start and end events.
    /// `retryScheduled` tells, for a task, whether a failure of a category
    /// leaves a next attempt scheduled (so the failure is not the final one).
    func executeStep(
        _ step: AnyStep, retry: RetryPolicy, input: StepValue, identity: EventIdentity, stepIndex: Int,
        context: RunContext, ledger: QuotaLedger?, budget: Quota?, retryScheduled: (@Sendable (ErrorCategory) -> Bool)? = nil
    ) async -> StepOutcome {
        let started = ContinuousClock.now
        let span = identity.span.child()
        var usage = Usage()
        var retries: [HookEvent.RetryNote] = []
        var attempt = 1
        var ending: StepOutcome.Ending
        var finalContext = context
        do {
            try await emit(identity, .preStep, .preStep(HookEvent.StepStart(
                stepName: step.name, stepIndex: stepIndex, mode: .sync, inputSummary: summary(input.json) ?? "",
                attemptNumber: 1, quotaBefore: ledger?.current, span: span)))
        } catch {
            ending = hookEnding(error)
            return await finishStep(step, stepIndex: stepIndex, identity: identity, started: started, ending: ending, context: context, attempts: 0, usage: usage, retries: retries, retryScheduled: retryScheduled, span: span)
        }
        while true {
            let stepContext = StepContext(
                runID: identity.runID, stepName: step.name, attempt: attempt, isBackground: identity.isBackground,
                taskID: identity.taskID, span: span, context: context, ledger: ledger, budget: budget)
            do {
                let output = identity.instrumented
                    ? try await ServiceContextBridge.withSpan(span) { try await step.execute(input, stepContext) }
                    : try await step.execute(input, stepContext)
                usage = usage + stepContext.usage
                finalContext = stepContext.context
                ending = .success(output)
                break
            } catch let pause as PausedSignal {
                usage = usage + stepContext.usage
                finalContext = stepContext.context
                ending = .paused(pause.message)
                break
            } catch let abort as PipelineAbortSignal {
                usage = usage + stepContext.usage
                ending = .aborted(abort.reason)
                break
            } catch {
                usage = usage + stepContext.usage
                let classification = Task.isCancelled && !(error is CancellationError)
                    ? ErrorClassification(category: .cancelled, isRetryable: false, message: "cancelled: \(error)")
                    : classifier.classify(error)
                if attempt < retry.maxAttempts && classification.isRetryable && !Task.isCancelled {
                    retries.append(HookEvent.RetryNote(attempt: attempt, unixNano: Identifiers.nowUnixNano(), message: classification.message, category: classification.category))
                    try? await Task.sleep(for: retry.delay(afterAttempt: attempt))
                    attempt += 1
                    continue
                }
                ending = .failure(classification)
                break
            }
        }
        return await finishStep(step, stepIndex: stepIndex, identity: identity, started: started, ending: ending, context: finalContext, attempts: attempt, usage: usage, retries: retries, retryScheduled: retryScheduled, span: span)
    }

    /// The ending a hook failure causes: an abort signal aborts, a strict sink's error fails.
    func hookEnding(_ error: any Error) -> StepOutcome.Ending {
        if let abort = error as? PipelineAbortSignal { return .aborted(abort.reason) }
        return .failure(classifier.classify(error))
    }

    private func finishStep(
        _ step: AnyStep, stepIndex: Int, identity: EventIdentity, started: ContinuousClock.Instant, ending: StepOutcome.Ending,
        context: RunContext, attempts attempt: Int, usage: Usage, retries: [HookEvent.RetryNote],
        retryScheduled: (@Sendable (ErrorCategory) -> Bool)?, span: SpanPosition
    ) async -> StepOutcome {
        var outcome = StepOutcome(
            ending: ending, context: context, attempts: attempt,
            latencySeconds: (ContinuousClock.now - started).seconds, usage: usage, retries: retries)
        var scheduled = false
        if outcome.status == .failed, let category = outcome.errorCategory, let retryScheduled { scheduled = retryScheduled(category) }
        outcome.retryScheduled = scheduled
        let end = HookEvent.StepEnd(
            stepName: step.name, stepIndex: stepIndex, mode: .sync, success: outcome.status == .completed,
            outputSummary: summary(outcome.output?.json), attempts: attempt, latencySeconds: outcome.latencySeconds,
            usage: usage, feedback: outcome.errorMessage, errorCategory: outcome.errorCategory, retries: retries,
            retryScheduled: scheduled, span: span)
        do {
            switch outcome.ending {
            case .success: try await emit(identity, .postStep, .postStep(end))
            case .paused: try await emit(identity, .onPause, .onPause(end))
            case .failure, .aborted: try await emit(identity, .onStepFailure, .onStepFailure(end))
            }
        } catch {
            outcome.hookFailure = error
        }
        return outcome
    }

    /// Emits an event when some sink wants its kind; the payload is built only then.
    func emit(_ identity: EventIdentity, _ kind: HookEventKind, _ payload: @autoclosure () -> HookEvent.Payload) async throws {
        guard hooks.wants(kind) else { return }
        try await hooks.emit(HookEvent(
            runID: identity.runID, parentRunID: identity.parentRunID, taskID: identity.taskID,
            pipelineName: identity.pipelineName, pipelineVersion: identity.pipelineVersion,
            isBackground: identity.isBackground, unixNano: Identifiers.nowUnixNano(), payload: payload()))
    }
}

extension Duration {
    /// The duration in seconds as a Double.
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
