/// The kinds of event the runner emits.
public enum HookEventKind: String, Sendable, Hashable, CaseIterable, Codable {
    case preRun = "pre_run"
    case postRun = "post_run"
    case preStep = "pre_step"
    case postStep = "post_step"
    case onStepFailure = "on_step_failure"
    case onPause = "on_pause"
    case taskLaunched = "task_launched"
    case taskFinished = "task_finished"

    var bit: UInt32 { 1 << UInt32(Self.allCases.firstIndex(of: self)!) }
}

/// One thing that happened in a run, with who it happened to.
///
/// Order in a run: `preRun`, then per step `preStep` closed by exactly one of
/// `postStep`, `onStepFailure` or `onPause`, then `postRun`. A background
/// launch emits `taskLaunched` inside its launch step's pair; the background
/// execution emits its own full set (with `isBackground` true) and then
/// `taskFinished`.
public struct HookEvent: Sendable {
    /// The run the event belongs to (for a background task, the task's run id).
    public let runID: String
    /// The run that launched this background task, when any.
    public let parentRunID: String?
    /// The background task id, when the event concerns one (also for a foreground resume).
    public let taskID: String?
    /// The pipeline name.
    public let pipelineName: String
    /// The pipeline version.
    public let pipelineVersion: String
    /// Whether the event comes from a background execution or a background launch. Explicit, never inferred.
    public let isBackground: Bool
    /// Wall-clock time, nanoseconds since the Unix epoch.
    public let unixNano: UInt64
    /// What happened.
    public let payload: Payload

    /// Creates an event.
    public init(runID: String, parentRunID: String?, taskID: String?, pipelineName: String, pipelineVersion: String, isBackground: Bool, unixNano: UInt64, payload: Payload) {
        self.runID = runID
        self.parentRunID = parentRunID
        self.taskID = taskID
        self.pipelineName = pipelineName
        self.pipelineVersion = pipelineVersion
        self.isBackground = isBackground
        self.unixNano = unixNano
        self.payload = payload
    }

    /// The kind of the payload.
    public var kind: HookEventKind {
        switch payload {
        case .preRun: return .preRun
        case .postRun: return .postRun
        case .preStep: return .preStep
        case .postStep: return .postStep
        case .onStepFailure: return .onStepFailure
        case .onPause: return .onPause
        case .taskLaunched: return .taskLaunched
        case .taskFinished: return .taskFinished
        }
    }

    /// The event's own fields.
    public enum Payload: Sendable {
        case preRun(RunStart)
        case postRun(RunEnd)
        case preStep(StepStart)
        case postStep(StepEnd)
        case onStepFailure(StepEnd)
        case onPause(StepEnd)
        case taskLaunched(TaskLaunch)
        case taskFinished(TaskEnd)
    }

    /// Fields of `preRun`.
    public struct RunStart: Sendable, Hashable {
        /// The initial input as JSON, truncated.
        public var inputSummary: String
        /// The run's budget at start, when limited.
        public var initialBudget: Quota?
        /// The number of steps.
        public var totalSteps: Int
        /// The run's root span (`pipeline_run`): its trace, its parent (the
        /// caller's span, or a task's launch step) and the sampling decision.
        /// Nil only in events made outside the engine: a recorder then starts a trace.
        public var span: SpanPosition?
        /// The attempt this execution is: 1 for a run or a task's first
        /// execution, then one more for each resume, retry or recovery.
        public var attempt: Int
        /// The attempt before this one, for a resumed, retried or recovered task.
        public var link: AttemptLink?

        /// Creates the fields.
        public init(inputSummary: String, initialBudget: Quota? = nil, totalSteps: Int, span: SpanPosition? = nil, attempt: Int = 1, link: AttemptLink? = nil) {
            self.inputSummary = inputSummary
            self.initialBudget = initialBudget
            self.totalSteps = totalSteps
            self.span = span
            self.attempt = attempt
            self.link = link
        }
    }

    /// Fields of `postRun`.
    public struct RunEnd: Sendable, Hashable {
        /// How the run ended.
        public var status: RunStatus
        /// Wall-clock duration in seconds.
        public var durationSeconds: Double
        /// Usage of the run's own steps.
        public var usage: Usage
        /// Steps that finished (successfully or not).
        public var stepsRun: Int
        /// The error or pause message.
        public var errorMessage: String?
        /// The error category.
        public var errorCategory: ErrorCategory?
        /// A failed task's next attempt is already scheduled (its category is
        /// retryable and attempts are left): this failure is not the final one.
        public var retryScheduled: Bool
        /// For a task: seconds since it was launched, across every attempt so far.
        public var sinceLaunchSeconds: Double?
        /// The run's root span (for exemplars); nil in events made outside the engine.
        public var span: SpanPosition?
        /// For a task: which execution this was, 1 for the first.
        public var attempt: Int

        /// Creates the fields.
        public init(status: RunStatus, durationSeconds: Double, usage: Usage, stepsRun: Int, errorMessage: String? = nil, errorCategory: ErrorCategory? = nil, retryScheduled: Bool = false, sinceLaunchSeconds: Double? = nil, span: SpanPosition? = nil, attempt: Int = 1) {
            self.span = span
            self.attempt = attempt
            self.sinceLaunchSeconds = sinceLaunchSeconds
            self.status = status
            self.durationSeconds = durationSeconds
            self.usage = usage
            self.stepsRun = stepsRun
            self.errorMessage = errorMessage
            self.errorCategory = errorCategory
            self.retryScheduled = retryScheduled
        }
    }

