import Foundation

/// The one place that decides what each transition of a background task
/// records: its status, error text and category, attempts, resumed-from,
/// usage and metadata.
///
/// ```
/// launched ──> running ──> completed | failed | paused | cancelled
///                 │                      │        │        │
///                 └─ stale ─> failed     └── resumed (attempts + 1) ──> running
/// ```
///
/// The engine and the task operations ask it for the row to save; stores
/// persist what it returns and never decide a transition themselves. Bulk
/// transitions (stale cleanup) are described by a `TaskTransition` that a
/// store applies to every row its query selects.
public enum TaskLifecycle {
    /// The row of a task being launched: `running`, first attempt, its input in the metadata.
    public static func launched(
        taskID: String, parentRunID: String, pipelineName: String, pipelineVersion: String,
        stepName: String, inputJSON: String, contextJSON: String, at time: Timestamp
    ) -> WorkflowState {
        WorkflowState(
            runID: Identifiers.taskRunID(parentRunID: parentRunID, taskID: taskID),
            pipelineName: pipelineName, pipelineVersion: pipelineVersion,
            contextJSON: contextJSON, status: .running, createdAt: time, totalSteps: 1,
            metadataJSON: TaskMetadata.json(taskID: taskID, parentRunID: parentRunID, stepName: stepName, inputJSON: inputJSON, errorCategory: nil),
            isBackgroundTask: true, parentRunID: parentRunID, taskID: taskID, attempts: 1, stepName: stepName)
    }

    /// The message of a launch refused for lack of budget.
    public static let quotaRefusedMessage = "Background quota exhausted"

    /// A launch refused because no budget was left: `failed`, category
    /// resource_exhaustion, never run (resumable once budget is given).
    public static func refusedForQuota(_ task: WorkflowState) -> WorkflowState {
        var task = task
        task.status = .failed
        task.errorMessage = quotaRefusedMessage
        task.errorCategory = .resourceExhaustion
        task.metadataJSON = metadata(of: task, inputJSON: TaskMetadata.inputJSON(from: task.metadataJSON) ?? "null", errorCategory: .resourceExhaustion)
        return task
    }

    /// A claimed task about to run again: attempts go up by one and, when
    /// `newInputJSON` is given, it replaces the recorded input. The status
    /// stays as stored until the outcome is saved (`finished`).
    public static func resumed(_ task: WorkflowState, newInputJSON: String?) -> WorkflowState {
        var task = task
        // Saturating, as every count read from a row: a row may hold anything.
        task.attempts = task.attempts.addingSaturating(1)
        if let newInputJSON {
            task.metadataJSON = metadata(of: task, inputJSON: newInputJSON, errorCategory: task.errorCategory)
        }
        return task
    }

    /// The input a task runs with: `newInputJSON`, else the recorded one, else `null`.
    public static func input(of task: WorkflowState, newInputJSON: String? = nil) -> String {
        newInputJSON ?? TaskMetadata.inputJSON(from: task.metadataJSON) ?? "null"
    }

    /// How one execution of a task ended.
    public struct Outcome: Sendable, Hashable {
        /// completed, failed, paused or cancelled.
        public var status: RunStatus
        /// The error or pause message; nil when completed.
        public var errorMessage: String?
        /// The category of the error or pause.
        public var errorCategory: ErrorCategory?
        /// The step's output as JSON, when it completed.
        public var outputJSON: String?
        /// The context after the step.
        public var contextJSON: String
        /// What the step reported using.
        public var usage: Usage
        /// Wall-clock duration of the execution, in seconds.
        public var durationSeconds: Double
        /// The input it ran with.
        public var inputJSON: String

        /// Creates an outcome.
        public init(
            status: RunStatus, errorMessage: String?, errorCategory: ErrorCategory?, outputJSON: String?,
            contextJSON: String, usage: Usage, durationSeconds: Double, inputJSON: String
        ) {
            self.status = status
            self.errorMessage = errorMessage
            self.errorCategory = errorCategory
            self.outputJSON = outputJSON
            self.contextJSON = contextJSON
            self.usage = usage
            self.durationSeconds = durationSeconds
            self.inputJSON = inputJSON
        }
    }

