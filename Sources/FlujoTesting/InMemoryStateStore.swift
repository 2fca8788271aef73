import Flujo
import Synchronization

/// A `StateStore` in memory, for fast unit tests of code that uses a runner.
///
/// It passes the same conformance suite as the SQLite store (created-at
/// written once, exclusive claims held until released, counters equal to a
/// recount). Like every store it persists what `TaskLifecycle` decides and
/// keeps no rule of its own. Claims are exclusive within this store only.
public final class InMemoryStateStore: StateStore {
    private struct Storage {
        var states: [String: WorkflowState] = [:]
        var steps: [String: [StepRecord]] = [:]
        var backgroundUsage: [String: Usage] = [:]
        var spans: [SpanRecord] = []
        /// Claimed task ids and their owners.
        var claims: [String: String] = [:]
        /// Rows deleted by `prune`.
        var pruned = 0
        /// When a worker may run a failed task again, by run id.
        var nextAttempts: [String: Timestamp] = [:]
        /// Tasks' trace records, by run id.
        var traces: [String: TaskTrace] = [:]
    }

    private let storage = Mutex(Storage())

    /// Creates an empty store.
    public init() {}

    public func save(_ state: WorkflowState, step: StepRecord?, parentUsage: Usage?) async throws {
        storage.withLock { storage in
            var state = state
            storage.nextAttempts[state.runID] = nil
            if let existing = storage.states[state.runID] {
                state.createdAt = existing.createdAt
                state.isBackgroundTask = existing.isBackgroundTask
                state.parentRunID = existing.parentRunID
                state.taskID = existing.taskID
            }
            storage.states[state.runID] = state
            if let step { storage.steps[step.runID, default: []].append(step) }
            if let parentUsage, let parent = state.parentRunID, storage.states[parent] != nil {
                storage.backgroundUsage[parent, default: Usage()] = storage.backgroundUsage[parent, default: Usage()] + parentUsage
            }
        }
    }

    public func save(_ writes: [StateWrite]) async throws {
        for write in writes {
            try await save(write.state, step: write.step, parentUsage: write.parentUsage)
            storage.withLock { storage in
                storage.nextAttempts[write.state.runID] = write.nextAttemptAt
                if let trace = write.trace { storage.traces[write.state.runID] = trace }
            }
        }
    }

    public func claimNextDueTask(owner: String, now: Timestamp, steps: Set<String>?) async throws -> WorkflowState? {
        let due = storage.withLock { storage in
            storage.nextAttempts.filter { $0.value <= now }.sorted { ($0.value, $0.key) < ($1.value, $1.key) }
                .compactMap { storage.states[$0.key] }
                .filter { $0.status == .failed && $0.isBackgroundTask && (steps?.contains($0.stepName ?? "") ?? true) }.compactMap(\.taskID)
        }
        for taskID in due {
            if case let .claimed(state) = try await claimTask(taskID: taskID, owner: owner) { return state }
        }
        return nil
    }

    public func load(runID: String) async throws -> WorkflowState? {
        storage.withLock { $0.states[runID] }
    }

    public func loadTask(taskID: String) async throws -> WorkflowState? {
        storage.withLock { $0.states.values.first { $0.taskID == taskID } }
    }

    public func listBackgroundTasks(_ query: BackgroundTaskQuery) async throws -> [WorkflowState] {
        let all = storage.withLock { Array($0.states.values) }
        let matching = all.filter { state in
            state.isBackgroundTask
                && (query.parentRunID == nil || state.parentRunID == query.parentRunID)
                && (query.statuses == nil || query.statuses!.contains(state.status))
                && (query.updatedSince == nil || state.updatedAt >= query.updatedSince!)
        }.sorted { ($0.updatedAt, $1.runID) > ($1.updatedAt, $0.runID) }
        return Array(matching.dropFirst(max(0, query.offset)).prefix(max(0, query.limit)))
    }

    public func taskIDNeighbors(of taskID: String) async throws -> [String] {
        let ids = storage.withLock { $0.states.values.compactMap(\.taskID) }
        let key = Array(taskID.utf8)
        let byteOrder: (String, String) -> Bool = { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let below = ids.filter { !key.lexicographicallyPrecedes(Array($0.utf8)) }.max(by: byteOrder)
        let above = ids.filter { key.lexicographicallyPrecedes(Array($0.utf8)) }.min(by: byteOrder)
        return [below, above].compactMap { $0 }
    }

    public func taskIDs(withPrefix prefix: String, limit: Int) async throws -> [String] {
        let ids = storage.withLock { $0.states.values.compactMap(\.taskID) }
        return Array(ids.filter { $0.utf8.starts(with: prefix.utf8) }.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }.prefix(max(0, limit)))
    }

    public func claimTask(taskID: String, owner: String) async throws -> ClaimResult {
        storage.withLock { storage in
            guard let state = storage.states.values.first(where: { $0.taskID == taskID }) else { return .notFound }
            if let holder = storage.claims[taskID] { return .notClaimable(status: .running, owner: holder) }
            guard state.status.isResumable else { return .notClaimable(status: state.status, owner: nil) }
            storage.claims[taskID] = owner
            return .claimed(state)
        }
    }

