import Foundation

extension Runner {
    struct Launch {
        let taskID: String
        let result: StepResult
        /// The task's `running` row, saved with the parent's step in one transaction.
        let taskState: WorkflowState?
        /// The task's trace record, saved with its row.
        let trace: TaskTrace
        /// Emits the launch step's start, starts the task, and emits `taskLaunched`
        /// and the step's end; call after saving. Returns a hook's failure.
        let begin: @Sendable () async -> (any Error)?
    }

    /// Prepares a background launch: reserves its budget and builds the task's
    /// `running` row. The caller saves that row together with its own step,
    /// then calls `begin`, which emits the launch step's events, starts the
    /// task and returns at once. No event is emitted before the row is saved.
    func launchBackground(
        _ item: PipelineStep, input: StepValue, parent: EventIdentity, stepIndex: Int, context: RunContext, parentLedger: QuotaLedger?
    ) async throws -> Launch {
        let started = ContinuousClock.now
        let taskID = Identifiers.newTaskID()
        let taskRunID = Identifiers.taskRunID(parentRunID: parent.runID, taskID: taskID)
        let launchIdentity = parent.with(isBackground: true)
        let quotaBefore = parentLedger?.current

        let background = settings.backgroundTasks
        var reserved: Quota?
        if background.enableQuota {
            let limit = Quota(costUSD: background.maxCostPerTask, tokens: background.maxTokensPerTask)
            if let parentLedger {
                reserved = parentLedger.reserve(upTo: limit)
            } else {
                reserved = limit.isExhausted ? nil : limit
            }
        }
        let budget = reserved
        let quotaRefused = background.enableQuota && budget == nil

        var state = TaskLifecycle.launched(
            taskID: taskID, parentRunID: parent.runID, pipelineName: parent.pipelineName, pipelineVersion: parent.pipelineVersion,
            stepName: item.step.name, inputJSON: input.json, contextJSON: context.jsonText, at: .now)
        // The launch step's span, and the task's first attempt below it: the task
        // keeps both, so any later attempt, in any process, continues this trace.
        let launchSpan = parent.span.child()
        let trace = TaskTrace(launch: launchSpan, attempt: launchSpan.child(), attemptStartUnixNano: Identifiers.nowUnixNano(), attemptNumber: 1)
        let identity = EventIdentity(
            runID: taskRunID, parentRunID: parent.runID, taskID: taskID, pipelineName: parent.pipelineName,
            pipelineVersion: parent.pipelineVersion, isBackground: true, span: trace.attempt, instrumented: parent.instrumented)

        let notice = quotaRefused
            ? "Not launched: background quota exhausted (task_id=\(taskID))"
            : "Launched in background (task_id=\(taskID))"
        let result = StepResult(
            name: item.step.name, outputJSON: input.json, success: true, attempts: 1,
            latencySeconds: (ContinuousClock.now - started).seconds, usage: Usage(), feedback: notice)
        if quotaRefused { state = TaskLifecycle.refusedForQuota(state) }
        let initial = state
        let runner = self
        let begin: @Sendable () async -> (any Error)? = {
            var failure: (any Error)?
            do {
                try await runner.executor.emit(launchIdentity, .preStep, .preStep(HookEvent.StepStart(
                    stepName: item.step.name, stepIndex: stepIndex, mode: .background, inputSummary: summary(input.json) ?? "",
                    attemptNumber: 1, quotaBefore: quotaBefore, span: launchSpan)))
            } catch {
                failure = error
            }
            if quotaRefused {
                try? await runner.executor.emit(launchIdentity, .taskLaunched, .taskLaunched(HookEvent.TaskLaunch(taskID: taskID, taskRunID: taskRunID, stepName: item.step.name, budget: nil)))
                try? await runner.executor.emit(identity, .taskFinished, .taskFinished(HookEvent.TaskEnd(
                    taskID: taskID, taskRunID: taskRunID, stepName: item.step.name, status: .failed, errorMessage: initial.errorMessage,
                    errorCategory: .resourceExhaustion, usage: Usage(), durationSeconds: 0)))
            } else {
                // `taskLaunched` first, then the task: every event of the execution comes after it,
                // so a span can always find its launch. A hook's failure does not stop the task:
                // its row is committed `running`.
                do {
                    try await runner.executor.emit(launchIdentity, .taskLaunched, .taskLaunched(HookEvent.TaskLaunch(taskID: taskID, taskRunID: taskRunID, stepName: item.step.name, budget: budget)))
                } catch {
                    failure = failure ?? error
                }
                runner.tracker.start(runID: taskRunID, taskID: taskID) {
                    await runner.executeBackground(item, input: input, state: initial, identity: identity, context: context, budget: budget, parentLedger: parentLedger)
                }
            }
            do {
                try await runner.executor.emit(launchIdentity, .postStep, .postStep(HookEvent.StepEnd(
                    stepName: item.step.name, stepIndex: stepIndex, mode: .background, success: true, outputSummary: summary(input.json),
                    attempts: 1, latencySeconds: result.latencySeconds, usage: Usage(), feedback: notice, errorCategory: nil, retries: [])))
            } catch {
                failure = failure ?? error
            }
            return failure
        }
        return Launch(taskID: taskID, result: result, taskState: background.enableStateTracking ? state : nil, trace: trace, begin: begin)
    }

    /// The body of a background task: runs its step with its own events and persists the outcome.
    func executeBackground(
        _ item: PipelineStep, input: StepValue, state initial: WorkflowState, identity: EventIdentity, context: RunContext,
        budget: Quota?, parentLedger: QuotaLedger?
    ) async {
        defer { tracker.remove(runID: identity.runID) }
        let (outcome, duration) = await executor.executeTask(
            item.step, retry: item.retry, input: input, identity: identity, context: context, budget: budget, task: initial)
        if let budget { parentLedger?.giveBack(reserved: budget, used: outcome.usage) }
        if let pending = await executor.finishTask(outcome, task: initial, inputJSON: input.json, identity: identity, duration: duration) {
            keep(pending)
        }
    }

    /// Keeps an outcome that could not be written and writes it again, with
    /// backoff, until it is written or `close()` reports it. Meanwhile the task's
    /// row stays `running` under this process's owner: if the process ends
    /// first, recovery fails it as a lost worker, resumable.
    func keep(_ pending: PendingOutcome) {
        // A refused outcome was logged where it was refused; another attempt decides the task.
        guard !pending.superseded else { return }
        _ = tracker.addPending(pending)
        let runner = self
        tracker.startPendingWriter {
            Task {
                var delay = Duration.milliseconds(50)
                while true {
                    await runner.writePending()
                    if runner.tracker.finishPendingWriter() || runner.tracker.isClosed { return }
                    try? await Task.sleep(for: delay)
                    delay = min(delay * 2, .seconds(5))
                }
            }
        }
    }

    /// Tries once to write every kept outcome.
    func writePending() async {
        for pending in tracker.pendingOutcomes {
            do {
                try await store.save([StateWrite(pending.state, step: pending.step, parentUsage: pending.parentUsage, nextAttemptAt: pending.nextAttemptAt, trace: pending.trace)])
                tracker.removePending(runID: pending.state.runID)
                executor.noteOutcomeWritten()
            } catch let error as StateStoreError where error.isSuperseded {
                tracker.removePending(runID: pending.state.runID)
                logger.error("\(error)")
            } catch {
                tracker.notePendingFailure(runID: pending.state.runID, error: "\(error)")
            }
        }
    }
}
