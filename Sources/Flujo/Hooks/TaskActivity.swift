/// What a hook event says about the lifecycle of a background task, for
/// metrics: one reading of the events, shared by every metrics sink.
public enum TaskActivity: Sendable, Hashable {
    /// A task's first execution started.
    case started
    /// An execution started by a resume.
    case resumed
    /// An execution started as a retry (`tasks retry`, or a worker after the backoff or a recovery).
    case retried
    /// An execution completed: the task's end; `attempts` executions in all.
    case completed(attempts: Int, sinceLaunchSeconds: Double?)
    /// An execution failed; `final` when no next attempt is scheduled (then
    /// `attempts` executions in all).
    case failed(category: ErrorCategory, final: Bool, attempts: Int, sinceLaunchSeconds: Double?)
    /// An execution was cancelled.
    case cancelled
    /// Recovery found the task's process gone and failed the attempt it ran.
    case recovered(category: ErrorCategory)

    /// The activity an event reports, if it is about a task.
    public init?(_ event: HookEvent) {
        guard event.taskID != nil else { return nil }
        switch event.payload {
        case let .preRun(start):
            switch start.link?.kind {
            case nil:
                guard start.attempt == 1 else { return nil }
                self = .started
            case .resume: self = .resumed
            case .retry, .recovery: self = .retried
            }
        case let .postRun(end):
            switch end.status {
            case .completed: self = .completed(attempts: end.attempt, sinceLaunchSeconds: end.sinceLaunchSeconds)
            case .cancelled: self = .cancelled
            case .failed:
                self = .failed(category: end.errorCategory ?? .unknown, final: !end.retryScheduled, attempts: end.attempt, sinceLaunchSeconds: end.sinceLaunchSeconds)
            default: return nil
            }
        case let .taskFinished(end):
            guard end.status == .failed, end.lostAttempt != nil || end.errorCategory == .lostWorker else { return nil }
            self = .recovered(category: end.errorCategory ?? .lostWorker)
        default:
            return nil
        }
    }
}

/// Label rules every metrics sink follows.
public enum MetricLabels {
    /// The `step` label of step names past a sink's bound on distinct names.
    public static let otherStep = "other"
}
