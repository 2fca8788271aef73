import Foundation

extension Runner {
    /// Failed background tasks updated in the last `hoursBack` hours, newest first.
    public func failedBackgroundTasks(parentRunID: String? = nil, hoursBack: Double = 24, limit: Int = 1000) async throws -> [BackgroundTask] {
        try await startIfNeeded()
        let since = Timestamp.now.adding(seconds: -hoursBack * 3600)
        return try await markResumes(try await store.listBackgroundTasks(BackgroundTaskQuery(parentRunID: parentRunID, statuses: [.failed], updatedSince: since, limit: limit)))
    }

    /// Background tasks matching a query, newest first.
    public func listBackgroundTasks(_ query: BackgroundTaskQuery = BackgroundTaskQuery()) async throws -> [BackgroundTask] {
        try await startIfNeeded()
        return try await markResumes(try await store.listBackgroundTasks(query))
    }

    /// The views of `states`, each marked when a resume of it is running.
    private func markResumes(_ states: [WorkflowState]) async throws -> [BackgroundTask] {
        var tasks = states.map(BackgroundTask.init)
        let claimed = try await store.claimedTaskIDs(among: tasks.map(\.taskID))
        if !claimed.isEmpty {
            for index in tasks.indices where claimed.contains(tasks[index].taskID) { tasks[index].isBeingResumed = true }
        }
        return tasks
    }

    /// Runs a failed, paused or cancelled task's step again in the foreground,
    /// with `newData` as its input or the persisted one, and persists the outcome.
    ///
    /// The task is claimed first: of concurrent resumers (in any process) only
    /// one runs it; the others get `RunnerError.alreadyBeingResumed`. The claim
    /// is held until the outcome is saved (or, if this process dies, until it
    /// ends); the stored status changes only with the outcome. The task keeps
    /// its id; attempts go up by one; the error text and category are replaced
    /// by the new outcome's.
    public func resumeBackgroundTask(taskID: String, newData: JSONValue? = nil) async throws -> TaskOutcome {
        try await startIfNeeded()
        guard settings.backgroundTasks.enableResumability else { throw RunnerError.resumabilityDisabled }
        let task: WorkflowState
        switch try await store.claimTask(taskID: taskID, owner: owner) {
        case let .claimed(state): task = state
        case .notFound: throw RunnerError.unknownTask(taskID, suggestions: try await suggestions(for: taskID))
        case let .notClaimable(status, owner):
            if status == .completed { throw RunnerError.notResumable(taskID: taskID, status: status) }
            throw RunnerError.alreadyBeingResumed(taskID: taskID, owner: owner)
        }
        // Held from here until the outcome is saved, whatever happens.
        defer { store.releaseClaim(taskID: taskID) }
        guard let stepName = task.stepName, let step = registry.step(named: stepName) else {
            throw RunnerError.stepNotRegistered(taskID: taskID, stepName: task.stepName ?? "(none)", registered: registry.names)
        }
        var claimed = task
        claimed.attempts += 1

        let inputJSON = newData?.jsonText ?? TaskMetadata.inputJSON(from: claimed.metadataJSON) ?? "null"
        var state = claimed
        if let newData, let parent = claimed.parentRunID {
            state.metadataJSON = TaskMetadata.json(taskID: taskID, parentRunID: parent, stepName: stepName, inputJSON: newData.jsonText, errorCategory: claimed.errorCategory)
        }
        let identity = EventIdentity(runID: claimed.runID, parentRunID: claimed.parentRunID, taskID: taskID, pipelineName: claimed.pipelineName, pipelineVersion: claimed.pipelineVersion, isBackground: false)
        let context = RunContext(json: claimed.contextJSON)
        let budget = settings.backgroundTasks.enableQuota
            ? Quota(costUSD: settings.backgroundTasks.maxCostPerTask, tokens: settings.backgroundTasks.maxTokensPerTask) : nil
        let started = ContinuousClock.now
        let outcome: StepOutcome
        do {
            try await emit(identity, .preRun, .preRun(HookEvent.RunStart(inputSummary: summary(inputJSON) ?? "", initialBudget: budget, totalSteps: 1)))
            outcome = await executeStep(step, retry: .none, input: StepValue(json: inputJSON), identity: identity, stepIndex: 0, context: context, ledger: budget.map(QuotaLedger.init), budget: budget)
        } catch {
            outcome = StepOutcome(ending: hookEnding(error), context: context, attempts: 0, latencySeconds: 0, usage: Usage(), retries: [])
        }
        await finishTask(outcome, state: state, inputJSON: inputJSON, identity: identity, duration: (ContinuousClock.now - started).seconds, resumedFrom: task.status)
        return TaskOutcome(
            taskID: taskID, runID: claimed.runID, status: outcome.status, outputJSON: outcome.output?.json,
            errorMessage: outcome.errorMessage, errorCategory: outcome.errorCategory, attempts: claimed.attempts)
    }

