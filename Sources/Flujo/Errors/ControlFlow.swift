/// Thrown by a step (or `StepContext.pause`) to stop for approval or input.
/// The run or task becomes `paused`, category control_flow, and can be resumed.
public struct PausedSignal: Error, Sendable, Hashable, CustomStringConvertible {
    /// Why the step paused, shown to the operator.
    public var message: String

    /// Creates a pause signal.
    public init(_ message: String) { self.message = message }

    public var description: String { "paused: \(message)" }
}

/// Thrown by a step or a hook sink to stop the pipeline gracefully: the run
/// becomes `failed`, category control_flow, with the steps done so far.
public struct PipelineAbortSignal: Error, Sendable, Hashable, CustomStringConvertible {
    /// Why the pipeline was stopped.
    public var reason: String

    /// Creates an abort signal.
    public init(_ reason: String) { self.reason = reason }

    public var description: String { "aborted: \(reason)" }
}

/// An error that knows its own category and whether trying again can help.
public protocol CategorizedError: Error {
    /// The category persisted and exported for this error.
    var category: ErrorCategory { get }
    /// Whether a retry may succeed.
    var isRetryable: Bool { get }
}

extension CategorizedError {
    /// By default, network, timeout, rate-limit and external-service errors are retryable.
    public var isRetryable: Bool { category.isTransient }
}

extension ErrorCategory {
    /// Whether errors of this category are usually worth retrying.
    public var isTransient: Bool {
        switch self {
        case .network, .timeout, .rateLimit, .externalService, .lostWorker: return true
        default: return false
        }
    }
}
