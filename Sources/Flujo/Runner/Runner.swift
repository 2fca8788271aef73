import Foundation
import Logging
import Synchronization
import W3CTraceContext

/// The engine: runs pipelines and launches their background tasks.
///
/// Listing, showing, resuming, retrying and cleaning up tasks is the job of
/// `TaskOperations` (`runner.tasks` shares this runner's store, steps and bus).
/// Creating a runner changes nothing: it registers no sink on the bus it is
/// given (wire spans with `SpanPipeline`) and writes nothing until a pipeline
/// runs. Heartbeats and the periodic stale cleanup start only when asked, with
/// `startMaintenance()`.
///
/// Call `close()` when done: it waits for background tasks (up to
/// `shutdown_timeout_seconds`), cancels and persists the rest as `cancelled`,
/// stops maintenance and drains queued sinks.
public final class Runner: Sendable {
    /// Where runs and tasks are persisted.
    public let store: any StateStore
    /// The effective settings.
    public let settings: FlujoSettings
    /// Steps this process can run and resume by name.
    public let registry: StepRegistry
    /// The hook bus events go to.
    public let hooks: HookBus
    /// Maps step errors to categories.
    public let classifier: any ErrorClassifier
    /// This runner's identity as the owner of its resume claims.
    public let owner: String
    let logger: Logger
    let tracker = BackgroundTracker()
    let executor: Executor

    /// Creates a runner; nothing is written and no sink is registered.
    public init(
        store: any StateStore, settings: FlujoSettings = FlujoSettings(), registry: StepRegistry = StepRegistry(),
        hooks: HookBus = HookBus(), classifier: any ErrorClassifier = DefaultErrorClassifier(),
        logger: Logger = Logger(label: "flujo.runner")
    ) {
        self.store = store
        self.settings = settings
        self.registry = registry
        self.hooks = hooks
        self.classifier = classifier
        self.owner = Identifiers.processOwner + ":" + Identifiers.randomHex(bytes: 3)
        self.logger = logger
        executor = Executor(
            store: store, settings: settings, hooks: hooks, classifier: classifier, logger: logger, outcomes: OutcomeStats(tracker: tracker))
        hooks.attachCounters(executor.outcomes)
    }

    /// The task operations over this runner's store, with its steps, bus and owner.
    public var tasks: TaskOperations {
        TaskOperations(executor: executor, registry: registry, owner: owner)
    }