    /// Fields of `preStep`.
    public struct StepStart: Sendable, Hashable {
        /// The step's registered name.
        public var stepName: String
        /// Position in the pipeline.
        public var stepIndex: Int
        /// Sync, or background for a launch.
        public var mode: ExecutionMode
        /// The input as JSON, truncated.
        public var inputSummary: String
        /// 1 for the first attempt.
        public var attemptNumber: Int
        /// The budget left before the step, when limited.
        public var quotaBefore: Quota?
        /// The step's span, a child of its run's; the one `StepContext.span`
        /// hands to the step. Nil only in events made outside the engine.
        public var span: SpanPosition?

        /// Creates the fields.
        public init(stepName: String, stepIndex: Int, mode: ExecutionMode, inputSummary: String, attemptNumber: Int, quotaBefore: Quota? = nil, span: SpanPosition? = nil) {
            self.stepName = stepName
            self.stepIndex = stepIndex
            self.mode = mode
            self.inputSummary = inputSummary
            self.attemptNumber = attemptNumber
            self.quotaBefore = quotaBefore
            self.span = span
        }
    }

    /// One failed attempt that was retried.
    public struct RetryNote: Sendable, Hashable {
        /// The attempt that failed (1-based).
        public var attempt: Int
        /// When it failed, nanoseconds since the epoch.
        public var unixNano: UInt64
        /// Its error message.
        public var message: String
        /// Its error category.
        public var category: ErrorCategory

        /// Creates the fields.
        public init(attempt: Int, unixNano: UInt64, message: String, category: ErrorCategory) {
            self.attempt = attempt
            self.unixNano = unixNano
            self.message = message
            self.category = category
        }
    }

    /// Fields of `postStep`, `onStepFailure` and `onPause`.
    public struct StepEnd: Sendable, Hashable {
        /// The step's registered name.
        public var stepName: String
        /// Position in the pipeline.
        public var stepIndex: Int
        /// Sync, or background for a launch.
        public var mode: ExecutionMode
        /// Whether the step succeeded.
        public var success: Bool
        /// The output as JSON, truncated.
        public var outputSummary: String?
        /// Attempts made.
        public var attempts: Int
        /// Wall-clock duration in seconds.
        public var latencySeconds: Double
        /// Usage the step reported.
        public var usage: Usage
        /// Failure or pause message, or the launch notice.
        public var feedback: String?
        /// The error category on failure or pause.
        public var errorCategory: ErrorCategory?
        /// Earlier attempts that failed and were retried.
        public var retries: [RetryNote]
        /// A failed task's next attempt is already scheduled: not the final failure.
        public var retryScheduled: Bool
        /// The step's span (for exemplars); nil in events made outside the engine.
        public var span: SpanPosition?

        /// Creates the fields.
        public init(stepName: String, stepIndex: Int, mode: ExecutionMode, success: Bool, outputSummary: String? = nil, attempts: Int, latencySeconds: Double, usage: Usage, feedback: String? = nil, errorCategory: ErrorCategory? = nil, retries: [RetryNote], retryScheduled: Bool = false, span: SpanPosition? = nil) {
            self.span = span
            self.retryScheduled = retryScheduled
            self.stepName = stepName
            self.stepIndex = stepIndex
            self.mode = mode
            self.success = success
            self.outputSummary = outputSummary
            self.attempts = attempts
            self.latencySeconds = latencySeconds
            self.usage = usage
            self.feedback = feedback
            self.errorCategory = errorCategory
            self.retries = retries
        }
    }

    /// Fields of `taskLaunched`.
    public struct TaskLaunch: Sendable, Hashable {
        /// The new task's id.
        public var taskID: String
        /// The new task's run id.
        public var taskRunID: String
        /// The step it runs.
        public var stepName: String
        /// The budget it reserved, when limited.
        public var budget: Quota?

        /// Creates the fields.
        public init(taskID: String, taskRunID: String, stepName: String, budget: Quota? = nil) {
            self.taskID = taskID
            self.taskRunID = taskRunID
            self.stepName = stepName
            self.budget = budget
        }
    }

    /// Fields of `taskFinished`.
    public struct TaskEnd: Sendable, Hashable {
        /// The task's id.
        public var taskID: String
        /// The task's run id.
        public var taskRunID: String
        /// The step it ran.
        public var stepName: String
        /// Its final status.
        public var status: RunStatus
        /// Its error message, when any.
        public var errorMessage: String?
        /// Its error category, when any.
        public var errorCategory: ErrorCategory?
        /// Usage it reported.
        public var usage: Usage
        /// Wall-clock duration in seconds.
        public var durationSeconds: Double
        /// Set when recovery found the task's process gone: the attempt that
        /// process ran, whose span recovery ends after the fact.
        public var lostAttempt: TaskTrace?

        /// Creates the fields.
        public init(taskID: String, taskRunID: String, stepName: String, status: RunStatus, errorMessage: String? = nil, errorCategory: ErrorCategory? = nil, usage: Usage, durationSeconds: Double, lostAttempt: TaskTrace? = nil) {
            self.lostAttempt = lostAttempt
            self.taskID = taskID
            self.taskRunID = taskRunID
            self.stepName = stepName
            self.status = status
            self.errorMessage = errorMessage
            self.errorCategory = errorCategory
            self.usage = usage
            self.durationSeconds = durationSeconds
        }
    }
}
