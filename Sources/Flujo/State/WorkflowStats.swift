/// Totals over the state store, kept as counters so reading them never scans runs.
public struct WorkflowStats: Sendable, Hashable, Codable {
    /// Runs of every kind, background tasks included.
    public var totalWorkflows: Int
    /// Foreground runs per status.
    public var statusCounts: [RunStatus: Int]
    /// Background tasks per status.
    public var backgroundStatusCounts: [RunStatus: Int]
    /// Runs created in the last 24 hours.
    public var recentWorkflows24h: Int
    /// Mean of `execution_time_ms` over runs that recorded it; 0 when none did.
    public var averageExecutionTimeMs: Double

    /// Creates stats.
    public init(
        totalWorkflows: Int, statusCounts: [RunStatus: Int], backgroundStatusCounts: [RunStatus: Int],
        recentWorkflows24h: Int, averageExecutionTimeMs: Double
    ) {
        self.totalWorkflows = totalWorkflows
        self.statusCounts = statusCounts
        self.backgroundStatusCounts = backgroundStatusCounts
        self.recentWorkflows24h = recentWorkflows24h
        self.averageExecutionTimeMs = averageExecutionTimeMs
    }
}

/// What the Prometheus endpoint reads on every scrape: counters only.
public struct StatusCounters: Sendable, Hashable {
    /// Foreground runs per status.
    public var runs: [RunStatus: Int]
    /// Background tasks per status.
    public var backgroundTasks: [RunStatus: Int]
    /// Runs ever persisted (background tasks included).
    public var totalRuns: Int
    /// Sum and count of recorded run durations, in milliseconds.
    public var durationSumMs: Double
    /// Number of runs that recorded a duration.
    public var durationCount: Int
    /// Runs (background tasks included) deleted by retention; `totalRuns + prunedRuns` never decreases.
    public var prunedRuns: Int
    /// The oldest `updatedAt` of the background tasks that are failed, paused
    /// and running (for a running task, its heartbeat), read through an index:
    /// what "the oldest failed task" and "a stalled worker" alerts watch.
    public var oldestTaskUpdate: [RunStatus: Timestamp]

    /// The statuses `oldestTaskUpdate` covers.
    public static let agedStatuses: [RunStatus] = [.failed, .paused, .running]

    /// Creates counters.
    public init(
        runs: [RunStatus: Int], backgroundTasks: [RunStatus: Int], totalRuns: Int, durationSumMs: Double, durationCount: Int,
        prunedRuns: Int = 0, oldestTaskUpdate: [RunStatus: Timestamp] = [:]
    ) {
        self.oldestTaskUpdate = oldestTaskUpdate
        self.prunedRuns = prunedRuns
        self.runs = runs
        self.backgroundTasks = backgroundTasks
        self.totalRuns = totalRuns
        self.durationSumMs = durationSumMs
        self.durationCount = durationCount
    }
}
