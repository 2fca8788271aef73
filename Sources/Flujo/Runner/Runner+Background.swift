import Foundation

extension Runner {
    struct Launch {
        let taskID: String
        let result: StepResult
        /// The task's `running` row, saved with the parent's step in one transaction.
        let taskState: WorkflowState?
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

        let now = Timestamp.now
        var state = WorkflowState(
            runID: taskRunID, pipelineName: parent.pipelineName, pipelineVersion: parent.pipelineVersion,
            contextJSON: context.jsonText, status: .running, createdAt: now, totalSteps: 1,
            metadataJSON: TaskMetadata.json(taskID: taskID, parentRunID: parent.runID, stepName: item.step.name, inputJSON: input.json, errorCategory: nil),
            isBackgroundTask: true, parentRunID: parent.runID, taskID: taskID, attempts: 1, leaseOwner: owner, stepName: item.step.name)
        let identity = EventIdentity(runID: taskRunID, parentRunID: parent.runID, taskID: taskID, pipelineName: parent.pipelineName, pipelineVersion: parent.pipelineVersion, isBackground: true)

        let notice = quotaRefused
            ? "Not launched: background quota exhausted (task_id=\(taskID))"
            : "Launched in background (task_id=\(taskID))"
        let result = StepResult(
            name: item.step.name, outputJSON: input.json, success: true, attempts: 1,
            latencySeconds: (ContinuousClock.now - started).seconds, usage: Usage(), feedback: notice)
        if quotaRefused {
            state.status = .failed
            state.errorMessage = "Background quota exhausted"
            state.backgroundError = state.errorMessage
            state.errorCategory = .resourceExhaustion
            state.metadataJSON = TaskMetadata.json(taskID: taskID, parentRunID: parent.runID, stepName: item.step.name, inputJSON: input.json, errorCategory: .resourceExhaustion)
        }
        let initial = state
        let runner = self
        let begin: @Sendable () async -> (any Error)? = {
            var failure: (any Error)?
            do {
                try await runner.emit(launchIdentity, .preStep, .preStep(HookEvent.StepStart(
                    stepName: item.step.name, stepIndex: stepIndex, mode: .background, inputSummary: summary(input.json) ?? "",
                    attemptNumber: 1, quotaBefore: quotaBefore)))
            } catch {
                failure = error
            }
            if quotaRefused {
                try? await runner.emit(launchIdentity, .taskLaunched, .taskLaunched(HookEvent.TaskLaunch(taskID: taskID, taskRunID: taskRunID, stepName: item.step.name, budget: nil)))
                try? await runner.emit(identity, .taskFinished, .taskFinished(HookEvent.TaskEnd(
                    taskID: taskID, taskRunID: taskRunID, stepName: item.step.name, status: .failed, errorMessage: initial.errorMessage,
                    errorCategory: .resourceExhaustion, usage: Usage(), durationSeconds: 0)))
            } else {
                let ledger = budget.map(QuotaLedger.init)
                runner.tracker.start(runID: taskRunID, taskID: taskID) {
                    await runner.executeBackground(item, input: input, state: initial, identity: identity, context: context, ledger: ledger, budget: budget, parentLedger: parentLedger)
                }
                runner.ensureMaintenance()
                do {
                    try await runner.emit(launchIdentity, .taskLaunched, .taskLaunched(HookEvent.TaskLaunch(taskID: taskID, taskRunID: taskRunID, stepName: item.step.name, budget: budget)))
                } catch {
                    failure = failure ?? error
                }
            }
            do {
                try await runner.emit(launchIdentity, .postStep, .postStep(HookEvent.StepEnd(
                    stepName: item.step.name, stepIndex: stepIndex, mode: .background, success: true, outputSummary: summary(input.json),
                    attempts: 1, latencySeconds: result.latencySeconds, usage: Usage(), feedback: notice, errorCategory: nil, retries: [])))
            } catch {
                failure = failure ?? error
            }
            return failure
        }
        return Launch(taskID: taskID, result: result, taskState: background.enableStateTracking ? state : nil, begin: begin)
    }

    /// The body of a background task: runs its step with its own events and persists the outcome.
    func executeBackground(
        _ item: PipelineStep, input: StepValue, state initial: WorkflowState, identity: EventIdentity, context: RunContext,
        ledger: QuotaLedger?, budget: Quota?, parentLedger: QuotaLedger?
    ) async {
        defer { tracker.remove(runID: identity.runID) }
        let started = ContinuousClock.now
        var outcome: StepOutcome
        do {
            try await emit(identity, .preRun, .preRun(HookEvent.RunStart(inputSummary: summary(input.json) ?? "", initialBudget: budget, totalSteps: 1)))
            outcome = await executeStep(item.step, retry: item.retry, input: input, identity: identity, stepIndex: 0, context: context, ledger: ledger, budget: budget)
        } catch {
            outcome = StepOutcome(ending: hookEnding(error), context: context, attempts: 0, latencySeconds: 0, usage: Usage(), retries: [])
        }
        if let budget { parentLedger?.giveBack(reserved: budget, used: outcome.usage) }
        await finishTask(outcome, state: initial, inputJSON: input.json, identity: identity, duration: (ContinuousClock.now - started).seconds)
    }

