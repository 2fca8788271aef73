import Foundation
import Logging

/// Lists, shows, resumes, retries, cleans up and counts background tasks.
///
/// Reads (`list`, `failed`, `task`, `stats`, `statusCounters`, `suggestions`)
/// never write: they run no cleanup and start no maintenance, so they work on
/// a store opened read-only. Writes (`resume`, `retryFailed`,
/// `cleanupStaleTasks`) record what `TaskLifecycle` decides.
///
/// A process that only resumes tasks builds one with the steps it can run:
///
/// ```swift
/// let operations = TaskOperations(store: store, settings: settings, registry: StepRegistry(pipeline))
/// _ = try await operations.resume(taskID: id)
/// ```
public struct TaskOperations: Sendable {
    let executor: Executor
    /// Steps this process can resume by name.
    public let registry: StepRegistry
    /// The owner recorded with this process's resume claims.
    public let owner: String

    /// The store the operations read and write.
    public var store: any StateStore { executor.store }
    /// The effective settings.
    public var settings: FlujoSettings { executor.settings }

    /// The longest task id the operations look up; longer ones are refused at once.
    public static let maxTaskIDLength = 256

    /// Creates the operations over a store. `hooks` receives the events of resumed executions.
    public init(
        store: any StateStore, settings: FlujoSettings = FlujoSettings(), registry: StepRegistry = StepRegistry(),
        hooks: HookBus = HookBus(), classifier: any ErrorClassifier = DefaultErrorClassifier(),
        logger: Logger = Logger(label: "flujo.tasks")
    ) {
        self.init(
            executor: Executor(store: store, settings: settings, hooks: hooks, classifier: classifier, logger: logger, outcomes: OutcomeStats(tracker: nil)),
            registry: registry, owner: Identifiers.processOwner + ":" + Identifiers.randomHex(bytes: 3))
        hooks.attachCounters(executor.outcomes)
    }

    init(executor: Executor, registry: StepRegistry, owner: String) {
        self.executor = executor
        self.registry = registry
        self.owner = owner
    }

    // MARK: - Reads

    /// Background tasks matching a query, newest first, each marked when a resume of it runs now.
    public func list(_ query: BackgroundTaskQuery = BackgroundTaskQuery()) async throws -> [BackgroundTask] {
        try await markResumes(try await store.listBackgroundTasks(query))
    }

    /// Failed background tasks updated in the last `hoursBack` hours, newest first.
    public func failed(parentRunID: String? = nil, hoursBack: Double = 24, limit: Int = 1000) async throws -> [BackgroundTask] {
        let since = Timestamp.now.adding(seconds: -Self.seconds(hours: hoursBack))
        return try await list(BackgroundTaskQuery(parentRunID: parentRunID, statuses: [.failed], updatedSince: since, limit: limit))
    }

    /// One task, marked when a resume of it runs now; nil when no task has that id.
    public func task(id taskID: String) async throws -> BackgroundTask? {
        try Self.check(taskID)
        guard let state = try await store.loadTask(taskID: taskID) else { return nil }
        return try await markResumes([state]).first
    }

    /// Totals per status, recent runs and mean duration, from maintained counters.
    public func stats() async throws -> WorkflowStats {
        try await store.workflowStats(now: .now)
    }

    /// The per-status counters alone (O(1)).
    public func statusCounters() async throws -> StatusCounters {
        try await store.statusCounters()
    }

    /// Up to three task ids sharing the longest prefix (at least 4 characters)
    /// with `taskID`, for "did you mean". Two indexed lookups, whatever its length.
    public func suggestions(for taskID: String) async throws -> [String] {
        guard taskID.utf8.count <= Self.maxTaskIDLength else { return [] }
        let neighbors = try await store.taskIDNeighbors(of: taskID)
        let shared = neighbors.map { Self.commonPrefixLength(taskID, $0) }.max() ?? 0
        guard shared >= 4 else { return [] }
        return try await store.taskIDs(withPrefix: String(taskID.prefix(shared)), limit: 3)
    }

