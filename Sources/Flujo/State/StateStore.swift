/// Where runs, background tasks, step results and spans are persisted.
///
/// A store persists what the engine and `TaskLifecycle` decide; it decides no
/// transition itself. Every store passes the same conformance suite
/// (`Tests/FlujoTestSupport/StateStoreConformance.swift`). The core speaks only this protocol; `FlujoSQLite` implements it on a SQLite
/// file and `FlujoTesting` in memory. Every method may be called from many
/// tasks at once, and an implementation that shares its storage between
/// processes must make `claimTask` exclusive across them.
public protocol StateStore: Sendable {
    /// Inserts or replaces a run's state, appends `step` to its step log and adds
    /// `parentUsage` to the totals of its parent run, all in one transaction.
    /// What identifies an existing row never changes: its `createdAt`,
    /// `isBackgroundTask`, `parentRunID` and `taskID` stay as first saved.
    func save(_ state: WorkflowState, step: StepRecord?, parentUsage: Usage?) async throws

    /// Saves several states in one transaction (a launch and its parent's step).
    func save(_ writes: [StateWrite]) async throws

    /// The state of a run, or nil when there is none.
    func load(runID: String) async throws -> WorkflowState?

    /// The state of the background task with this task id, or nil.
    func loadTask(taskID: String) async throws -> WorkflowState?

    /// Background tasks matching the query, newest `updatedAt` first.
    func listBackgroundTasks(_ query: BackgroundTaskQuery) async throws -> [WorkflowState]

    /// The stored task ids next to `taskID` in byte order: the greatest one not
    /// above it and the least one above it (either may be absent). The ids
    /// sharing the longest prefix with `taskID` are found from these two.
    func taskIDNeighbors(of taskID: String) async throws -> [String]

    /// Task ids that start with `prefix`, in order, at most `limit`.
    func taskIDs(withPrefix prefix: String, limit: Int) async throws -> [String]

    /// Takes a resumable (failed, paused or cancelled) task for one owner, to
    /// run it again. Of several concurrent callers, in any process, exactly one
    /// gets `.claimed`, and no one else gets it until that claim is released
    /// with `releaseClaim(taskID:)` or the claiming process ends. The claim is
    /// not written to the task's row: the row keeps its status until the
    /// resumer saves the outcome, and a resumer that dies leaves the task
    /// resumable at once. `.claimed` carries the task as stored, read after the
    /// claim was taken (so it reflects whatever the previous holder saved).
    func claimTask(taskID: String, owner: String) async throws -> ClaimResult

    /// Ends a claim taken with `claimTask`, after the resume saved its outcome
    /// (or gave up). Does nothing when this store does not hold it.
    func releaseClaim(taskID: String)

    /// `releaseClaim(taskID:)` without blocking a thread while a store over a
    /// network ends the claim; the claim is free when it returns.
    func endClaim(taskID: String) async

    /// Which of these tasks are claimed now, by any store in any process:
    /// the tasks being resumed, whose rows still show their old status.
    func claimedTaskIDs(among taskIDs: [String]) async throws -> Set<String>

    /// Records that running tasks are alive: sets `updatedAt` (the heartbeat).
    func heartbeat(runIDs: [String], at time: Timestamp) async throws

    /// Applies `transition` (decided by `TaskLifecycle.stale`) to every running
    /// background task whose heartbeat (`updatedAt`) is older than
    /// `heartbeatBefore` and that records no live owner, in one transaction.
    /// A store that knows the process running each task (see
    /// `failOrphanedTasks`) leaves those tasks to that rule. Returns the tasks it changed.
    func failStaleTasks(heartbeatBefore: Timestamp, applying transition: TaskTransition) async throws -> [EndedTask]

    /// Applies `transition` (decided by `TaskLifecycle.orphaned`) to every
    /// running background task whose process has ended, whatever its
    /// heartbeat says, and never to one whose process lives. Returns the tasks
    /// it changed. A store whose tasks cannot outlive their process (in memory)
    /// changes none.
    func failOrphanedTasks(applying transition: TaskTransition) async throws -> [EndedTask]

    /// `failStaleTasks`, for a caller that needs only how many tasks changed
    /// (no sink listens for `taskFinished`): the store need not read the tasks back.
    func failStaleTaskCount(heartbeatBefore: Timestamp, applying transition: TaskTransition) async throws -> Int

    /// `failOrphanedTasks`, for a caller that needs only how many tasks changed.
    func failOrphanedTaskCount(applying transition: TaskTransition) async throws -> Int

    /// Applies `transition` (decided by `TaskLifecycle.orphanedRun`) to every
    /// running foreground run whose process has ended, its row in `runs`
    /// included, and never to one whose process lives. Returns how many runs
    /// it changed. The default changes none: a store that records no owner
    /// for runs (or whose runs cannot outlive their process) keeps it.
    func failOrphanedRuns(applying transition: TaskTransition) async throws -> Int

