/// The persisted state of one run; background tasks are runs too.
///
/// This is the row of the `workflow_state` table. JSON-bearing fields hold JSON
/// text exactly as the runner wrote it, so a store never needs to know the
/// user's types.
public struct WorkflowState: Sendable, Hashable, Codable {
    /// Unique id of the run. For a background task: `<parent_run_id>_bg_<task_id>`.
    public var runID: String
    /// Identifier of the pipeline definition (name and version).
    public var pipelineID: String
    /// Name of the pipeline.
    public var pipelineName: String
    /// Version of the pipeline.
    public var pipelineVersion: String
    /// Index of the step being run or about to run.
    public var currentStepIndex: Int
    /// The user context as JSON.
    public var contextJSON: String
    /// Output of the last finished step as JSON, if any.
    public var lastStepOutputJSON: String?
    /// The step history as a JSON array of step results, written when the run
    /// ends (while it runs, its `steps` log grows one record per step; rewriting
    /// the whole history at every step would cost time quadratic in its length).
    public var stepHistoryJSON: String
    /// Lifecycle state.
    public var status: RunStatus
    /// When the run was first persisted; written once, never changed.
    public var createdAt: Timestamp
    /// Last write or heartbeat.
    public var updatedAt: Timestamp
    /// Number of steps in the pipeline.
    public var totalSteps: Int
    /// The error or pause message of a failed, paused or cancelled run or task.
    public var errorMessage: String?
    /// Wall-clock duration of the run in milliseconds, once it has ended.
    public var executionTimeMs: Double?
    /// Resident memory of the process at the end of the run, in MiB.
    public var memoryUsageMB: Double?
    /// A JSON object of task metadata (task_id, parent_run_id, step_name, input_data, error_category).
    public var metadataJSON: String
    /// Whether this run is a background task. Explicit, never inferred from the id.
    public var isBackgroundTask: Bool
    /// A background task that is running: a store that records owners records
    /// the process running it.
    public var isRunningTask: Bool { isBackgroundTask && status == .running }
    /// The run that launched this background task.
    public var parentRunID: String?
    /// The background task id (`bg_` + 32 hex digits).
    public var taskID: String?
    /// Category of the last error.
    public var errorCategory: ErrorCategory?
    /// How many times this run or task has been executed.
    public var attempts: Int
    /// The status the task had when it was last resumed (failed, paused or cancelled), if it was.
    public var resumedFrom: String?
    /// The registered step name a background task runs.
    public var stepName: String?
    /// Cost in USD reported by the run's own steps.
    public var costUSD: Double
    /// Tokens reported by the run's own steps.
    public var tokens: Int

    /// Creates a state; every optional field defaults to absent.
    public init(
        runID: String, pipelineName: String, pipelineVersion: String = "1",
        pipelineID: String? = nil, currentStepIndex: Int = 0, contextJSON: String = "{}",
        lastStepOutputJSON: String? = nil, stepHistoryJSON: String = "[]",
        status: RunStatus = .running, createdAt: Timestamp = .now, updatedAt: Timestamp? = nil,
        totalSteps: Int = 0, errorMessage: String? = nil, executionTimeMs: Double? = nil,
        memoryUsageMB: Double? = nil, metadataJSON: String = "{}", isBackgroundTask: Bool = false,
        parentRunID: String? = nil, taskID: String? = nil,
        errorCategory: ErrorCategory? = nil, attempts: Int = 0, resumedFrom: String? = nil, stepName: String? = nil,
        costUSD: Double = 0, tokens: Int = 0
    ) {
        self.runID = runID
        self.pipelineID = pipelineID ?? "\(pipelineName)@\(pipelineVersion)"
        self.pipelineName = pipelineName
        self.pipelineVersion = pipelineVersion
        self.currentStepIndex = currentStepIndex
        self.contextJSON = contextJSON
        self.lastStepOutputJSON = lastStepOutputJSON
        self.stepHistoryJSON = stepHistoryJSON
        self.status = status
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
        self.totalSteps = totalSteps
        self.errorMessage = errorMessage
        self.executionTimeMs = executionTimeMs
        self.memoryUsageMB = memoryUsageMB
        self.metadataJSON = metadataJSON
        self.isBackgroundTask = isBackgroundTask
        self.parentRunID = parentRunID
        self.taskID = taskID
        self.errorCategory = errorCategory
        self.attempts = attempts
        self.resumedFrom = resumedFrom
        self.stepName = stepName
        self.costUSD = costUSD
        self.tokens = tokens
    }
}