    /// The view of `states`, each marked when a resume of it is running.
    private func markResumes(_ states: [WorkflowState]) async throws -> [BackgroundTask] {
        var tasks = states.map(BackgroundTask.init)
        let claimed = try await store.claimedTaskIDs(among: tasks.map(\.taskID))
        if !claimed.isEmpty {
            for index in tasks.indices where claimed.contains(tasks[index].taskID) { tasks[index].isBeingResumed = true }
        }
        return tasks
    }

    // MARK: - Writes

    /// Runs a failed, paused or cancelled task's step again in the foreground,
    /// with `newData` as its input or the recorded one, and persists the outcome.
    ///
    /// The task is claimed first: of concurrent resumers (in any process) only
    /// one runs it; the others get `RunnerError.alreadyBeingResumed`. The claim
    /// is held until the outcome is saved (or, if this process dies, until it
    /// ends). The attempt is recorded when claimed (`TaskLifecycle.resumed`:
    /// attempts up by one, the new input, and the next attempt's time should
    /// this one never end); the stored status changes only with the outcome
    /// (`TaskLifecycle.finished`).
    public func resume(taskID: String, newData: JSONValue? = nil) async throws -> TaskOutcome {
        try await resume(taskID: taskID, newData: newData, kind: .resume)
    }

    /// `resume`, the new attempt's span linked to the previous one as `kind`.
    private func resume(taskID: String, newData: JSONValue?, kind: AttemptLink.Kind) async throws -> TaskOutcome {
        try Self.check(taskID)
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
        return try await releasing(taskID) { try await run(claimed: task, newData: newData, kind: kind) }
    }

    /// Claims the failed task whose next attempt has waited longest
    /// (`TaskLifecycle.nextAttempt`, kept in the store) and runs it as `resume`
    /// does. Nil when no task is due. Of concurrent callers in any process,
    /// each gets a different task.
    public func resumeNextDue() async throws -> TaskOutcome? {
        guard settings.backgroundTasks.enableResumability else { throw RunnerError.resumabilityDisabled }
        // Only tasks this process can run: one of another application's steps is left to its workers.
        guard let task = try await store.claimNextDueTask(owner: owner, now: .now, steps: Set(registry.names)), let taskID = task.taskID else { return nil }
        return try await releasing(taskID) { try await run(claimed: task, newData: nil, kind: task.errorCategory == .lostWorker ? .recovery : .retry) }
    }

    /// Runs `body`, then ends the claim on `taskID`, whatever happens.
    private func releasing<T>(_ taskID: String, _ body: () async throws -> T) async throws -> T {
        do {
            let value = try await body()
            await store.endClaim(taskID: taskID)
            return value
        } catch {
            await store.endClaim(taskID: taskID)
            throw error
        }
    }