    /// Runs a pipeline to its end (or to a pause, failure or abort) and returns
    /// the result. Background steps are launched and left running. Throws only
    /// when the state store fails, when the runner is closed, or when `runID`
    /// names a run the store keeps already (`RunnerError.runExists`: a run's
    /// record is never overwritten by another; two runs started at the same
    /// moment with one new id are not told apart).
    /// - Parameter runID: the run's id; nil (the default) makes a new one.
    /// - Parameter trace: the caller's W3C trace context (a `traceparent`,
    ///   parsed): the run's spans join that trace, its root a child of the
    ///   caller's span. Without it, the application's current `ServiceContext`
    ///   is asked, through the instrument it installed with
    ///   swift-distributed-tracing (unless `OTEL_PROPAGATORS=none`); with
    ///   neither, the run starts a trace of its own.
    public func run<Input: Encodable & Sendable>(
        _ pipeline: Pipeline, input: Input, context: RunContext = RunContext(), quota: Quota? = nil, runID: String? = nil,
        trace: TraceContext? = nil
    ) async throws -> PipelineResult {
        if tracker.isClosing { throw RunnerError.closed }
        if let runID, let existing = try await store.load(runID: runID) {
            throw RunnerError.runExists(runID: runID, status: existing.status)
        }
        registry.registerMissing(of: pipeline)
        let runID = runID ?? Identifiers.newRunID()
        // The caller's span: the one given, else the application's current one (through its instrument).
        let caller = trace ?? (settings.telemetry.propagatesTraceContext ? ServiceContextBridge.callerTrace() : nil)
        let identity = EventIdentity(
            runID: runID, parentRunID: nil, taskID: nil, pipelineName: pipeline.name, pipelineVersion: pipeline.version, isBackground: false,
            span: .root(continuing: caller, sampler: settings.telemetry.sampler),
            instrumented: settings.telemetry.propagatesTraceContext && ServiceContextBridge.isInstrumented)
        let ledger = quota.map(QuotaLedger.init)
        let startedAt = Timestamp.now
        let started = ContinuousClock.now
        var value = try StepValue(input)
        var context = context
        var history: [StepResult] = []
        var usage = Usage()
        var taskIDs: [String] = []
        var status = RunStatus.running
        var errorMessage: String?
        var errorCategory: ErrorCategory?

        var state = WorkflowState(
            runID: runID, pipelineName: pipeline.name, pipelineVersion: pipeline.version,
            contextJSON: context.jsonText, status: .running, createdAt: startedAt, totalSteps: pipeline.steps.count, attempts: 1)
        try await store.save(state)

        do {
            try await executor.emit(identity, .preRun, .preRun(HookEvent.RunStart(
                inputSummary: summary(value.json) ?? "", initialBudget: quota, totalSteps: pipeline.steps.count, span: identity.span)))
        } catch {
            (status, errorMessage, errorCategory) = Self.stopped(by: executor.hookEnding(error))
        }

        /// Records a finished step in the run's state and returns its log entry.
        func advance(past result: StepResult, at stepIndex: Int) -> StepRecord {
            history.append(result)
            state.currentStepIndex = stepIndex + 1
            state.lastStepOutputJSON = value.json
            state.contextJSON = context.jsonText
            state.updatedAt = .now
            state.costUSD = usage.costUSD
            state.tokens = usage.tokens
            if status != .running {
                state.stepHistoryJSON = Self.historyJSON(history)
                state.status = status
                state.errorMessage = errorMessage
                state.errorCategory = errorCategory
                state.executionTimeMs = (ContinuousClock.now - started).seconds * 1000
            }
            return StepRecord(
                runID: runID, stepIndex: stepIndex, stepName: result.name, success: result.success, outputJSON: result.outputJSON,
                attempts: result.attempts, latencySeconds: result.latencySeconds, costUSD: result.usage.costUSD,
                tokens: result.usage.tokens, feedback: result.feedback, finishedAt: state.updatedAt)
        }

        var index = 0
        while status == .running && index < pipeline.steps.count {
            let item = pipeline.steps[index]
            switch item.mode {
            case .sync:
                let ran = await executor.executeStep(item.step, retry: item.retry, input: value, identity: identity, stepIndex: index, context: context, ledger: ledger, budget: quota)
                let result = StepResult(
                    name: item.step.name, outputJSON: ran.output?.json, success: ran.status == .completed,
                    attempts: ran.attempts, latencySeconds: ran.latencySeconds, usage: ran.usage, feedback: ran.errorMessage)
                usage = usage + ran.usage
                context = ran.context
                if let output = ran.output { value = output }
                if ran.status != .completed {
                    // paused, cancelled (the caller's task was cancelled) or failed, as the step ended.
                    status = ran.status
                    errorMessage = ran.errorMessage
                    errorCategory = ran.errorCategory
                } else if let failure = ran.hookFailure {
                    (status, errorMessage, errorCategory) = Self.stopped(by: executor.hookEnding(failure))
                }
                let record = advance(past: result, at: index)
                try await Self.saveEvenIfCancelled(state, step: record, to: store)
                index += 1
            case .background:
                // After `close()`, nothing would wait for a task or save it cancelled: a run
                // still under way launches none, and ends cancelled, saying why.
                if tracker.isClosed {
                    (status, errorMessage, errorCategory) = (.cancelled, "the runner was closed before this run launched its background step '\(item.step.name)'", .cancelled)
                    continue
                }
                // Consecutive background steps launch as a group: every task's `running`
                // row and the parent's step records commit in one transaction, before
                // any of the tasks starts and before any of their events.
                var launches: [Launch] = []
                var writes: [StateWrite] = []
                while index < pipeline.steps.count && pipeline.steps[index].mode == .background && launches.count < Self.launchGroupLimit {
                    let launch = try await launchBackground(pipeline.steps[index], input: value, parent: identity, stepIndex: index, context: context, parentLedger: ledger)
                    launches.append(launch)
                    taskIDs.append(launch.taskID)
                    if let taskState = launch.taskState { writes.append(StateWrite(taskState, trace: launch.trace)) }
                    let record = advance(past: launch.result, at: index)
                    writes.append(StateWrite(state, step: record))
                    index += 1
                }
                try await store.save(writes)
                // Each launch's events in turn; every launch of the group is persisted,
                // so each one starts even when a hook stops the run on an earlier one.
                var stop: (any Error)?
                for launch in launches {
                    if let failure = await launch.begin(), stop == nil { stop = failure }
                }
                // The run's row is still `running`; the end of the run records the stop.
                if let stop { (status, errorMessage, errorCategory) = Self.stopped(by: executor.hookEnding(stop)) }
            }
        }

        let duration = (ContinuousClock.now - started).seconds
        if status == .running || state.status == .running {
            if status == .running { status = .completed }
            state.stepHistoryJSON = Self.historyJSON(history)
            state.status = status
            state.errorMessage = errorMessage
            state.errorCategory = errorCategory
            state.updatedAt = .now
            state.executionTimeMs = duration * 1000
            state.memoryUsageMB = ProcessMemory.residentMB()
            try await Self.saveEvenIfCancelled(state, step: nil, to: store)
        }
        let result = PipelineResult(
            runID: runID, status: status, outputJSON: value.json, steps: history, context: context, usage: usage,
            errorMessage: errorMessage, errorCategory: errorCategory, backgroundTaskIDs: taskIDs, durationSeconds: duration)
        try? await executor.emit(identity, .postRun, .postRun(HookEvent.RunEnd(
            status: status, durationSeconds: duration, usage: usage, stepsRun: history.count,
            errorMessage: errorMessage, errorCategory: errorCategory, span: identity.span)))
        return result
    }

