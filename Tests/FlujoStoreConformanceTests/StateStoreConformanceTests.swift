import Flujo
import Foundation
import Testing

/// The contract of `StateStore`, checked against every store in `StoreKind`.
/// A store is done when it passes this suite unchanged.
@Suite("State store conformance")
struct StateStoreConformanceTests {
    // MARK: - Fixtures

    /// A background task with every field set to a distinct value.
    static func task(
        _ id: String, parent: String = "run-1", status: RunStatus = .failed, updatedAt: Timestamp = Timestamp(millisecondsSince1970: 1_700_000_100_000),
        createdAt: Timestamp = Timestamp(millisecondsSince1970: 1_700_000_000_000), duration: Double? = 12.5
    ) -> WorkflowState {
        WorkflowState(
            runID: Identifiers.taskRunID(parentRunID: parent, taskID: id), pipelineName: "orders", pipelineVersion: "2.1",
            pipelineID: "orders-v2", currentStepIndex: 1, contextJSON: #"{"customer":"ada \"quoted\" ☃"}"#,
            lastStepOutputJSON: #"{"ok":true}"#, stepHistoryJSON: #"[{"name":"send_receipt"}]"#, status: status,
            createdAt: createdAt, updatedAt: updatedAt, totalSteps: 1, errorMessage: status == .completed ? nil : "connection reset",
            executionTimeMs: duration, memoryUsageMB: 42.25, metadataJSON: #"{"task_id":"\#(id)"}"#, isBackgroundTask: true,
            parentRunID: parent, taskID: id, errorCategory: status == .completed ? nil : .network, attempts: 2,
            resumedFrom: "paused", stepName: "send_receipt", costUSD: 0.25, tokens: 1234)
    }

    static func run(_ id: String, status: RunStatus = .running, createdAt: Timestamp = .now) -> WorkflowState {
        WorkflowState(runID: id, pipelineName: "orders", status: status, createdAt: createdAt, totalSteps: 3, attempts: 1)
    }

    /// The counters recomputed from the rows, read back one by one through `load`.
    static func recount(_ store: any StateStore, runIDs: [String]) async throws -> StatusCounters {
        var runs: [RunStatus: Int] = [:], background: [RunStatus: Int] = [:]
        var sum = 0.0, count = 0, total = 0
        var oldest: [RunStatus: Timestamp] = [:]
        for id in Set(runIDs) {
            guard let state = try await store.load(runID: id) else { continue }
            total += 1
            if state.isBackgroundTask { background[state.status, default: 0] += 1 } else { runs[state.status, default: 0] += 1 }
            if let duration = state.executionTimeMs { sum += duration; count += 1 }
            if state.isBackgroundTask, StatusCounters.agedStatuses.contains(state.status) {
                oldest[state.status] = min(oldest[state.status] ?? state.updatedAt, state.updatedAt)
            }
        }
        return StatusCounters(runs: runs, backgroundTasks: background, totalRuns: total, durationSumMs: sum, durationCount: count, oldestTaskUpdate: oldest)
    }

    static func nonZero(_ counts: [RunStatus: Int]) -> [RunStatus: Int] { counts.filter { $0.value != 0 } }

    static func expectCountersMatch(_ store: any StateStore, _ runIDs: [String], sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let counters = try await store.statusCounters()
        let expected = try await recount(store, runIDs: runIDs)
        #expect(nonZero(counters.runs) == nonZero(expected.runs), sourceLocation: sourceLocation)
        #expect(nonZero(counters.backgroundTasks) == nonZero(expected.backgroundTasks), sourceLocation: sourceLocation)
        #expect(counters.totalRuns == expected.totalRuns, sourceLocation: sourceLocation)
        #expect(counters.durationCount == expected.durationCount, sourceLocation: sourceLocation)
        #expect(counters.oldestTaskUpdate == expected.oldestTaskUpdate, "the oldest failed, paused and running tasks", sourceLocation: sourceLocation)
        #expect(abs(counters.durationSumMs - expected.durationSumMs) < 1e-6, sourceLocation: sourceLocation)
    }

    // MARK: - Rows

    @Test("a saved task reads back field for field, by run id and by task id", arguments: StoreKind.allCases)
    func roundTrip(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let task = Self.task("bg_0123")
        try await store.save(task)
        #expect(try await store.load(runID: task.runID) == task)
        #expect(try await store.loadTask(taskID: "bg_0123") == task)
        #expect(try await store.load(runID: "missing") == nil)
        #expect(try await store.loadTask(taskID: "missing") == nil)
    }