    /// Applies `transition` (decided by `TaskLifecycle.staleRun`) to every
    /// running foreground run that records no process (a row of an earlier
    /// version, which did not record one for runs) and was last updated before
    /// `updatedBefore`, its row in `runs` included. Returns how many runs it
    /// changed. The default changes none.
    func failStaleRuns(updatedBefore: Timestamp, applying transition: TaskTransition) async throws -> Int

    /// The trace record a task keeps (written by a `StateWrite` that carries one), or nil.
    func taskTrace(runID: String) async throws -> TaskTrace?


    /// Claims the failed task that has waited longest for its next attempt
    /// (`StateWrite.nextAttemptAt` at or before `now`), as `claimTask` claims:
    /// exclusive across processes, held until `releaseClaim`. Only tasks whose
    /// step is one of `steps` (nil: any step; empty: none), passing older ones
    /// of other steps over, so a worker never takes, again and again, a task it
    /// cannot run while others wait behind it. Nil when no such task is due.
    func claimNextDueTask(owner: String, now: Timestamp, steps: Set<String>?) async throws -> WorkflowState?

    /// Deletes up to `limit` runs and tasks that `policy` prunes (`PrunePolicy.prunes`),
    /// with their step logs and spans, in one transaction; the counters follow.
    /// With `dryRun`, deletes nothing and counts every row it would delete.
    /// Returns how many rows it deleted (or would).
    func prune(_ policy: PrunePolicy, limit: Int, dryRun: Bool) async throws -> Int

    /// A run's usage totals, its own and its background tasks'.
    func runTotals(runID: String) async throws -> RunTotals?

    /// The step log of a run, in order.
    func steps(runID: String) async throws -> [StepRecord]

    /// Totals per status, recent runs and mean duration, from maintained counters.
    func workflowStats(now: Timestamp) async throws -> WorkflowStats

    /// The per-status counters alone; O(1), for metric scrapes.
    func statusCounters() async throws -> StatusCounters

    /// Persists finished spans.
    func saveSpans(_ spans: [SpanRecord]) async throws

    /// Every span of the trace that contains the run's spans, ordered by start.
    func spans(runID: String) async throws -> [SpanRecord]

    /// A worker's idle wait: returns when work may have become due, or after
    /// `timeout`. A store that is told when a task becomes due (PostgreSQL's
    /// `LISTEN/NOTIFY`) returns early; the default waits the whole time.
    func waitForDueWork(upTo timeout: Duration) async
}

extension StateStore {
    /// Counts what `failStaleTasks` returns.
    public func failStaleTaskCount(heartbeatBefore: Timestamp, applying transition: TaskTransition) async throws -> Int {
        try await failStaleTasks(heartbeatBefore: heartbeatBefore, applying: transition).count
    }

    /// Counts what `failOrphanedTasks` returns.
    public func failOrphanedTaskCount(applying transition: TaskTransition) async throws -> Int {
        try await failOrphanedTasks(applying: transition).count
    }

    /// Changes none (see the requirement).
    public func failOrphanedRuns(applying transition: TaskTransition) async throws -> Int { 0 }

    /// Changes none (see the requirement).
    public func failStaleRuns(updatedBefore: Timestamp, applying transition: TaskTransition) async throws -> Int { 0 }

    /// The next due task of any step.
    public func claimNextDueTask(owner: String, now: Timestamp) async throws -> WorkflowState? {
        try await claimNextDueTask(owner: owner, now: now, steps: nil)
    }

    /// Ends the claim with `releaseClaim(taskID:)`.
    public func endClaim(taskID: String) async {
        releaseClaim(taskID: taskID)
    }

    /// Waits the whole time: the worker polls.
    public func waitForDueWork(upTo timeout: Duration) async {
        try? await Task.sleep(for: timeout)
    }
}

/// One state to save, with the step to append and the usage to add to its parent.
public struct StateWrite: Sendable, Hashable {
    /// The state.
    public var state: WorkflowState
    /// A step to append to its log.
    public var step: StepRecord?
    /// Usage to add to the parent run's totals.
    public var parentUsage: Usage?
    /// When a worker may run the task again (`TaskLifecycle.nextAttempt`); nil: not scheduled.
    public var nextAttemptAt: Timestamp?
    /// The task's trace record, written with a launch and with each later attempt's
    /// outcome; nil keeps the stored one.
    public var trace: TaskTrace?

    /// Creates a write.
    public init(_ state: WorkflowState, step: StepRecord? = nil, parentUsage: Usage? = nil, nextAttemptAt: Timestamp? = nil, trace: TaskTrace? = nil) {
        self.state = state
        self.step = step
        self.parentUsage = parentUsage
        self.nextAttemptAt = nextAttemptAt
        self.trace = trace
    }
}