    /// Saves a run's progress or end even when the task calling `run` has been
    /// cancelled (a store may stop a call of a cancelled task before it is sent,
    /// as PostgreSQL's does): the write runs in a task of its own, which does not
    /// inherit the cancellation, so a cancelled run is kept `cancelled`, not
    /// left `running`.
    static func saveEvenIfCancelled(_ state: WorkflowState, step: StepRecord?, to store: any StateStore) async throws {
        guard Task.isCancelled else { return try await store.save(state, step: step) }
        try await Task { try await store.save(state, step: step) }.value
    }

    /// The most background steps launched by one transaction.
    static let launchGroupLimit = 256

    /// The step history as the JSON array kept in `step_history`.
    static func historyJSON(_ history: [StepResult]) -> String {
        "[" + history.map(\.jsonText).joined(separator: ",") + "]"
    }

    /// The run status, message and category a stop by a hook or step leads to.
    static func stopped(by ending: StepOutcome.Ending) -> (RunStatus, String?, ErrorCategory?) {
        switch ending {
        case let .aborted(reason): return (.failed, "Pipeline aborted: \(reason)", .controlFlow)
        case let .failure(classification): return (.failed, classification.message, classification.category)
        case let .paused(message): return (.paused, message, .controlFlow)
        case .success: return (.running, nil, nil)
        }
    }
}

/// Resident memory of this process.
enum ProcessMemory {
    static func residentMB() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Double(fields[1]) else { return nil }
        return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
    }
}
