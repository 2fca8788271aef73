import Foundation

/// A task's outcome that could not be written yet (a full disk, a lock held
/// too long): kept by the engine and written again until it is, or reported by `close()`.
struct PendingOutcome: Sendable {
    let state: WorkflowState
    let step: StepRecord
    let parentUsage: Usage
    let nextAttemptAt: Timestamp?
    let trace: TaskTrace?
    var error: String
    /// Refused for good (`StateStoreError.superseded`): never written again.
    var superseded = false
    var attempts = 1
}

extension Executor {
    /// One execution of a task, launched or resumed: its `preRun` event, then
    /// its step. A hook that stops the run before the step becomes the outcome.
    /// Returns the outcome and the execution's wall-clock seconds, for `finishTask`.
    /// `task` is the row this execution will finish (its attempts decide
    /// whether a failure leaves a next attempt); `attempt` and `link` name the
    /// attempt in its trace.
    func executeTask(
        _ step: AnyStep, retry: RetryPolicy, input: StepValue, identity: EventIdentity, context: RunContext, budget: Quota?,
        task: WorkflowState, attempt: Int = 1, link: AttemptLink? = nil
    ) async -> (outcome: StepOutcome, durationSeconds: Double) {
        let started = ContinuousClock.now
        let outcome: StepOutcome
        let schedule = TaskLifecycle.RetrySchedule(settings.backgroundTasks)
        let retryScheduled: @Sendable (ErrorCategory) -> Bool = { category in
            var failed = task
            failed.status = .failed
            failed.errorCategory = category
            return TaskLifecycle.nextAttempt(for: failed, schedule: schedule, at: .now) != nil
        }
        do {
            try await emit(identity, .preRun, .preRun(HookEvent.RunStart(
                inputSummary: summary(input.json) ?? "", initialBudget: budget, totalSteps: 1, span: identity.span, attempt: attempt, link: link)))
            outcome = await executeStep(
                step, retry: retry, input: input, identity: identity, stepIndex: 0, context: context,
                ledger: budget.map(QuotaLedger.init), budget: budget, retryScheduled: retryScheduled)
        } catch {
            outcome = StepOutcome(ending: hookEnding(error), context: context, attempts: 0, latencySeconds: 0, usage: Usage(), retries: [])
        }
        return (outcome, (ContinuousClock.now - started).seconds)
    }

    /// Persists a task's outcome as `TaskLifecycle.finished` records it, adds
    /// its usage to its parent, and emits its end events. Returns the outcome
    /// when it could not be written, for the caller to keep and write again.
    /// `trace` is the attempt's trace record, saved with the outcome.
    @discardableResult
    func finishTask(_ outcome: StepOutcome, task: WorkflowState, inputJSON: String, identity: EventIdentity, duration: Double, resumedFrom: RunStatus? = nil, trace: TaskTrace? = nil) async -> PendingOutcome? {
        var pending: PendingOutcome?
        let result = StepResult(
            name: task.stepName ?? "", outputJSON: outcome.output?.json, success: outcome.status == .completed,
            attempts: outcome.attempts, latencySeconds: outcome.latencySeconds, usage: outcome.usage, feedback: outcome.errorMessage)
        let state = TaskLifecycle.finished(
            task,
            outcome: TaskLifecycle.Outcome(
                status: outcome.status, errorMessage: outcome.errorMessage, errorCategory: outcome.errorCategory,
                outputJSON: outcome.output?.json, contextJSON: outcome.context.jsonText, usage: outcome.usage,
                durationSeconds: duration, inputJSON: inputJSON),
            resumedFrom: resumedFrom, stepHistoryJSON: "[" + result.jsonText + "]", at: .now)
        // The end events go out before the outcome is stored: whoever acts on the
        // stored outcome (a worker running the next attempt at once, in this
        // process) emits its events after these, so every sink sees this attempt end first.
        try? await emit(identity, .postRun, .postRun(HookEvent.RunEnd(
            status: outcome.status, durationSeconds: duration, usage: outcome.usage, stepsRun: 1,
            errorMessage: outcome.errorMessage, errorCategory: outcome.errorCategory, retryScheduled: outcome.retryScheduled,
            sinceLaunchSeconds: max(0, (Double(state.updatedAt.millisecondsSince1970) - Double(task.createdAt.millisecondsSince1970)) / 1000),
            span: identity.span, attempt: state.attempts)))
        if identity.isBackground {
            try? await emit(identity, .taskFinished, .taskFinished(HookEvent.TaskEnd(
                taskID: state.taskID ?? "", taskRunID: state.runID, stepName: state.stepName ?? "", status: outcome.status,
                errorMessage: outcome.errorMessage, errorCategory: outcome.errorCategory, usage: outcome.usage, durationSeconds: duration)))
        }
        if settings.backgroundTasks.enableStateTracking || resumedFrom != nil {
            let step = StepRecord(
                runID: state.runID, stepIndex: 0, stepName: result.name, success: result.success, outputJSON: result.outputJSON,
                attempts: result.attempts, latencySeconds: result.latencySeconds, costUSD: result.usage.costUSD,
                tokens: result.usage.tokens, feedback: result.feedback, finishedAt: state.updatedAt)
            let next = TaskLifecycle.nextAttempt(for: state, schedule: TaskLifecycle.RetrySchedule(settings.backgroundTasks), at: state.updatedAt)
            do {
                try await store.save([StateWrite(state, step: step, parentUsage: outcome.usage, nextAttemptAt: next, trace: trace)])
                noteOutcomeWritten()
            } catch {
                // Refused for good when another process took the task over: it is not written again.
                let superseded = (error as? StateStoreError)?.isSuperseded ?? false
                if !superseded { outcomes.refused.add(1, ordering: .relaxed) }
                if superseded {
                    logger.error("\(error)")
                } else if let report = outcomes.streak.failure() {
                    let taskID = state.taskID ?? state.runID
                    let tail = report.tail(
                        first: ". It is kept and written again with backoff until close(); while outcomes keep failing, at most one line every \(outcomes.streak.interval), and one when they are written again",
                        unreported: "outcome(s) not written")
                    logger.warning("could not persist the outcome of task \(taskID) yet: \(error)\(tail)")
                }
                pending = PendingOutcome(
                    state: state, step: step, parentUsage: outcome.usage, nextAttemptAt: next, trace: trace, error: "\(error)", superseded: superseded)
            }
        }
        return pending
    }

    /// Ends a streak of outcomes the store refused, with one line.
    func noteOutcomeWritten() {
        guard let ended = outcomes.streak.success() else { return }
        logger.notice("task outcomes are written again, after \(ended.failures) refused write(s) (\(ended.unreported) of them not logged)")
    }

    /// Persists a task still running when its engine closed as `cancelled`.
    /// Returns the store's error when it could not; the caller logs it.
    func markCancelledAtShutdown(runID: String) async -> (any Error)? {
        do {
            guard let state = try await store.load(runID: runID),
                  let cancelled = TaskLifecycle.cancelledAtShutdown(state, at: .now) else { return nil }
            try await store.save(cancelled)
            return nil
        } catch {
            return error
        }
    }
}
