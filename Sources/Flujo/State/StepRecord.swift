/// One executed step of a run, as kept in the `steps` table.
public struct StepRecord: Sendable, Hashable, Codable {
    /// The run the step belongs to.
    public var runID: String
    /// Position of the step in its pipeline.
    public var stepIndex: Int
    /// The step's registered name.
    public var stepName: String
    /// Whether the step succeeded.
    public var success: Bool
    /// Output as JSON, if any.
    public var outputJSON: String?
    /// Attempts the step took.
    public var attempts: Int
    /// Wall-clock duration in seconds.
    public var latencySeconds: Double
    /// Cost in USD the step reported.
    public var costUSD: Double
    /// Tokens the step reported.
    public var tokens: Int
    /// Failure or pause message, launch notice, or other feedback.
    public var feedback: String?
    /// When the step finished.
    public var finishedAt: Timestamp

    /// Creates a step record.
    public init(
        runID: String, stepIndex: Int, stepName: String, success: Bool, outputJSON: String? = nil,
        attempts: Int = 1, latencySeconds: Double = 0, costUSD: Double = 0, tokens: Int = 0,
        feedback: String? = nil, finishedAt: Timestamp = .now
    ) {
        self.runID = runID
        self.stepIndex = stepIndex
        self.stepName = stepName
        self.success = success
        self.outputJSON = outputJSON
        self.attempts = attempts
        self.latencySeconds = latencySeconds
        self.costUSD = costUSD
        self.tokens = tokens
        self.feedback = feedback
        self.finishedAt = finishedAt
    }
}
