import Foundation

/// One finished step of a run, as kept in the run's step history.
public struct StepResult: Sendable, Hashable, Codable {
    /// The step's registered name.
    public var name: String
    /// The output as JSON (for a launch: the input it passed on).
    public var outputJSON: String?
    /// Whether it succeeded.
    public var success: Bool
    /// Attempts made.
    public var attempts: Int
    /// Wall-clock duration in seconds.
    public var latencySeconds: Double
    /// Usage it reported.
    public var usage: Usage
    /// Failure or pause message, or the launch notice.
    public var feedback: String?

    /// The result as a JSON object, keys sorted (hand-written: this runs once per step).
    var jsonText: String {
        var out = "{\"attempts\":"
        out.reserveCapacity(96 + name.utf8.count + (outputJSON?.utf8.count ?? 4) + (feedback?.utf8.count ?? 4))
        out += String(attempts)
        out += ",\"cost_usd\":"
        out += usage.costUSD == 0 ? "0" : String(usage.costUSD)
        out += ",\"feedback\":"
        if let feedback { JSONText.appendQuoted(feedback, to: &out) } else { out += "null" }
        out += ",\"latency_s\":"
        out += String(latencySeconds)
        out += ",\"name\":"
        JSONText.appendQuoted(name, to: &out)
        out += ",\"output\":"
        out += outputJSON ?? "null"
        out += success ? ",\"success\":true,\"tokens\":" : ",\"success\":false,\"tokens\":"
        out += String(usage.tokens)
        out += "}"
        return out
    }
}

/// The outcome of a pipeline run.
public struct PipelineResult: Sendable {
    /// The run id.
    public var runID: String
    /// How the run ended: completed, failed or paused.
    public var status: RunStatus
    /// The last step's output as JSON.
    public var outputJSON: String?
    /// Every step that finished, in order.
    public var steps: [StepResult]
    /// The context at the end.
    public var context: RunContext
    /// Usage of the run's own steps (background tasks report theirs separately).
    public var usage: Usage
    /// The error or pause message.
    public var errorMessage: String?
    /// The error category.
    public var errorCategory: ErrorCategory?
    /// Background tasks launched, by task id.
    public var backgroundTaskIDs: [String]
    /// Wall-clock duration in seconds.
    public var durationSeconds: Double

    /// The last output decoded as `T`.
    public func output<T: Decodable>(as type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data((outputJSON ?? "null").utf8))
    }
}

/// A background task as the runner APIs and the `flujo` command show it.
public struct BackgroundTask: Sendable, Hashable {
    /// `bg_` + 32 hex digits.
    public var taskID: String
    /// `<parent_run_id>_bg_<task_id>`.
    public var runID: String
    /// The run that launched it.
    public var parentRunID: String?
    /// The registered step it runs.
    public var stepName: String?
    /// Its state.
    public var status: RunStatus
    /// The last error or pause message.
    public var error: String?
    /// The last error category.
    public var errorCategory: ErrorCategory?
    /// Executions so far.
    public var attempts: Int
    /// When it was launched.
    public var createdAt: Timestamp
    /// Its last write or heartbeat.
    public var updatedAt: Timestamp
    /// The task's metadata JSON; the input is read from it only when asked for.
    private var metadataJSON: String

    /// The input it runs with, as JSON.
    public var inputJSON: String? { TaskMetadata.inputJSON(from: metadataJSON) }
    /// Cost it reported, USD.
    public var costUSD: Double
    /// Tokens it reported.
    public var tokens: Int
    /// The pipeline it belongs to.
    public var pipelineName: String
    /// Whether a resume of it is running now (in any process): its status is
    /// then still the stored one until the resume saves its outcome. Set by
    /// the runner's listings; false in a view made from a row alone.
    public var isBeingResumed = false

    /// The view of a persisted background task row.
    public init(_ state: WorkflowState) {
        taskID = state.taskID ?? ""
        runID = state.runID
        parentRunID = state.parentRunID
        stepName = state.stepName
        status = state.status
        error = state.errorMessage
        errorCategory = state.errorCategory
        attempts = state.attempts
        createdAt = state.createdAt
        updatedAt = state.updatedAt
        metadataJSON = state.metadataJSON
        costUSD = state.costUSD
        tokens = state.tokens
        pipelineName = state.pipelineName
    }
}

/// The outcome of resuming one task.
public struct TaskOutcome: Sendable, Hashable {
    /// The task.
    public var taskID: String
    /// Its run id.
    public var runID: String
    /// Its status after the attempt.
    public var status: RunStatus
    /// Its output as JSON, when completed.
    public var outputJSON: String?
    /// The error or pause message.
    public var errorMessage: String?
    /// The error category.
    public var errorCategory: ErrorCategory?
    /// Executions so far.
    public var attempts: Int
}

/// What `retryFailedBackgroundTasks` did, per task.
public struct RetryReport: Sendable, Hashable {
    /// One task's retries.
    public struct Entry: Sendable, Hashable {
        /// The task.
        public var taskID: String
        /// Its status at the end.
        public var status: RunStatus
        /// Retries made now.
        public var retries: Int
        /// The last error, when it still failed or was skipped.
        public var error: String?
    }

    /// Every task considered, in order.
    public var entries: [Entry]

    /// Tasks that completed.
    public var succeeded: Int { entries.filter { $0.status == .completed }.count }
    /// Tasks that are still not completed.
    public var failed: Int { entries.count - succeeded }
}