    /// Persists a task's outcome, adds its usage to its parent, and emits its end events.
    func finishTask(_ outcome: StepOutcome, state initial: WorkflowState, inputJSON: String, identity: EventIdentity, duration: Double, resumedFrom: RunStatus? = nil) async {
        var state = initial
        state.status = outcome.status
        state.updatedAt = .now
        state.errorMessage = outcome.errorMessage
        state.backgroundError = outcome.status == .completed ? nil : outcome.errorMessage
        state.errorCategory = outcome.errorCategory
        state.lastStepOutputJSON = outcome.output?.json
        state.contextJSON = outcome.context.jsonText
        state.costUSD += outcome.usage.costUSD
        state.tokens += outcome.usage.tokens
        state.executionTimeMs = duration * 1000
        state.currentStepIndex = outcome.status == .completed ? 1 : 0
        state.leaseOwner = nil
        state.leaseExpiresAt = nil
        if let resumedFrom { state.resumedFrom = resumedFrom.rawValue }
        if let taskID = state.taskID, let parentRunID = state.parentRunID, let stepName = state.stepName {
            state.metadataJSON = TaskMetadata.json(taskID: taskID, parentRunID: parentRunID, stepName: stepName, inputJSON: inputJSON, errorCategory: outcome.errorCategory)
        }
        let result = StepResult(
            name: state.stepName ?? "", outputJSON: outcome.output?.json, success: outcome.status == .completed,
            attempts: outcome.attempts, latencySeconds: outcome.latencySeconds, usage: outcome.usage, feedback: outcome.errorMessage)
        state.stepHistoryJSON = "[" + result.jsonText + "]"
        if settings.backgroundTasks.enableStateTracking || resumedFrom != nil {
            do {
                try await store.save(state, step: StepRecord(
                    runID: state.runID, stepIndex: 0, stepName: result.name, success: result.success, outputJSON: result.outputJSON,
                    attempts: result.attempts, latencySeconds: result.latencySeconds, costUSD: result.usage.costUSD,
                    tokens: result.usage.tokens, feedback: result.feedback, finishedAt: state.updatedAt),
                    parentUsage: outcome.usage)
            } catch {
                logger.error("could not persist the outcome of task \(state.taskID ?? state.runID): \(error)")
            }
        }
        try? await emit(identity, .postRun, .postRun(HookEvent.RunEnd(
            status: outcome.status, durationSeconds: duration, usage: outcome.usage, stepsRun: 1,
            errorMessage: outcome.errorMessage, errorCategory: outcome.errorCategory)))
        if identity.isBackground {
            try? await emit(identity, .taskFinished, .taskFinished(HookEvent.TaskEnd(
                taskID: state.taskID ?? "", taskRunID: state.runID, stepName: state.stepName ?? "", status: outcome.status,
                errorMessage: outcome.errorMessage, errorCategory: outcome.errorCategory, usage: outcome.usage, durationSeconds: duration)))
        }
    }

    // MARK: - Start, heartbeats, stale checks, close

    /// Runs the automatic stale cleanup once, when the runner is first used.
    func startIfNeeded() async throws {
        if tracker.isClosed { throw RunnerError.closed }
        guard tracker.markStarted() else { return }
        if settings.backgroundTasks.enableStateTracking {
            let count = try await cleanupStaleBackgroundTasks()
            if count > 0 { logger.notice("marked \(count) stale background task(s) failed at start") }
        }
        ensureMaintenance()
    }

    /// Starts the loop that heartbeats running tasks and looks for stale ones.
    func ensureMaintenance() {
        let heartbeat = settings.backgroundTasks.heartbeatIntervalSeconds
        let staleEvery = settings.backgroundTasks.staleCheckIntervalSeconds
        guard settings.backgroundTasks.enableStateTracking else { return }
        let runner = self
        tracker.startMaintenanceIfNeeded {
            Task {
                var sinceStaleCheck = 0.0
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(heartbeat))
                    if Task.isCancelled { break }
                    let running = runner.tracker.runningRunIDs
                    if !running.isEmpty {
                        do { try await runner.store.heartbeat(runIDs: running, at: .now) } catch {
                            runner.logger.warning("heartbeat failed: \(error)")
                        }
                    }
                    sinceStaleCheck += heartbeat
                    if staleEvery > 0 && sinceStaleCheck >= staleEvery {
                        sinceStaleCheck = 0
                        _ = try? await runner.cleanupStaleBackgroundTasks()
                    }
                }
            }
        }
    }

    /// Waits for background tasks up to `timeout` (default `shutdown_timeout_seconds`),
    /// cancels the rest and persists them `cancelled`, stops heartbeats and drains queued sinks.
    public func close(timeout: Duration? = nil) async {
        let limit = timeout ?? .seconds(settings.backgroundTasks.shutdownTimeoutSeconds)
        let deadline = ContinuousClock.now + limit
        while !tracker.isEmpty && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(2))
        }
        let stragglers = tracker.entries
        for entry in stragglers { entry.task.cancel() }
        // Give cancelled tasks a moment to persist themselves; force the rest.
        let grace = ContinuousClock.now + .milliseconds(500)
        while !tracker.isEmpty && ContinuousClock.now < grace {
            try? await Task.sleep(for: .milliseconds(2))
        }
        for entry in tracker.entries {
            await markCancelled(runID: entry.runID)
            tracker.remove(runID: entry.runID)
        }
        tracker.close()?.cancel()
        await hooks.drain()
        await spanPersister?.close()
    }

    private func markCancelled(runID: String) async {
        do {
            guard var state = try await store.load(runID: runID), state.status == .running else { return }
            state.status = .cancelled
            state.errorMessage = "Cancelled at shutdown before finishing"
            state.backgroundError = state.errorMessage
            state.errorCategory = .cancelled
            state.updatedAt = .now
            state.leaseOwner = nil
            try await store.save(state)
        } catch {
            logger.error("could not mark task run \(runID) cancelled: \(error)")
        }
    }
}