extension StateWrite {
    /// A step of a running run: what changes is the run's progress (its step
    /// index, context, last output, usage, time) and the step appended to its log.
    public var isProgress: Bool { step != nil && state.status == .running }
}

extension Array where Element == StateWrite {
    /// For each write, whether its progress is replaced by the next write of the
    /// same run in this batch, itself a step of the running run. A store that
    /// commits the batch in one transaction need only append such a write's step
    /// (and add its parent usage): the run's row ends the same. A launch group
    /// writes its parent's progress once per launched step; only the last counts.
    public var progressReplacedLater: [Bool] {
        var replaced = Array<Bool>(repeating: false, count: count)
        // A lone write (a task's outcome, a run's start or end) replaces nothing.
        guard count > 1 else { return replaced }
        // Runs whose next write, in the part already walked (backwards), is a progress write.
        var nextIsProgress: Set<String> = []
        for index in indices.reversed() {
            // Fields read in place: a whole write is large to copy.
            if self[index].isProgress {
                replaced[index] = !nextIsProgress.insert(self[index].state.runID).inserted
            } else {
                nextIsProgress.remove(self[index].state.runID)
            }
        }
        return replaced
    }
}

/// A running task a bulk transition ended (stale or orphaned): who it was,
/// and the attempt its process was running, so that attempt's span can be ended.
public struct EndedTask: Sendable, Hashable {
    /// The task's run id.
    public var runID: String
    /// The task id.
    public var taskID: String
    /// The run that launched it.
    public var parentRunID: String?
    /// Its pipeline.
    public var pipelineName: String
    /// Its pipeline's version.
    public var pipelineVersion: String
    /// The step it runs.
    public var stepName: String
    /// Its trace record, when it keeps one.
    public var trace: TaskTrace?

    /// Creates the record.
    public init(runID: String, taskID: String, parentRunID: String?, pipelineName: String, pipelineVersion: String, stepName: String, trace: TaskTrace?) {
        self.runID = runID
        self.taskID = taskID
        self.parentRunID = parentRunID
        self.pipelineName = pipelineName
        self.pipelineVersion = pipelineVersion
        self.stepName = stepName
        self.trace = trace
    }
}

/// Filters for listing background tasks.
public struct BackgroundTaskQuery: Sendable, Hashable {
    /// Only tasks launched by this run.
    public var parentRunID: String?
    /// Only tasks in one of these states (nil: any).
    public var statuses: Set<RunStatus>?
    /// Only tasks last updated at or after this time.
    public var updatedSince: Timestamp?
    /// At most this many rows.
    public var limit: Int
    /// Skip this many rows first.
    public var offset: Int

    /// Creates a query; by default every task, 1000 at most.
    public init(parentRunID: String? = nil, statuses: Set<RunStatus>? = nil, updatedSince: Timestamp? = nil, limit: Int = 1000, offset: Int = 0) {
        self.parentRunID = parentRunID
        self.statuses = statuses
        self.updatedSince = updatedSince
        self.limit = limit
        self.offset = offset
    }
}

/// The outcome of `StateStore.claimTask`.
public enum ClaimResult: Sendable, Hashable {
    /// This caller holds the task; the state is the task as stored.
    case claimed(WorkflowState)
    /// No task has that id.
    case notFound
    /// The task exists but is not resumable now: its stored status, or
    /// `running` when another claim holds it (with the owner when that claim
    /// is in this process).
    case notClaimable(status: RunStatus, owner: String?)
}

/// Usage totals of a run.
public struct RunTotals: Sendable, Hashable, Codable {
    /// Cost in USD of the run's own steps.
    public var costUSD: Double
    /// Tokens of the run's own steps.
    public var tokens: Int
    /// Cost in USD its background tasks reported.
    public var backgroundCostUSD: Double
    /// Tokens its background tasks reported.
    public var backgroundTokens: Int

    /// Creates totals.
    public init(costUSD: Double, tokens: Int, backgroundCostUSD: Double, backgroundTokens: Int) {
        self.costUSD = costUSD
        self.tokens = tokens
        self.backgroundCostUSD = backgroundCostUSD
        self.backgroundTokens = backgroundTokens
    }
}

extension StateStore {
    /// Inserts or replaces a run's state.
    public func save(_ state: WorkflowState) async throws {
        try await save(state, step: nil, parentUsage: nil)
    }

    /// Inserts or replaces a run's state and appends `step` to its step log.
    public func save(_ state: WorkflowState, step: StepRecord?) async throws {
        try await save(state, step: step, parentUsage: nil)
    }
}