    public func claimedTaskIDs(among taskIDs: [String]) async throws -> Set<String> {
        storage.withLock { storage in Set(taskIDs.filter { storage.claims[$0] != nil }) }
    }

    public func releaseClaim(taskID: String) {
        storage.withLock { _ = $0.claims.removeValue(forKey: taskID) }
    }

    public func heartbeat(runIDs: [String], at time: Timestamp) async throws {
        storage.withLock { storage in
            for id in runIDs where storage.states[id]?.status == .running {
                storage.states[id]?.updatedAt = time
            }
        }
    }

    public func failStaleTasks(heartbeatBefore: Timestamp, applying transition: TaskTransition) async throws -> [EndedTask] {
        storage.withLock { storage in
            var ended: [EndedTask] = []
            for (id, state) in storage.states where state.isRunningTask && state.updatedAt < heartbeatBefore {
                storage.states[id] = transition.applied(to: state)
                storage.nextAttempts[id] = transition.nextAttemptAt
                ended.append(EndedTask(
                    runID: id, taskID: state.taskID ?? "", parentRunID: state.parentRunID, pipelineName: state.pipelineName,
                    pipelineVersion: state.pipelineVersion, stepName: state.stepName ?? "", trace: storage.traces[id]))
            }
            return ended
        }
    }

    public func taskTrace(runID: String) async throws -> TaskTrace? {
        storage.withLock { $0.traces[runID] }
    }

    public func prune(_ policy: PrunePolicy, limit: Int, dryRun: Bool) async throws -> Int {
        storage.withLock { storage in
            let doomed = storage.states.values.filter(policy.prunes).map(\.runID).sorted()
            if dryRun { return doomed.count }
            let taken = doomed.prefix(max(0, limit))
            for runID in taken {
                storage.states[runID] = nil
                storage.steps[runID] = nil
                storage.backgroundUsage[runID] = nil
                storage.spans.removeAll { $0.runID == runID }
                storage.traces[runID] = nil
                storage.pruned += 1
            }
            return taken.count
        }
    }

    /// Tasks in memory live and die with this process: none is ever orphaned.
    public func failOrphanedTasks(applying transition: TaskTransition) async throws -> [EndedTask] { [] }

    public func runTotals(runID: String) async throws -> RunTotals? {
        storage.withLock { storage in
            guard let state = storage.states[runID] else { return nil }
            let background = storage.backgroundUsage[runID] ?? Usage()
            return RunTotals(costUSD: state.costUSD, tokens: state.tokens, backgroundCostUSD: background.costUSD, backgroundTokens: background.tokens)
        }
    }

    public func steps(runID: String) async throws -> [StepRecord] {
        storage.withLock { $0.steps[runID] ?? [] }
    }

    public func workflowStats(now: Timestamp) async throws -> WorkflowStats {
        let counters = try await statusCounters()
        let recent = storage.withLock { storage in
            storage.states.values.filter { $0.createdAt >= now.adding(seconds: -24 * 3600) }.count
        }
        return WorkflowStats(
            totalWorkflows: counters.totalRuns, statusCounts: counters.runs, backgroundStatusCounts: counters.backgroundTasks,
            recentWorkflows24h: recent, averageExecutionTimeMs: counters.durationCount > 0 ? counters.durationSumMs / Double(counters.durationCount) : 0)
    }

    public func statusCounters() async throws -> StatusCounters {
        storage.withLock { storage in
            var runs: [RunStatus: Int] = [:], background: [RunStatus: Int] = [:]
            var sum = 0.0, count = 0
            var oldest: [RunStatus: Timestamp] = [:]
            for state in storage.states.values {
                if state.isBackgroundTask { background[state.status, default: 0] += 1 } else { runs[state.status, default: 0] += 1 }
                if let duration = state.executionTimeMs { sum += duration; count += 1 }
                if state.isBackgroundTask, StatusCounters.agedStatuses.contains(state.status) {
                    oldest[state.status] = min(oldest[state.status] ?? state.updatedAt, state.updatedAt)
                }
            }
            return StatusCounters(
                runs: runs, backgroundTasks: background, totalRuns: storage.states.count, durationSumMs: sum, durationCount: count,
                prunedRuns: storage.pruned, oldestTaskUpdate: oldest)
        }
    }

    public func saveSpans(_ spans: [SpanRecord]) async throws {
        storage.withLock { storage in
            // The last record of each id wins, also within one batch, as with a replace.
            let unique = spans.lastRecordPerSpan
            let ids = Set(unique.map(\.spanID))
            storage.spans.removeAll { ids.contains($0.spanID) }
            storage.spans += unique
        }
    }

    public func spans(runID: String) async throws -> [SpanRecord] {
        storage.withLock { storage in
            let traces = Set(storage.spans.filter { $0.runID == runID }.map(\.traceID))
            return storage.spans.filter { traces.contains($0.traceID) }.sorted { ($0.startUnixNano, $0.spanID) < ($1.startUnixNano, $1.spanID) }
        }
    }
}