    /// Runs a task this process has claimed and records the outcome.
    private func run(claimed task: WorkflowState, newData: JSONValue?, kind: AttemptLink.Kind) async throws -> TaskOutcome {
        let taskID = task.taskID ?? task.runID
        guard let stepName = task.stepName, let step = registry.step(named: stepName) else {
            throw RunnerError.stepNotRegistered(taskID: taskID, stepName: task.stepName ?? "(none)", registered: registry.names)
        }
        let inputJSON = TaskLifecycle.input(of: task, newInputJSON: newData?.jsonText)
        let resumed = TaskLifecycle.resumed(task, newInputJSON: newData?.jsonText)
        // The attempt counts from its claim, before its step runs: if this process dies
        // in it (a crash, the OOM killer), the task has used it and its next attempt
        // waits its backoff, or none is left. A task that kills its worker cannot take
        // every worker down in turn, forever.
        let due = TaskLifecycle.nextAttempt(for: resumed, schedule: TaskLifecycle.RetrySchedule(settings.backgroundTasks), at: .now)
        try await store.save([StateWrite(resumed, nextAttemptAt: due)])
        // The new attempt continues the trace of the launch, linked to the attempt before it.
        // Its record is saved with its outcome: the next attempt links to an attempt that ended.
        var link: AttemptLink?
        var trace: TaskTrace?
        let span: SpanPosition
        if let previous = try? await store.taskTrace(runID: task.runID) {
            let next = previous.nextAttempt(startingAt: Identifiers.nowUnixNano(), number: resumed.attempts)
            link = AttemptLink(kind: kind, previous: previous.attempt, previousAttempt: previous.attemptNumber)
            trace = next
            span = next.attempt
        } else {
            span = .root(sampler: settings.telemetry.sampler)
        }
        let identity = EventIdentity(
            runID: resumed.runID, parentRunID: resumed.parentRunID, taskID: taskID,
            pipelineName: resumed.pipelineName, pipelineVersion: resumed.pipelineVersion, isBackground: false, span: span,
            instrumented: settings.telemetry.propagatesTraceContext && ServiceContextBridge.isInstrumented)
        let context = RunContext(json: resumed.contextJSON)
        let budget = settings.backgroundTasks.enableQuota
            ? Quota(costUSD: settings.backgroundTasks.maxCostPerTask, tokens: settings.backgroundTasks.maxTokensPerTask) : nil
        let (outcome, duration) = await executor.executeTask(
            step, retry: .none, input: StepValue(json: inputJSON), identity: identity, context: context, budget: budget,
            task: resumed, attempt: resumed.attempts, link: link)
        let result = TaskOutcome(
            taskID: taskID, runID: resumed.runID, status: outcome.status, outputJSON: outcome.output?.json,
            errorMessage: outcome.errorMessage, errorCategory: outcome.errorCategory, attempts: resumed.attempts)
        if var pending = await executor.finishTask(outcome, task: resumed, inputJSON: inputJSON, identity: identity, duration: duration, resumedFrom: task.status, trace: trace) {
            // Written again, with backoff, for up to `outcomeRetryWindow` while the claim is held
            // (a database restarting); then the task keeps its old row and stays resumable.
            var delay = Duration.milliseconds(50)
            let deadline = ContinuousClock.now + Self.outcomeRetryWindow
            while !pending.superseded, ContinuousClock.now + delay < deadline {
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(2))
                do {
                    try await store.save([StateWrite(pending.state, step: pending.step, parentUsage: pending.parentUsage, nextAttemptAt: pending.nextAttemptAt, trace: pending.trace)])
                    return result
                } catch {
                    pending.error = "\(error)"
                    pending.superseded = (error as? StateStoreError)?.isSuperseded ?? false
                }
            }
            throw RunnerError.outcomeNotPersisted(taskID: taskID, status: outcome.status, reason: pending.error)
        }
        return result
    }

    /// How long a resume keeps writing an outcome that could not be written, before giving up.
    static let outcomeRetryWindow = Duration.seconds(30)

    /// Retries failed background tasks, each up to `maxRetries` times with
    /// exponential backoff and jitter between tries, `concurrency` tasks at a
    /// time. A failed result counts like a thrown error. A task another
    /// process is resuming is skipped (reported `running`). Returns what
    /// happened to each task, in the order they were listed; `progress` is
    /// called as each task is done.
    public func retryFailed(
        parentRunID: String? = nil, maxRetries: Int? = nil, concurrency: Int = 1,
        progress: (@Sendable (Int, Int, RetryReport.Entry) -> Void)? = nil
    ) async throws -> RetryReport {
        let retries = max(0, maxRetries ?? settings.backgroundTasks.maxRetries)
        let policy = RetryPolicy(
            maxAttempts: retries.addingReportingOverflow(1).overflow ? Int.max : retries + 1,
            baseDelay: .milliseconds(settings.backgroundTasks.retryBaseDelayMs),
            maxDelay: .milliseconds(settings.backgroundTasks.retryMaxDelayMs), jitter: 0.5)
        var tasks: [WorkflowState] = []
        var offset = 0
        while true {
            let page = try await store.listBackgroundTasks(BackgroundTaskQuery(parentRunID: parentRunID, statuses: [.failed], limit: 500, offset: offset))
            tasks += page
            if page.count < 500 { break }
            offset += 500
        }
        let candidates = tasks.compactMap { task in task.taskID.map { ($0, task.errorMessage) } }
        var entries = [RetryReport.Entry?](repeating: nil, count: candidates.count)
        var done = 0
        await withTaskGroup(of: (Int, RetryReport.Entry).self) { group in
            var next = 0
            func startNext() {
                // Cancelled (an operator's Ctrl-C): no further task is started.
                guard next < candidates.count, !Task.isCancelled else { return }
                let index = next
                next += 1
                let (taskID, error) = candidates[index]
                group.addTask { (index, await retry(taskID: taskID, lastError: error, retries: retries, policy: policy)) }
            }
            for _ in 0..<min(max(1, concurrency), max(1, candidates.count)) { startNext() }
            for await (index, entry) in group {
                entries[index] = entry
                done += 1
                progress?(done, candidates.count, entry)
                startNext()
            }
        }
        return RetryReport(entries: entries.compactMap { $0 })
    }

    /// One task's retries, each a resume, until one does not fail.
    private func retry(taskID: String, lastError: String?, retries: Int, policy: RetryPolicy) async -> RetryReport.Entry {
        var entry = RetryReport.Entry(taskID: taskID, status: .failed, retries: 0, error: lastError)
        while entry.retries < retries {
            if entry.retries > 0 { try? await Task.sleep(for: policy.delay(afterAttempt: entry.retries)) }
            entry.retries += 1
            do {
                let outcome = try await resume(taskID: taskID, newData: nil, kind: .retry)
                entry.status = outcome.status
                entry.error = outcome.errorMessage
                if outcome.status != .failed { break }
            } catch let error as RunnerError {
                entry.error = error.description
                if case .alreadyBeingResumed = error { entry.status = .running }
                break
            } catch {
                entry.error = "\(error)"
                break
            }
        }
        return entry
    }

    /// Applies `TaskLifecycle.orphaned` to every running background task whose
    /// process has ended (it held a lock the kernel dropped with it): found at
    /// once, whatever the heartbeat and thresholds say. A task whose process
    /// lives is never touched. Returns how many it changed.
    /// Each task's `taskFinished` event carries the attempt its process was
    /// running (`TaskEnd.lostAttempt`), so that attempt's span is ended now.
    @discardableResult
    public func recoverOrphanedTasks() async throws -> Int {
        let transition = TaskLifecycle.orphaned(at: .now, retry: settings.backgroundTasks.recoverLostTasks == "retry")
        return try await apply(transition) {
            try await store.failOrphanedTasks(applying: transition)
        } counting: {
            try await store.failOrphanedTaskCount(applying: transition)
        }
    }

    /// Applies `TaskLifecycle.orphanedRun` to every running foreground run whose
    /// process has ended (its owner lock is gone): found at once, as
    /// `recoverOrphanedTasks` finds tasks; a run whose process lives is never
    /// touched. Returns how many it changed.
    @discardableResult
    public func recoverOrphanedRuns() async throws -> Int {
        try await store.failOrphanedRuns(applying: TaskLifecycle.orphanedRun(at: .now))
    }

    /// Runs a bulk transition and returns how many tasks it ended. When a sink
    /// listens for `taskFinished`, the store returns the tasks and each gets its
    /// event; otherwise the store only counts them.
    private func apply(
        _ transition: TaskTransition, returning: () async throws -> [EndedTask], counting: () async throws -> Int
    ) async throws -> Int {
        guard executor.hooks.wants(.taskFinished) else { return try await counting() }
        let ended = try await returning()
        await announce(ended, transition)
        return ended.count
    }

    /// Emits `taskFinished` for tasks a bulk transition ended, with the attempt they were running.
    private func announce(_ ended: [EndedTask], _ transition: TaskTransition) async {
        guard !ended.isEmpty else { return }
        let now = Identifiers.nowUnixNano()
        for task in ended {
            let identity = EventIdentity(
                runID: task.runID, parentRunID: task.parentRunID, taskID: task.taskID, pipelineName: task.pipelineName,
                pipelineVersion: task.pipelineVersion, isBackground: true, span: task.trace?.attempt ?? .root())
            let seconds = task.trace.map { Double(now &- min(now, $0.attemptStartUnixNano)) / 1e9 } ?? 0
            try? await executor.emit(identity, .taskFinished, .taskFinished(HookEvent.TaskEnd(
                taskID: task.taskID, taskRunID: task.runID, stepName: task.stepName, status: transition.status,
                errorMessage: transition.errorMessage, errorCategory: transition.errorCategory, usage: Usage(),
                durationSeconds: seconds, lostAttempt: task.trace)))
        }
    }

    /// Applies `TaskLifecycle.stale` to running background tasks whose
    /// heartbeat is older than `staleHours` (default `stale_task_timeout_hours`)
    /// and that record no owner process (rows written before owners were
    /// recorded, or by a store without owner locks); a task whose owner is
    /// known is left to `recoverOrphanedTasks`, so a live one is never failed,
    /// whatever the threshold. Times are compared in UTC. Returns how many it changed.
    @discardableResult
    public func cleanupStaleTasks(staleHours: Double? = nil) async throws -> Int {
        let hours = staleHours ?? settings.backgroundTasks.staleTaskTimeoutHours
        let now = Timestamp.now
        let transition = TaskLifecycle.stale(thresholdHours: hours, at: now)
        let before = now.adding(seconds: -Self.seconds(hours: hours))
        let tasks = try await apply(transition) {
            try await store.failStaleTasks(heartbeatBefore: before, applying: transition)
        } counting: {
            try await store.failStaleTaskCount(heartbeatBefore: before, applying: transition)
        }
        // Runs of earlier versions recorded no process: the same threshold ends them.
        let runs = try await store.failStaleRuns(updatedBefore: before, applying: TaskLifecycle.staleRun(thresholdHours: hours, at: now))
        if runs > 0 { executor.logger.notice("failed \(runs) run(s) that record no process and were not updated for over \(hours) h") }
        return tasks
    }

    /// Deletes completed, failed-for-good and cancelled runs and tasks past
    /// keeping, with their step logs and spans, in batches of `batch` rows (one
    /// transaction each), at most `maxBatches` of them. What is past keeping is
    /// `TaskLifecycle.retention` of `[state] keep_*_hours`, or, when
    /// `olderThanHours` is given, every such row older than that. With
    /// `dryRun`, deletes nothing and returns how many rows would go.
    @discardableResult
    public func prune(
        olderThanHours: Double? = nil, dryRun: Bool = false, batch: Int = 500, maxBatches: Int = .max,
        progress: (@Sendable (Int) -> Void)? = nil
    ) async throws -> Int {
        let now = Timestamp.now
        let policy: PrunePolicy?
        if let hours = olderThanHours {
            var state = StateSettings()
            state.keepCompletedHours = max(hours, 1e-9)
            state.keepFailedHours = max(hours, 1e-9)
            state.keepCancelledHours = max(hours, 1e-9)
            policy = TaskLifecycle.retention(state, at: now)
        } else {
            policy = TaskLifecycle.retention(settings.state, at: now)
        }
        guard let policy else { return 0 }
        if dryRun { return try await store.prune(policy, limit: 0, dryRun: true) }
        var total = 0
        var batches = 0
        while batches < maxBatches, !Task.isCancelled {
            let deleted = try await store.prune(policy, limit: max(1, batch), dryRun: false)
            total += deleted
            batches += 1
            progress?(total)
            if deleted < max(1, batch) { break }
        }
        return total
    }

    // MARK: - Helpers

    /// Refuses ids longer than any id this library makes, before any lookup.
    static func check(_ taskID: String) throws {
        if taskID.utf8.count > maxTaskIDLength { throw RunnerError.invalidTaskID(length: taskID.utf8.count, limit: maxTaskIDLength) }
    }

    /// Hours as seconds, clamped to about 10,000 years so no time arithmetic overflows.
    static func seconds(hours: Double) -> Double {
        guard hours.isFinite else { return hours > 0 ? 3.2e11 : 0 }
        return min(max(hours, 0), 8.8e7) * 3600
    }

    static func commonPrefixLength(_ a: String, _ b: String) -> Int {
        var count = 0
        for (x, y) in zip(a, b) {
            guard x == y else { break }
            count += 1
        }
        return count
    }
}
