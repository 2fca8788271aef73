/// The lifecycle state of a run or a background task.
public enum RunStatus: String, Sendable, Hashable, Codable, CaseIterable {
    /// Executing now (for a background task: launched and heartbeating).
    case running
    /// Stopped by a step that asked for approval or input; resumable.
    case paused
    /// Finished successfully.
    case completed
    /// Finished with an error; resumable.
    case failed
    /// Stopped before finishing (for example at shutdown); resumable.
    case cancelled

    /// Whether a background task in this state may be resumed.
    public var isResumable: Bool { self == .failed || self == .paused || self == .cancelled }

    /// Whether the run has come to an end (it may still be resumed).
    public var isTerminal: Bool { self != .running }
}
