/// Why a step or task failed, as persisted in `error_category` and exported
/// in telemetry (`flujo.error.category`).
public enum ErrorCategory: String, Sendable, Hashable, Codable, CaseIterable {
    /// A pause or an abort requested by a step or a hook, not a fault.
    case controlFlow = "control_flow"
    /// A connection could not be made or was lost.
    case network
    /// Something took longer than allowed.
    case timeout
    /// A service asked the caller to slow down.
    case rateLimit = "rate_limit"
    /// The input or output did not have the expected form.
    case validation
    /// The caller could not prove who it is.
    case authentication
    /// The caller is known but not allowed.
    case authorization
    /// A budget, quota, memory or disk limit was reached.
    case resourceExhaustion = "resource_exhaustion"
    /// Settings or setup are wrong.
    case configuration
    /// A service the step depends on answered with an error.
    case externalService = "external_service"
    /// Stored or received data is damaged.
    case dataCorruption = "data_corruption"
    /// The work was cancelled.
    case cancelled
    /// The process running the work ended before it finished (crashed, killed, or its host went away).
    case lostWorker = "lost_worker"
    /// The operating system or runtime failed.
    case system
    /// None of the above.
    case unknown
}
