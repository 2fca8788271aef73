/// Errors of the engine and the task operations; each says what to do.
public enum RunnerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No task has this id.
    case unknownTask(String, suggestions: [String])
    /// The task is completed, or otherwise not resumable.
    case notResumable(taskID: String, status: RunStatus)
    /// Another resumer (or the original execution) holds the task now.
    case alreadyBeingResumed(taskID: String, owner: String?)
    /// The task's step is not registered in this process.
    case stepNotRegistered(taskID: String, stepName: String, registered: [String])
    /// `enable_resumability` is off.
    case resumabilityDisabled
    /// The runner was closed.
    case closed
    /// A resumed step ran, but its outcome could not be written; the task keeps its stored state.
    case outcomeNotPersisted(taskID: String, status: RunStatus, reason: String)
    /// A task id longer than any this library makes.
    case invalidTaskID(length: Int, limit: Int)
    /// `run(..., runID:)` was given the id of a run the store keeps already.
    case runExists(runID: String, status: RunStatus)

    public var description: String {
        switch self {
        case let .unknownTask(id, suggestions):
            let hint = suggestions.isEmpty ? " List tasks with `flujo tasks list`." : " Did you mean \(suggestions.joined(separator: ", "))?"
            return "no background task with id '\(id)'.\(hint)"
        case let .notResumable(id, status):
            return "task '\(id)' is \(status.rawValue); only failed, paused or cancelled tasks can be resumed."
        case let .alreadyBeingResumed(id, owner):
            return "task '\(id)' is already being resumed\(owner.map { " by \($0)" } ?? "") (or is still running). Try again when it has finished."
        case let .stepNotRegistered(id, step, registered):
            return "task '\(id)' runs step '\(step)', which is not registered in this process (registered: \(registered.isEmpty ? "none" : registered.joined(separator: ", "))). Register the step before resuming."
        case .resumabilityDisabled:
            return "resuming background tasks is switched off ([background_tasks] enable_resumability = false)."
        case .closed:
            return "the runner is closed (or closing): it starts no new run."
        case let .outcomeNotPersisted(id, status, reason):
            return "task '\(id)' ran and ended \(status.rawValue), but its outcome could not be written (\(reason)); the task keeps its stored state and can be resumed again once the store accepts writes."
        case let .runExists(id, status):
            return "a run with id '\(id)' exists already (\(status.rawValue)); run ids are unique. Pass a new one, or none to have one made."
        case let .invalidTaskID(length, limit):
            return "that task id is \(length) bytes long; task ids have at most \(limit) (they look like bg_ and 32 hex digits). List tasks with `flujo tasks list`."
        }
    }
}