    /// The end of an execution, first run or resume: the new status, error text
    /// and category replace the old ones, usage adds up, and a resume records
    /// the status it came from.
    public static func finished(_ task: WorkflowState, outcome: Outcome, resumedFrom: RunStatus?, stepHistoryJSON: String, at time: Timestamp) -> WorkflowState {
        var task = task
        task.status = outcome.status
        task.updatedAt = time
        task.errorMessage = outcome.status == .completed ? nil : outcome.errorMessage
        task.errorCategory = outcome.status == .completed ? nil : outcome.errorCategory
        task.lastStepOutputJSON = outcome.outputJSON
        task.contextJSON = outcome.contextJSON
        task.costUSD += outcome.usage.costUSD
        task.tokens = task.tokens.addingSaturating(outcome.usage.tokens)
        task.executionTimeMs = outcome.durationSeconds * 1000
        task.currentStepIndex = outcome.status == .completed ? 1 : 0
        task.stepHistoryJSON = stepHistoryJSON
        if let resumedFrom { task.resumedFrom = resumedFrom.rawValue }
        task.metadataJSON = metadata(of: task, inputJSON: outcome.inputJSON, errorCategory: task.errorCategory)
        return task
    }

    /// The message of a task cancelled when its engine closed.
    public static let cancelledAtShutdownMessage = "Cancelled at shutdown before finishing"

    /// A task still `running` when its engine closed: `cancelled` (resumable).
    /// Nil when the task is no longer running (its outcome was saved).
    public static func cancelledAtShutdown(_ task: WorkflowState, at time: Timestamp) -> WorkflowState? {
        guard task.status == .running else { return nil }
        return cancelled(message: cancelledAtShutdownMessage, at: time).applied(to: task)
    }

    /// What stale cleanup records on a running task whose heartbeat is older
    /// than `thresholdHours`: `failed`, category timeout. The message is short:
    /// it is written into every row the cleanup changes.
    public static func stale(thresholdHours: Double, at time: Timestamp) -> TaskTransition {
        TaskTransition(
            status: .failed, errorMessage: "no heartbeat for over \(formatHours(thresholdHours)); process likely crashed",
            errorCategory: .timeout, at: time, nextAttemptAt: time)
    }

    /// What recovery records on a running task whose process has ended:
    /// `failed`, category lost_worker, and, with `retry` (the
    /// `recover_lost_tasks` setting), due at once for workers. Its attempt
    /// counts: the step may have run part of the way, so a step that runs
    /// again must be safe to repeat.
    public static func orphaned(at time: Timestamp, retry: Bool = true) -> TaskTransition {
        TaskTransition(
            status: .failed, errorMessage: "the process running it ended before it finished (lost worker); resume or retry it",
            errorCategory: .lostWorker, at: time, nextAttemptAt: retry ? time : nil)
    }

    /// A foreground run whose process ended while it ran: failed, category
    /// `lost_worker`. Runs are not retried (their tasks are), so it is never due.
    public static func orphanedRun(at time: Timestamp) -> TaskTransition {
        TaskTransition(
            status: .failed, errorMessage: "the process running it ended before it finished (lost worker)",
            errorCategory: .lostWorker, at: time, nextAttemptAt: nil)
    }

    /// A foreground run that records no process and has not been updated for
    /// `thresholdHours`: a run of an earlier version whose process is long gone.
    public static func staleRun(thresholdHours: Double, at time: Timestamp) -> TaskTransition {
        TaskTransition(
            status: .failed, errorMessage: "no update for over \(formatHours(thresholdHours)) and no process recorded; its process likely ended",
            errorCategory: .lostWorker, at: time, nextAttemptAt: nil)
    }

    /// How failed tasks are retried by workers: at most `maxAttempts`
    /// executions in all, the delay doubling from `baseDelayMs` to at most `maxDelayMs`.
    public struct RetrySchedule: Sendable, Hashable {
        /// Executions in all, the first one included.
        public var maxAttempts: Int
        /// The delay before the second execution, in milliseconds.
        public var baseDelayMs: Double
        /// The longest delay, in milliseconds.
        public var maxDelayMs: Double

        /// Creates a schedule.
        public init(maxAttempts: Int, baseDelayMs: Double, maxDelayMs: Double) {
            self.maxAttempts = maxAttempts
            self.baseDelayMs = baseDelayMs
            self.maxDelayMs = maxDelayMs
        }

        /// `[background_tasks] max_retries`, `retry_base_delay_ms` and `retry_max_delay_ms`.
        public init(_ settings: BackgroundTaskSettings) {
            self.init(maxAttempts: settings.maxRetries.addingSaturating(1), baseDelayMs: settings.retryBaseDelayMs, maxDelayMs: settings.retryMaxDelayMs)
        }
    }