    @Test("created_at, the background flag, the parent and the task id are written once", arguments: StoreKind.allCases)
    func identityKept(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let original = Self.task("bg_1")
        try await store.save(original)
        var rewritten = original
        rewritten.createdAt = Timestamp(millisecondsSince1970: 1)
        rewritten.isBackgroundTask = false
        rewritten.parentRunID = "someone-else"
        rewritten.taskID = "bg_other"
        rewritten.status = .completed
        rewritten.errorMessage = nil
        try await store.save(rewritten)
        let stored = try #require(try await store.load(runID: original.runID))
        #expect(stored.createdAt == original.createdAt)
        #expect(stored.isBackgroundTask && stored.parentRunID == "run-1" && stored.taskID == "bg_1")
        #expect(stored.status == .completed && stored.errorMessage == nil)
    }

    @Test("ids and texts with quotes, SQL, control characters and non-ASCII are kept exactly", arguments: StoreKind.allCases)
    func hostileText(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let ids = ["x'); DROP TABLE workflow_state; --", "☃ snow\u{0}man", "tab\there\nnewline\u{1B}[31m", "", String(repeating: "z", count: 4096)]
        for (index, id) in ids.enumerated() {
            var task = Self.task(id, parent: "p\(index)")
            task.errorMessage = id
            try await store.save(task)
            #expect(try await store.loadTask(taskID: id) == task, "\(id.debugDescription)")
        }
        #expect(try await store.listBackgroundTasks(BackgroundTaskQuery()).count == ids.count)
    }

    // MARK: - Listings

