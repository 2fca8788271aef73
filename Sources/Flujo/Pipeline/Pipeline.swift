/// How a pipeline step runs.
public enum ExecutionMode: String, Sendable, Hashable, Codable {
    /// In the run, one after the other.
    case sync
    /// Launched as a background task; the run goes on with the step's input.
    case background
}

/// How often and how patiently a failing step is tried again.
public struct RetryPolicy: Sendable, Hashable {
    /// Total attempts, the first included (1: no retry).
    public var maxAttempts: Int
    /// Delay before the second attempt; doubles each time.
    public var baseDelay: Duration
    /// Upper bound of one delay.
    public var maxDelay: Duration
    /// Fraction of each delay drawn at random (0: none, 1: full jitter).
    public var jitter: Double

    /// No retry.
    public static let none = RetryPolicy(maxAttempts: 1)

    /// Creates a policy.
    public init(maxAttempts: Int, baseDelay: Duration = .milliseconds(200), maxDelay: Duration = .seconds(30), jitter: Double = 0.5) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.jitter = min(max(jitter, 0), 1)
    }

    /// The delay after failed attempt number `attempt` (1-based): exponential, capped, jittered.
    public func delay(afterAttempt attempt: Int, random: Double = Double.random(in: 0..<1)) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        // Compared before multiplying, so no base delay can overflow.
        let capped = baseDelay >= maxDelay / (1 << exponent) ? maxDelay : baseDelay * (1 << exponent)
        return capped * (1 - min(max(jitter, 0), 1) * min(max(random, 0), 1))
    }
}

/// One step of a pipeline with how it runs.
public struct PipelineStep: Sendable {
    /// The step.
    public let step: AnyStep
    /// Sync or background.
    public let mode: ExecutionMode
    /// Retries of a failing attempt (sync steps, and each background execution).
    public let retry: RetryPolicy

    /// Creates a pipeline step from an erased step.
    public init(_ step: AnyStep, mode: ExecutionMode = .sync, retry: RetryPolicy = .none) {
        self.step = step
        self.mode = mode
        self.retry = retry
    }

    /// A step run in order.
    public static func run<I, O>(_ step: Step<I, O>, retry: RetryPolicy = .none) -> PipelineStep {
        PipelineStep(step.erased, mode: .sync, retry: retry)
    }

    /// A step launched as a background task.
    public static func background<I, O>(_ step: Step<I, O>, retry: RetryPolicy = .none) -> PipelineStep {
        PipelineStep(step.erased, mode: .background, retry: retry)
    }
}

/// An ordered composition of steps with a name and a version.
public struct Pipeline: Sendable {
    /// The pipeline name, exported as `flujo.pipeline.name`.
    public let name: String
    /// The pipeline version, exported as `flujo.pipeline.version`.
    public let version: String
    /// The steps, in order.
    public let steps: [PipelineStep]

    /// Creates a pipeline.
    public init(name: String, version: String = "1", steps: [PipelineStep]) {
        self.name = name
        self.version = version
        self.steps = steps
    }
}