    /// Retries failed background tasks, each up to `maxRetries` times with
    /// exponential backoff and jitter between tries. A failed result counts like
    /// a thrown error. Returns what happened to each task.
    public func retryFailedBackgroundTasks(
        parentRunID: String? = nil, maxRetries: Int? = nil, progress: (@Sendable (Int, Int, RetryReport.Entry) -> Void)? = nil
    ) async throws -> RetryReport {
        try await startIfNeeded()
        let retries = maxRetries ?? settings.backgroundTasks.maxRetries
        let policy = RetryPolicy(
            maxAttempts: retries + 1, baseDelay: .milliseconds(settings.backgroundTasks.retryBaseDelayMs),
            maxDelay: .milliseconds(settings.backgroundTasks.retryMaxDelayMs), jitter: 0.5)
        var tasks: [WorkflowState] = []
        var offset = 0
        while true {
            let page = try await store.listBackgroundTasks(BackgroundTaskQuery(parentRunID: parentRunID, statuses: [.failed], limit: 500, offset: offset))
            tasks += page
            if page.count < 500 { break }
            offset += 500
        }
        var report = RetryReport(entries: [])
        for (index, task) in tasks.enumerated() {
            guard let taskID = task.taskID else { continue }
            var entry = RetryReport.Entry(taskID: taskID, status: .failed, retries: 0, error: task.errorMessage)
            while entry.retries < retries {
                if entry.retries > 0 { try? await Task.sleep(for: policy.delay(afterAttempt: entry.retries)) }
                entry.retries += 1
                do {
                    let outcome = try await resumeBackgroundTask(taskID: taskID)
                    entry.status = outcome.status
                    entry.error = outcome.errorMessage
                    if outcome.status != .failed { break }
                } catch let error as RunnerError {
                    entry.error = error.description
                    if case .alreadyBeingResumed = error { entry.status = .running }
                    break
                }
            }
            report.entries.append(entry)
            progress?(index + 1, tasks.count, entry)
        }
        return report
    }

    /// Marks running background tasks whose heartbeat is older than
    /// `staleHours` (default `stale_task_timeout_hours`) as failed, category
    /// timeout. Times are compared in UTC. Returns how many were marked.
    @discardableResult
    public func cleanupStaleBackgroundTasks(staleHours: Double? = nil) async throws -> Int {
        let hours = staleHours ?? settings.backgroundTasks.staleTaskTimeoutHours
        let now = Timestamp.now
        // The category says "timeout"; the message says why, briefly (it is
        // stored in every row the cleanup fails, twice).
        let message = "no heartbeat for over \(Self.formatHours(hours)); process likely crashed"
        return try await store.failStaleTasks(heartbeatBefore: now.adding(seconds: -hours * 3600), now: now, message: message)
    }

    /// Totals per status, recent runs and mean duration.
    public func workflowStats() async throws -> WorkflowStats {
        try await store.workflowStats(now: .now)
    }

    /// Task ids close to `taskID` (sharing its longest known prefix), for "did you mean".
    public func suggestions(for taskID: String) async throws -> [String] {
        var prefix = taskID
        while prefix.count > 3 {
            let found = try await store.taskIDs(withPrefix: prefix, limit: 3)
            if !found.isEmpty { return found }
            prefix.removeLast()
        }
        return []
    }

    static func formatHours(_ hours: Double) -> String {
        hours == hours.rounded() ? "\(Int(hours)) h" : String(format: "%.3g h", hours)
    }
}