    @Test("listings: newest update first, ties by run id; every filter, limit and offset", arguments: StoreKind.allCases)
    func listings(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let base = Timestamp(millisecondsSince1970: 1_700_000_000_000)
        let statuses: [RunStatus] = [.failed, .paused, .completed, .running, .cancelled]
        var saved: [WorkflowState] = []
        for index in 0..<20 {
            let task = Self.task(
                String(format: "bg_%02d", index), parent: index.isMultiple(of: 2) ? "even" : "odd",
                status: statuses[index % statuses.count], updatedAt: base.adding(seconds: Double(index / 2)))
            saved.append(task)
        }
        try await store.save(saved.shuffled().map { StateWrite($0) })
        try await store.save(Self.run("foreground", status: .failed))
        let expectedOrder = saved.sorted { ($0.updatedAt, $1.runID) > ($1.updatedAt, $0.runID) }

        #expect(try await store.listBackgroundTasks(BackgroundTaskQuery()).map(\.runID) == expectedOrder.map(\.runID))
        let odd = try await store.listBackgroundTasks(BackgroundTaskQuery(parentRunID: "odd"))
        #expect(odd.map(\.runID) == expectedOrder.filter { $0.parentRunID == "odd" }.map(\.runID))
        let failedOrPaused = try await store.listBackgroundTasks(BackgroundTaskQuery(statuses: [.failed, .paused]))
        #expect(failedOrPaused.map(\.runID) == expectedOrder.filter { $0.status == .failed || $0.status == .paused }.map(\.runID))
        let since = base.adding(seconds: 5)
        let recent = try await store.listBackgroundTasks(BackgroundTaskQuery(parentRunID: "even", statuses: [.failed, .completed, .running], updatedSince: since))
        #expect(recent.map(\.runID) == expectedOrder.filter {
            $0.parentRunID == "even" && [.failed, .completed, .running].contains($0.status) && $0.updatedAt >= since
        }.map(\.runID))
        let page = try await store.listBackgroundTasks(BackgroundTaskQuery(limit: 5, offset: 3))
        #expect(page.map(\.runID) == Array(expectedOrder.dropFirst(3).prefix(5)).map(\.runID))
        #expect(try await store.listBackgroundTasks(BackgroundTaskQuery(statuses: [])).isEmpty)
        #expect(try await store.listBackgroundTasks(BackgroundTaskQuery(limit: 0)).isEmpty)
        // Nonsense paging is empty or clamped, never a crash.
        #expect(try await store.listBackgroundTasks(BackgroundTaskQuery(limit: -5)).isEmpty)
        #expect(try await store.listBackgroundTasks(BackgroundTaskQuery(limit: 3, offset: -7)).count == 3)
        #expect(try await store.listBackgroundTasks(BackgroundTaskQuery(offset: Int.max)).isEmpty)
    }

    @Test("task ids by prefix and by neighbour, in byte order", arguments: StoreKind.allCases)
    func taskIDLookups(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        for id in ["bg_abc1", "bg_abc2", "bg_abd0", "bg_b", "bg_Z", "bg_é"] { try await store.save(Self.task(id, parent: id)) }
        #expect(try await store.taskIDs(withPrefix: "bg_abc", limit: 10) == ["bg_abc1", "bg_abc2"])
        #expect(try await store.taskIDs(withPrefix: "bg_", limit: 3) == ["bg_Z", "bg_abc1", "bg_abc2"])
        #expect(try await store.taskIDs(withPrefix: "nope", limit: 3).isEmpty)
        #expect(try await store.taskIDNeighbors(of: "bg_abc15") == ["bg_abc1", "bg_abc2"])
        #expect(try await store.taskIDNeighbors(of: "bg_abc2") == ["bg_abc2", "bg_abd0"])
        #expect(try await store.taskIDNeighbors(of: "a") == ["bg_Z"])
        #expect(try await store.taskIDNeighbors(of: "zzz") == ["bg_é"])
    }

    // MARK: - Claims

    @Test("a claim is exclusive among concurrent callers and ends when released", arguments: StoreKind.allCases)
    func claims(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        try await store.save(Self.task("bg_claim", status: .failed))
        try await store.save(Self.task("bg_done", status: .completed))
        let outcomes = await withTaskGroup(of: ClaimResult?.self) { group in
            for index in 0..<16 { group.addTask { try? await store.claimTask(taskID: "bg_claim", owner: "owner-\(index)") } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let winners = outcomes.filter { if case .claimed = $0 { return true } else { return false } }
        #expect(winners.count == 1)
        #expect(outcomes.allSatisfy { if case .claimed = $0 { return true }; if case .notClaimable(.running, _) = $0 { return true }; return false })
        #expect(try await store.claimedTaskIDs(among: ["bg_claim", "bg_done", "missing"]) == ["bg_claim"])
        // The claim writes nothing: the row keeps its status.
        #expect(try await store.loadTask(taskID: "bg_claim")?.status == .failed)
        store.releaseClaim(taskID: "bg_claim")
        #expect(try await store.claimedTaskIDs(among: ["bg_claim"]).isEmpty)
        guard case let .claimed(again) = try await store.claimTask(taskID: "bg_claim", owner: "later") else {
            Issue.record("a released claim can be taken again")
            return
        }
        #expect(again.taskID == "bg_claim")
        // Ended without blocking a thread: free when it returns.
        await store.endClaim(taskID: "bg_claim")
        #expect(try await store.claimedTaskIDs(among: ["bg_claim"]).isEmpty)
        guard case .claimed = try await store.claimTask(taskID: "bg_claim", owner: "last") else {
            Issue.record("an ended claim can be taken again")
            return
        }
        store.releaseClaim(taskID: "bg_claim")
        #expect(try await store.claimTask(taskID: "bg_done", owner: "x") == .notClaimable(status: .completed, owner: nil))
        #expect(try await store.claimTask(taskID: "missing", owner: "x") == .notFound)
        // Releasing what is not held does nothing.
        store.releaseClaim(taskID: "missing")
    }

    @Test("a second store on the same state sees the claim, where stores share state", arguments: StoreKind.allCases.filter(\.claimsSpanStores))
    func claimsAcrossStores(_ kind: StoreKind) async throws {
        let path = try await kind.newLocation()
        let first = try await kind.open(path)
        let second = try await kind.open(path)
        try await first.save(Self.task("bg_shared"))
        guard case .claimed = try await first.claimTask(taskID: "bg_shared", owner: "first") else {
            Issue.record("the first claim succeeds")
            return
        }
        guard case .notClaimable(.running, _) = try await second.claimTask(taskID: "bg_shared", owner: "second") else {
            Issue.record("the other store must not take a held claim")
            return
        }
        #expect(try await second.claimedTaskIDs(among: ["bg_shared"]) == ["bg_shared"])
        first.releaseClaim(taskID: "bg_shared")
        guard case .claimed = try await second.claimTask(taskID: "bg_shared", owner: "second") else {
            Issue.record("a released claim is free for the other store")
            return
        }
        second.releaseClaim(taskID: "bg_shared")
    }

    @Test("the next due task: oldest due first, each to one claimer only, never one not yet due or not scheduled", arguments: StoreKind.allCases)
    func nextDue(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let now = Timestamp.now
        var writes: [StateWrite] = []
        for index in 0..<10 { writes.append(StateWrite(Self.task("bg_due\(index)"), nextAttemptAt: now.adding(seconds: -Double(100 - index)))) }
        writes.append(StateWrite(Self.task("bg_later"), nextAttemptAt: now.adding(seconds: 3600)))
        writes.append(StateWrite(Self.task("bg_never")))
        try await store.save(writes)
        let first = try #require(try await store.claimNextDueTask(owner: "w", now: now))
        #expect(first.taskID == "bg_due0", "the one that waited longest")
        store.releaseClaim(taskID: "bg_due0")
        let claimed = await withTaskGroup(of: String?.self) { group in
            for index in 0..<16 { group.addTask { try? await store.claimNextDueTask(owner: "w\(index)", now: now)?.taskID } }
            return await group.reduce(into: [String]()) { if let id = $1 { $0.append(id) } }
        }
        #expect(claimed.count == 10 && Set(claimed).count == 10, "\(claimed)")
        #expect(Set(claimed) == Set((0..<10).map { "bg_due\($0)" }))
        #expect(try await store.claimNextDueTask(owner: "late", now: now) == nil, "every due task is held")
        for id in claimed { store.releaseClaim(taskID: id) }
    }

    @Test("the next due task of given steps only: older tasks of other steps are passed over, not claimed; no step at all claims nothing", arguments: StoreKind.allCases)
    func nextDueOfSteps(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let now = Timestamp.now
        var other = Self.task("bg_other")
        other.stepName = "not_here"
        var mine = Self.task("bg_mine")
        mine.stepName = "here"
        try await store.save([StateWrite(other, nextAttemptAt: now.adding(seconds: -100)), StateWrite(mine, nextAttemptAt: now.adding(seconds: -10))])
        #expect(try await store.claimNextDueTask(owner: "w", now: now, steps: []) == nil)
        let claimed = try #require(try await store.claimNextDueTask(owner: "w", now: now, steps: ["here", "elsewhere"]))
        #expect(claimed.taskID == "bg_mine", "the older task of another step is passed over")
        #expect(try await store.claimedTaskIDs(among: ["bg_other", "bg_mine"]) == ["bg_mine"], "and not claimed")
        store.releaseClaim(taskID: "bg_mine")
        #expect(try await store.claimNextDueTask(owner: "w", now: now, steps: nil)?.taskID == "bg_other", "any step: the oldest")
        store.releaseClaim(taskID: "bg_other")
    }

    // MARK: - Liveness

    @Test("heartbeats touch running rows only; stale cleanup applies the lifecycle's transition to old running tasks only", arguments: StoreKind.allCases)
    func heartbeatsAndStale(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let now = Timestamp.now
        let old = now.adding(seconds: -48 * 3600)
        try await store.save(Self.task("bg_old", status: .running, updatedAt: old))
        try await store.save(Self.task("bg_fresh", status: .running, updatedAt: now.adding(seconds: -60)))
        try await store.save(Self.task("bg_beating", status: .running, updatedAt: old))
        try await store.save(Self.task("bg_done", status: .completed, updatedAt: old))
        var foreground = Self.run("fg", status: .running)
        foreground.updatedAt = old
        try await store.save(foreground)
        let later = now.adding(seconds: 1)
        try await store.heartbeat(runIDs: [Self.task("bg_beating").runID, Self.task("bg_done").runID, "missing"], at: later)
        #expect(try await store.loadTask(taskID: "bg_beating")?.updatedAt == later)
        #expect(try await store.loadTask(taskID: "bg_done")?.updatedAt == old)

        let transition = TaskLifecycle.stale(thresholdHours: 24, at: now)
        let staled = try await store.failStaleTasks(heartbeatBefore: now.adding(seconds: -24 * 3600), applying: transition)
        #expect(try await store.failOrphanedTasks(applying: TaskLifecycle.orphaned(at: now)).isEmpty, "this process lives: nothing is orphaned")
        if kind.tracksOwners {
            // This process saved them and lives: no threshold fails a task whose process lives.
            #expect(staled.isEmpty)
            #expect(try await store.loadTask(taskID: "bg_old")?.status == .running)
            try await Self.expectCountersMatch(store, ["fg"] + ["bg_old", "bg_fresh", "bg_beating", "bg_done"].map { Self.task($0).runID })
            return
        }
        #expect(staled.map(\.taskID) == ["bg_old"])
        #expect(staled.first?.runID == Self.task("bg_old").runID)
        let failed = try #require(try await store.loadTask(taskID: "bg_old"))
        #expect(failed == transition.applied(to: Self.task("bg_old", status: .running, updatedAt: old)))
        for id in ["bg_fresh", "bg_beating"] { #expect(try await store.loadTask(taskID: id)?.status == .running) }
        #expect(try await store.load(runID: "fg")?.status == .running)
        #expect(try await store.failStaleTasks(heartbeatBefore: now.adding(seconds: -24 * 3600), applying: transition).isEmpty)
        try await Self.expectCountersMatch(store, ["fg"] + ["bg_old", "bg_fresh", "bg_beating", "bg_done"].map { Self.task($0).runID })
    }

    @Test("stale cleanup that only counts changes the same rows as one that returns them; the counters follow", arguments: StoreKind.allCases)
    func staleCount(_ kind: StoreKind) async throws {
        let now = Timestamp.now
        let old = now.adding(seconds: -48 * 3600)
        let transition = TaskLifecycle.stale(thresholdHours: 24, at: now)
        let ids = ["bg_a", "bg_b", "bg_fresh", "bg_done"]
        var results: [[WorkflowState?]] = []
        for counting in [false, true] {
            let store = try await kind.make()
            for id in ["bg_a", "bg_b"] { try await store.save(Self.task(id, status: .running, updatedAt: old)) }
            try await store.save(Self.task("bg_fresh", status: .running, updatedAt: now.adding(seconds: -60)))
            try await store.save(Self.task("bg_done", status: .completed, updatedAt: old))
            let before = now.adding(seconds: -24 * 3600)
            let changed = counting
                ? try await store.failStaleTaskCount(heartbeatBefore: before, applying: transition)
                : try await store.failStaleTasks(heartbeatBefore: before, applying: transition).count
            #expect(changed == (kind.tracksOwners ? 0 : 2))
            #expect(try await store.failStaleTaskCount(heartbeatBefore: before, applying: transition) == 0, "nothing is left to change")
            #expect(try await store.failOrphanedTaskCount(applying: TaskLifecycle.orphaned(at: now)) == 0, "this process lives: nothing is orphaned")
            try await Self.expectCountersMatch(store, ids.map { Self.task($0).runID })
            var rows: [WorkflowState?] = []
            for id in ids { rows.append(try await store.loadTask(taskID: id)) }
            results.append(rows)
        }
        #expect(results[0] == results[1])
        if !kind.tracksOwners {
            #expect(results[1][0] == transition.applied(to: Self.task("bg_a", status: .running, updatedAt: old)))
        }
    }

    @Test("a task's trace record is saved with its launch, kept by later saves, replaced by a new attempt, and gone with the row", arguments: StoreKind.allCases)
    func taskTraceRecord(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let launch = SpanPosition.root().child()
        let first = TaskTrace(launch: launch, attempt: launch.child(), attemptStartUnixNano: 1_700_000_000_000_000_000, attemptNumber: 1)
        var task = Self.task("bg_traced", status: .failed)
        try await store.save([StateWrite(task, trace: first)])
        #expect(try await store.taskTrace(runID: task.runID) == first)
        #expect(try await store.taskTrace(runID: "missing") == nil)
        // An outcome written without a record keeps the stored one.
        task.errorMessage = "again"
        try await store.save([StateWrite(task)])
        try await store.save(task)
        #expect(try await store.taskTrace(runID: task.runID) == first)
        let second = first.nextAttempt(startingAt: 1_700_000_001_000_000_000, number: 2)
        try await store.save([StateWrite(task, trace: second)])
        let read = try #require(try await store.taskTrace(runID: task.runID))
        #expect(read == second)
        #expect(read.launch == first.launch && read.attempt.parentSpanID == first.launch.spanID && read.attempt.spanID != first.attempt.spanID)
        let deleted = try await store.prune(PrunePolicy(cutoffs: [.failed: .now], keptFailureCategories: []), limit: 100, dryRun: false)
        #expect(deleted >= 1)
        #expect(try await store.taskTrace(runID: task.runID) == nil)
    }

    // MARK: - Retention

    @Test("retention deletes ended rows past their cutoff with their steps and spans, never running, paused or retryable ones; counters follow", arguments: StoreKind.allCases)
    func prune(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let now = Timestamp.now
        let old = now.adding(seconds: -48 * 3600)
        func row(_ id: String, _ status: RunStatus, _ category: ErrorCategory?, updated: Timestamp) -> WorkflowState {
            var state = Self.task(id, status: status, updatedAt: updated)
            state.errorCategory = category
            return state
        }
        let rows = [
            row("bg_done_old", .completed, nil, updated: old), row("bg_done_new", .completed, nil, updated: now),
            row("bg_bad_old", .failed, .validation, updated: old), row("bg_flaky_old", .failed, .network, updated: old),
            row("bg_lost_old", .failed, .lostWorker, updated: old), row("bg_unknown_old", .failed, nil, updated: old),
            row("bg_cancel_old", .cancelled, .cancelled, updated: old), row("bg_paused_old", .paused, .controlFlow, updated: old),
        ]
        try await store.save(rows.map { StateWrite($0, step: StepRecord(runID: $0.runID, stepIndex: 0, stepName: "s", success: true)) })
        var foreground = Self.run("fg_old", status: .completed, createdAt: old)
        foreground.updatedAt = old
        try await store.save(foreground)
        try await store.saveSpans([SpanRecord(traceID: "t", spanID: "s1", parentSpanID: nil, runID: Self.task("bg_done_old").runID, name: "n", startUnixNano: 1, endUnixNano: 2, status: "ok", statusMessage: nil, attributes: [:], isBackground: true)])
        let before = try await store.statusCounters()
        var settings = StateSettings()
        settings.keepCompletedHours = 24
        settings.keepFailedHours = 24
        settings.keepCancelledHours = 24
        let policy = try #require(TaskLifecycle.retention(settings, at: now))
        #expect(try await store.prune(policy, limit: 0, dryRun: true) == 4)
        #expect(try await store.prune(policy, limit: 3, dryRun: false) == 3, "at most the limit per call")
        #expect(try await store.prune(policy, limit: 100, dryRun: false) == 1)
        #expect(try await store.prune(policy, limit: 100, dryRun: false) == 0)
        for id in ["bg_done_old", "bg_bad_old", "bg_cancel_old"] {
            #expect(try await store.loadTask(taskID: id) == nil, "\(id) is gone")
            #expect(try await store.steps(runID: Self.task(id).runID).isEmpty)
        }
        #expect(try await store.load(runID: "fg_old") == nil)
        for id in ["bg_done_new", "bg_flaky_old", "bg_lost_old", "bg_unknown_old", "bg_paused_old"] {
            #expect(try await store.loadTask(taskID: id) != nil, "\(id) is kept")
        }
        #expect(try await store.spans(runID: Self.task("bg_done_old").runID).isEmpty)
        let after = try await store.statusCounters()
        #expect(after.prunedRuns == before.prunedRuns + 4)
        #expect(after.totalRuns + after.prunedRuns == before.totalRuns + before.prunedRuns, "runs ever persisted never goes down")
        try await Self.expectCountersMatch(store, rows.map(\.runID) + ["fg_old"])
    }

    // MARK: - Counters, totals, steps, spans

    @Test("the maintained counters equal a recount after inserts, status changes, batches and cleanup", arguments: StoreKind.allCases)
    func counters(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        var ids: [String] = []
        var random = SeededRandomNumberGenerator(seed: 7)
        let statuses = RunStatus.allCases
        for round in 0..<120 {
            let status = statuses[Int(random.next() % UInt64(statuses.count))]
            if round % 3 == 0 {
                let run = Self.run("run-\(round % 40)", status: status)
                ids.append(run.runID)
                try await store.save(run)
            } else {
                let task = Self.task("bg_\(round % 50)", parent: "p", status: status, duration: round % 4 == 0 ? nil : Double(round))
                ids.append(task.runID)
                if round % 5 == 0 {
                    try await store.save([StateWrite(task), StateWrite(Self.run("batch-\(round)", status: .completed))])
                    ids.append("batch-\(round)")
                } else {
                    try await store.save(task, step: StepRecord(runID: task.runID, stepIndex: 0, stepName: "s", success: status == .completed))
                }
            }
        }
        try await Self.expectCountersMatch(store, ids)
        _ = try await store.failStaleTasks(heartbeatBefore: .now, applying: TaskLifecycle.stale(thresholdHours: 0, at: .now))
        try await Self.expectCountersMatch(store, ids)
        let stats = try await store.workflowStats(now: .now)
        let counters = try await store.statusCounters()
        #expect(stats.totalWorkflows == counters.totalRuns)
        #expect(stats.statusCounts == counters.runs && stats.backgroundStatusCounts == counters.backgroundTasks)
    }

    @Test("recent runs count what was created in the last 24 hours; the mean duration is over runs that recorded one", arguments: StoreKind.allCases)
    func workflowStats(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let now = Timestamp.now
        try await store.save(Self.run("new-1", status: .completed, createdAt: now.adding(seconds: -60)))
        try await store.save(Self.run("new-2", status: .running, createdAt: now.adding(seconds: -23 * 3600)))
        try await store.save(Self.run("old", status: .failed, createdAt: now.adding(seconds: -25 * 3600)))
        try await store.save(Self.task("bg_1", createdAt: now.adding(seconds: -3600), duration: 10))
        try await store.save(Self.task("bg_2", createdAt: now.adding(seconds: -3600), duration: 30))
        let stats = try await store.workflowStats(now: now)
        #expect(stats.recentWorkflows24h == 4)
        #expect(stats.totalWorkflows == 5)
        #expect(stats.averageExecutionTimeMs == 20)
        #expect(Self.nonZero(stats.statusCounts) == [.completed: 1, .running: 1, .failed: 1])
        #expect(Self.nonZero(stats.backgroundStatusCounts) == [.failed: 2])
    }

    @Test("usage reported for a parent adds up; steps come back in the order written", arguments: StoreKind.allCases)
    func totalsAndSteps(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        var parent = Self.run("parent")
        parent.costUSD = 1.5
        parent.tokens = 10
        try await store.save(parent)
        let task = Self.task("bg_t", parent: "parent")
        try await store.save(task, step: nil, parentUsage: Usage(costUSD: 0.25, tokens: 5))
        try await store.save(task, step: nil, parentUsage: Usage(costUSD: 0.5, tokens: 7))
        #expect(try await store.runTotals(runID: "parent") == RunTotals(costUSD: 1.5, tokens: 10, backgroundCostUSD: 0.75, backgroundTokens: 12))
        #expect(try await store.runTotals(runID: "missing") == nil)
        // Two tasks of the same parent in one batch: both usages count.
        try await store.save([
            StateWrite(Self.task("bg_u1", parent: "parent"), parentUsage: Usage(costUSD: 1, tokens: 100)),
            StateWrite(Self.task("bg_u2", parent: "parent"), parentUsage: Usage(costUSD: 2, tokens: 200)),
        ])
        #expect(try await store.runTotals(runID: "parent") == RunTotals(costUSD: 1.5, tokens: 10, backgroundCostUSD: 3.75, backgroundTokens: 312))
        let steps = (0..<5).map { StepRecord(runID: "parent", stepIndex: $0, stepName: "s\($0)", success: $0 != 3, outputJSON: "\($0)", feedback: $0 == 3 ? "bad" : nil, finishedAt: Timestamp(millisecondsSince1970: 1_700_000_000_000 + Int64($0))) }
        for step in steps { try await store.save(parent, step: step) }
        #expect(try await store.steps(runID: "parent") == steps)
        #expect(try await store.steps(runID: "missing").isEmpty)
    }

    /// Launches in the group: enough that steps written out of order would show.
    static let groupSize = 40

    @Test("one batch of a running run's steps with its tasks (a group of launches): every step in order, the run's last progress, every task; then its end", arguments: StoreKind.allCases)
    func launchGroup(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        var parent = Self.run("group")
        try await store.save(parent)
        var writes: [StateWrite] = []
        var steps: [StepRecord] = []
        for index in 0..<Self.groupSize {
            writes.append(StateWrite(Self.task("bg_g\(index)", parent: "group", status: .running, duration: nil)))
            parent.currentStepIndex = index + 1
            parent.lastStepOutputJSON = "\(index)"
            parent.contextJSON = #"{"step":\#(index)}"#
            let step = StepRecord(
                runID: "group", stepIndex: index, stepName: "launch\(index)", success: true, outputJSON: "\(index)",
                finishedAt: Timestamp(millisecondsSince1970: 1_700_000_000_000 + Int64(index)))
            steps.append(step)
            writes.append(StateWrite(parent, step: step))
        }
        try await store.save(writes)
        #expect(try await store.steps(runID: "group") == steps)
        let stored = try await store.load(runID: "group")
        #expect(stored?.status == .running && stored?.currentStepIndex == Self.groupSize)
        #expect(stored?.lastStepOutputJSON == "\(Self.groupSize - 1)" && stored?.contextJSON == #"{"step":\#(Self.groupSize - 1)}"#)
        for index in 0..<Self.groupSize { #expect(try await store.loadTask(taskID: "bg_g\(index)")?.status == .running) }
        var ids = ["group"] + (0..<Self.groupSize).map { Identifiers.taskRunID(parentRunID: "group", taskID: "bg_g\($0)") }
        try await Self.expectCountersMatch(store, ids)

        // A batch whose last write of the run ends it: the end is what stays.
        var other = Self.run("group-2")
        try await store.save(other)
        other.currentStepIndex = 1
        let first = StepRecord(runID: "group-2", stepIndex: 0, stepName: "a", success: true, finishedAt: Timestamp(millisecondsSince1970: 1_700_000_000_000))
        var ended = other
        ended.status = .completed
        ended.currentStepIndex = 2
        try await store.save([StateWrite(other, step: first), StateWrite(ended)])
        #expect(try await store.load(runID: "group-2")?.status == .completed)
        #expect(try await store.load(runID: "group-2")?.currentStepIndex == 2)
        #expect(try await store.steps(runID: "group-2") == [first])
        ids.append("group-2")
        try await Self.expectCountersMatch(store, ids)
    }

    @Test("spans are kept, replaced by id, and read back by trace in start order", arguments: StoreKind.allCases)
    func spans(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let root = SpanRecord(traceID: "t1", spanID: "a", parentSpanID: nil, runID: "r", name: "pipeline_run", startUnixNano: 10, endUnixNano: 90, status: "ok", statusMessage: nil, attributes: ["k": "v\"q"], isBackground: false)
        let child = SpanRecord(traceID: "t1", spanID: "b", parentSpanID: "a", runID: "r_bg_x", name: "bg", startUnixNano: 20, endUnixNano: 30, status: "error", statusMessage: "boom", attributes: [:], isBackground: true)
        let other = SpanRecord(traceID: "t2", spanID: "c", parentSpanID: nil, runID: "s", name: "pipeline_run", startUnixNano: 5, endUnixNano: 6, status: "ok", statusMessage: nil, attributes: [:], isBackground: false)
        try await store.saveSpans([child, other, root])
        #expect(try await store.spans(runID: "r") == [root, child])
        #expect(try await store.spans(runID: "r_bg_x") == [root, child])
        var replaced = child
        replaced.endUnixNano = 40
        try await store.saveSpans([replaced])
        #expect(try await store.spans(runID: "r") == [root, replaced])
        #expect(try await store.spans(runID: "nobody").isEmpty)
    }

    @Test("a span given twice in one batch keeps its last record; a batch of 4,500 spans is kept whole", arguments: StoreKind.allCases)
    func spanBatches(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        func span(_ index: Int, end: UInt64 = 2) -> SpanRecord {
            SpanRecord(traceID: "t", spanID: "s\(index)", parentSpanID: index == 0 ? nil : "s0", runID: "r", name: "step \(index)",
                       startUnixNano: UInt64(index) + 1, endUnixNano: UInt64(index) + end, status: "ok", statusMessage: nil,
                       attributes: ["i": "\(index)"], isBackground: false)
        }
        try await store.saveSpans([span(0), span(1), span(1, end: 50), span(2)])
        #expect(try await store.spans(runID: "r") == [span(0), span(1, end: 50), span(2)])
        try await store.saveSpans((0..<4_500).map { span($0, end: 7) })
        let kept = try await store.spans(runID: "r")
        #expect(kept.count == 4_500)
        #expect(kept == (0..<4_500).map { span($0, end: 7) })
    }

    // MARK: - A run through the store

    @Test("a run whose caller is cancelled ends at once and is kept cancelled: not failed, not left running, not retried", arguments: StoreKind.allCases)
    func callerCancelled(_ kind: StoreKind) async throws {
        let store = try await kind.make()
        let runner = Runner(store: store)
        let slow = Step<Int, Int>("slow") { value, _ in
            try await Task.sleep(for: .seconds(60))
            return value
        }
        let fast = Step<Int, Int>("fast") { value, _ in value + 1 }
        let pipeline = Pipeline(name: "p", steps: [.run(fast), .run(slow, retry: RetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(10))), .run(fast)])
        let started = ContinuousClock.now
        let caller = Task { try await runner.run(pipeline, input: 1) }
        try await Task.sleep(for: .milliseconds(300))
        caller.cancel()
        let result = try await caller.value
        #expect(ContinuousClock.now - started < .seconds(20), "the run ended with its caller, not with the step's 60 s")
        #expect(result.status == .cancelled)
        #expect(result.errorCategory == .cancelled)
        #expect(result.errorMessage == "cancelled: the task running the step was cancelled")
        #expect(result.steps.map(\.name) == ["fast", "slow"])
        #expect(result.steps.last?.attempts == 1, "a cancelled step is not tried again")
        let kept = try #require(try await store.load(runID: result.runID))
        #expect(kept.status == .cancelled)
        #expect(kept.errorCategory == .cancelled)
        #expect(try await store.statusCounters().runs[.cancelled] == 1)
        await runner.close()
    }
}