    /// When a worker may run `task` again: a failure of a retryable category
    /// with attempts left is due after the schedule's delay; anything else is
    /// not scheduled (nil). Kept in the store, so the backoff survives
    /// restarts and every worker shares it.
    public static func nextAttempt(for task: WorkflowState, schedule: RetrySchedule, at time: Timestamp) -> Timestamp? {
        guard task.isBackgroundTask, task.status == .failed, let category = task.errorCategory, category.isTransient,
              task.attempts < schedule.maxAttempts
        else { return nil }
        let exponent = Double(min(max(task.attempts, 1), 31) - 1)
        let delay = min(schedule.baseDelayMs * pow(2, exponent), schedule.maxDelayMs)
        return time.adding(seconds: max(0, delay) / 1000)
    }

    /// What retention deletes at `time`: completed, failed-for-good and
    /// cancelled runs and tasks older than their setting (hours; 0 keeps them
    /// forever), with their step logs and spans. Running and paused work is
    /// never deleted, nor a failure that may be retried.
    public static func retention(_ settings: StateSettings, at time: Timestamp) -> PrunePolicy? {
        var cutoffs: [RunStatus: Timestamp] = [:]
        for (status, hours) in [(RunStatus.completed, settings.keepCompletedHours), (.failed, settings.keepFailedHours), (.cancelled, settings.keepCancelledHours)] where hours > 0 {
            cutoffs[status] = time.adding(seconds: -hours * 3600)
        }
        guard !cutoffs.isEmpty else { return nil }
        return PrunePolicy(cutoffs: cutoffs, keptFailureCategories: Set(ErrorCategory.allCases.filter(\.isTransient)))
    }

    static func cancelled(message: String, at time: Timestamp) -> TaskTransition {
        TaskTransition(status: .cancelled, errorMessage: message, errorCategory: .cancelled, at: time)
    }

    static func metadata(of task: WorkflowState, inputJSON: String, errorCategory: ErrorCategory?) -> String {
        TaskMetadata.json(
            taskID: task.taskID ?? "", parentRunID: task.parentRunID ?? "", stepName: task.stepName ?? "",
            inputJSON: inputJSON, errorCategory: errorCategory)
    }

    static func formatHours(_ hours: Double) -> String {
        hours == hours.rounded() && abs(hours) < 1e15 ? "\(Int(hours)) h" : String(format: "%.3g h", hours)
    }
}

/// Which ended runs and tasks retention deletes, decided by `TaskLifecycle.retention`:
/// rows of these statuses last updated before their cutoff, failed ones only
/// when their category is not retryable (failed for good); a retryable failure
/// is kept for a retry.
public struct PrunePolicy: Sendable, Hashable {
    /// Per status, rows last updated before this time go.
    public var cutoffs: [RunStatus: Timestamp]
    /// Failed rows with one of these categories (or none) are kept whatever their age.
    public var keptFailureCategories: Set<ErrorCategory>

    /// Creates a policy.
    public init(cutoffs: [RunStatus: Timestamp], keptFailureCategories: Set<ErrorCategory>) {
        self.cutoffs = cutoffs
        self.keptFailureCategories = keptFailureCategories
    }

    /// Whether a row goes under this policy.
    public func prunes(_ state: WorkflowState) -> Bool {
        guard let cutoff = cutoffs[state.status], state.updatedAt < cutoff else { return false }
        if state.status == .failed { return state.errorCategory.map { !keptFailureCategories.contains($0) } ?? false }
        return true
    }
}

/// A change of status decided by `TaskLifecycle` that a store applies to many
/// rows at once (stale cleanup), without deciding anything itself.
public struct TaskTransition: Sendable, Hashable {
    /// The new status.
    public var status: RunStatus
    /// The new error text.
    public var errorMessage: String?
    /// The new error category.
    public var errorCategory: ErrorCategory?
    /// When it happened (the rows' new `updatedAt`).
    public var at: Timestamp
    /// When a worker may run the tasks again; nil: not scheduled.
    public var nextAttemptAt: Timestamp?

    /// Creates a transition.
    public init(status: RunStatus, errorMessage: String?, errorCategory: ErrorCategory?, at: Timestamp, nextAttemptAt: Timestamp? = nil) {
        self.status = status
        self.errorMessage = errorMessage
        self.errorCategory = errorCategory
        self.at = at
        self.nextAttemptAt = nextAttemptAt
    }

    /// The row after the transition.
    public func applied(to task: WorkflowState) -> WorkflowState {
        var task = task
        task.status = status
        task.errorMessage = errorMessage
        task.errorCategory = errorCategory
        task.updatedAt = at
        return task
    }
}
