import CSQLite
import Flujo
import FlujoTestSupport
import Foundation
import Testing

@testable import FlujoSQLite

/// A fresh database file in its own folder.
func makeStore(_ options: SQLiteStateStore.Options = .init()) throws -> (SQLiteStateStore, String) {
    let path = TestSupport.temporaryDirectory("flujo-sqlite").appendingPathComponent("state.db").path
    return (try SQLiteStateStore(path: path, options: options), path)
}

/// A background task row with every column set to a distinct value.
func fullTask(runID: String = "run-1_bg_bg_0123", taskID: String = "bg_0123", status: RunStatus = .failed, updatedAt: Timestamp? = nil) -> WorkflowState {
    WorkflowState(
        runID: runID, pipelineName: "orders", pipelineVersion: "2.1", pipelineID: "orders-v2",
        currentStepIndex: 3, contextJSON: #"{"customer":"ada \"quoted\""}"#, lastStepOutputJSON: #"{"ok":true}"#,
        stepHistoryJSON: #"[{"name":"validate"}]"#, status: status,
        createdAt: Timestamp(millisecondsSince1970: 1_700_000_000_123), updatedAt: updatedAt ?? Timestamp(millisecondsSince1970: 1_700_000_100_456),
        totalSteps: 5, errorMessage: "connection reset", executionTimeMs: 12.5, memoryUsageMB: 42.25,
        metadataJSON: #"{"task_id":"bg_0123"}"#, isBackgroundTask: true, parentRunID: "run-1", taskID: taskID,
        errorCategory: .network, attempts: 2, resumedFrom: "run-0", stepName: "send_receipt",
        costUSD: 0.25, tokens: 1234)
}

@Suite("SQLite state store")
struct SQLiteStateStoreTests {
    @Test("a postgres:// or other URI is refused as a SQLite path, and no file or folder is made for it")
    func uriIsNotAPath() throws {
        let folder = TestSupport.temporaryDirectory("flujo-uri")
        let previous = FileManager.default.currentDirectoryPath
        #expect(FileManager.default.changeCurrentDirectoryPath(folder.path))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        for uri in ["postgres://ada@db:5432/orders", "postgresql://ada@db/orders", "mysql://x@y/z"] {
            do {
                _ = try SQLiteStateStore(path: uri)
                Issue.record("\(uri) was opened as a file")
            } catch {
                guard case let .cannotOpen(path, reason) = error else { Issue.record("\(error)"); continue }
                #expect(path == uri && reason.contains("URI"))
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
    }

    @Test("every column survives a round trip")
    func roundTrip() async throws {
        let (store, path) = try makeStore()
        let state = fullTask()
        try await store.save(state)
        #expect(try await store.load(runID: state.runID) == state)
        #expect(try await store.loadTask(taskID: "bg_0123") == state)
        #expect(try await store.load(runID: "absent") == nil)
        // And from a second connection, as another process would see it.
        let other = try SQLiteStateStore(path: path, options: .init(readOnly: true))
        #expect(try await other.load(runID: state.runID) == state)
    }

    @Test("created_at is written once; later saves keep it")
    func createdAtWrittenOnce() async throws {
        let (store, _) = try makeStore()
        var state = fullTask()
        try await store.save(state)
        state.createdAt = Timestamp(millisecondsSince1970: 9_999_999_999_999)
        state.status = .completed
        try await store.save(state)
        let loaded = try #require(try await store.load(runID: state.runID))
        #expect(loaded.createdAt == Timestamp(millisecondsSince1970: 1_700_000_000_123))
        #expect(loaded.status == .completed)
    }

    @Test("steps are appended in the same transaction and read back in order")
    func stepLog() async throws {
        let (store, _) = try makeStore()
        let state = WorkflowState(runID: "r", pipelineName: "p")
        for index in 0..<3 {
            try await store.save(state, step: StepRecord(runID: "r", stepIndex: index, stepName: "s\(index)", success: index != 2, outputJSON: "\(index)", costUSD: 0.5, tokens: 7, feedback: index == 2 ? "boom" : nil))
        }
        let steps = try await store.steps(runID: "r")
        #expect(steps.map(\.stepName) == ["s0", "s1", "s2"])
        #expect(steps.map(\.success) == [true, true, false])
        #expect(steps[2].feedback == "boom")
    }

    @Test("listing filters by parent, status and time window, with limit and offset")
    func listing() async throws {
        let (store, _) = try makeStore()
        let base = Timestamp(millisecondsSince1970: 1_800_000_000_000)
        for index in 0..<10 {
            var task = fullTask(runID: "p\(index % 2)_bg_t\(index)", taskID: "t\(index)", status: index < 6 ? .failed : .completed, updatedAt: base.adding(seconds: Double(index * 3600)))
            task.parentRunID = "p\(index % 2)"
            try await store.save(task)
        }
        try await store.save(WorkflowState(runID: "foreground", pipelineName: "p", status: .failed))
        #expect(try await store.listBackgroundTasks(.init()).count == 10)
        #expect(try await store.listBackgroundTasks(.init(parentRunID: "p0")).map(\.taskID) == ["t8", "t6", "t4", "t2", "t0"])
        #expect(try await store.listBackgroundTasks(.init(statuses: [.failed])).count == 6)
        #expect(try await store.listBackgroundTasks(.init(statuses: [.failed, .completed])).count == 10)
        #expect(try await store.listBackgroundTasks(.init(statuses: [.paused])).isEmpty)
        let recent = try await store.listBackgroundTasks(.init(statuses: [.failed], updatedSince: base.adding(seconds: 3 * 3600)))
        #expect(recent.map(\.taskID) == ["t5", "t4", "t3"])
        let page = try await store.listBackgroundTasks(.init(limit: 3, offset: 2))
        #expect(page.map(\.taskID) == ["t7", "t6", "t5"])
        #expect(try await store.taskIDs(withPrefix: "t", limit: 3) == ["t0", "t1", "t2"])
    }

    @Test("a claim takes a resumable task once, leaves its row as stored, and ends when released; running, completed and unknown tasks are refused")
    func claim() async throws {
        let (store, _) = try makeStore()
        try await store.save(fullTask(status: .paused))
        guard case let .claimed(state) = try await store.claimTask(taskID: "bg_0123", owner: "a") else {
            Issue.record("first claim should win")
            return
        }
        #expect(state == fullTask(status: .paused))
        #expect(try await store.loadTask(taskID: "bg_0123") == fullTask(status: .paused))
        #expect(try await store.claimTask(taskID: "bg_0123", owner: "b") == .notClaimable(status: .running, owner: "a"))
        store.releaseClaim(taskID: "bg_0123")
        store.releaseClaim(taskID: "bg_0123")
        guard case .claimed = try await store.claimTask(taskID: "bg_0123", owner: "b") else {
            Issue.record("a released claim can be taken again")
            return
        }
        try await store.save(fullTask(runID: "r2", taskID: "running", status: .running))
        try await store.save(fullTask(runID: "r3", taskID: "done", status: .completed))
        #expect(try await store.claimTask(taskID: "running", owner: "b") == .notClaimable(status: .running, owner: nil))
        #expect(try await store.claimTask(taskID: "done", owner: "b") == .notClaimable(status: .completed, owner: nil))
        #expect(try await store.claimTask(taskID: "nope", owner: "b") == .notFound)
        // Refused claims are not held: the completed task's claim byte is free for its next use.
        try await store.save(fullTask(runID: "r3", taskID: "done", status: .failed))
        guard case .claimed = try await store.claimTask(taskID: "done", owner: "b") else {
            Issue.record("a refused claim must not stay held")
            return
        }
    }

    @Test("stale cleanup fails only running background tasks whose heartbeat is older than the threshold", arguments: [false, true])
    func staleCleanup(counting: Bool) async throws {
        let (store, _) = try makeStore()
        let now = Timestamp.now
        // Imported rows record no owner process, as rows of earlier versions: the heartbeat rule applies.
        try store.saveAll([
            fullTask(runID: "old", taskID: "old", status: .running, updatedAt: now.adding(seconds: -48 * 3600)),
            fullTask(runID: "fresh", taskID: "fresh", status: .running, updatedAt: now.adding(seconds: -60)),
        ])
        try await store.save(fullTask(runID: "done", taskID: "done", status: .completed, updatedAt: now.adding(seconds: -48 * 3600)))
        var foreground = WorkflowState(runID: "fg", pipelineName: "p", status: .running)
        foreground.updatedAt = now.adding(seconds: -48 * 3600)
        try await store.save(foreground)
        let transition = TaskTransition(status: .failed, errorMessage: "Task timeout: heartbeat stopped", errorCategory: .timeout, at: now)
        if counting {
            // What cleanup does when no sink listens for `taskFinished`.
            #expect(try await store.failStaleTaskCount(heartbeatBefore: now.adding(seconds: -24 * 3600), applying: transition) == 1)
        } else {
            let changed = try await store.failStaleTasks(heartbeatBefore: now.adding(seconds: -24 * 3600), applying: transition)
            #expect(changed.map(\.runID) == ["old"])
        }
        #expect(try await store.statusCounters().backgroundTasks.filter { $0.value != 0 } == [.running: 1, .failed: 1, .completed: 1])
        let old = try #require(try await store.load(runID: "old"))
        #expect(old.status == .failed)
        #expect(old.errorCategory == .timeout)
        #expect(old.errorMessage == "Task timeout: heartbeat stopped")
        #expect(try await store.load(runID: "fresh")?.status == .running)
        // A heartbeat keeps a long-running task alive.
        try await store.heartbeat(runIDs: ["fresh"], at: now.adding(seconds: 3600))
        #expect(try await store.load(runID: "fresh")?.updatedAt == now.adding(seconds: 3600))
    }

    @Test("stats come from counters that follow every status change")
    func stats() async throws {
        let (store, _) = try makeStore()
        let now = Timestamp.now
        var task = fullTask(status: .running, updatedAt: now)
        task.createdAt = now.adding(seconds: -60)
        task.executionTimeMs = nil
        try await store.save(task)
        task.status = .failed
        task.executionTimeMs = 30
        try await store.save(task)
        var old = WorkflowState(runID: "old", pipelineName: "p", status: .completed, createdAt: now.adding(seconds: -30 * 3600), executionTimeMs: 10)
        try await store.save(old)
        old.status = .completed
        try await store.save(old)
        try await store.save(WorkflowState(runID: "edge", pipelineName: "p", status: .paused, createdAt: now.adding(seconds: -23.9 * 3600)))
        let stats = try await store.workflowStats(now: now)
        #expect(stats.totalWorkflows == 3)
        #expect(stats.statusCounts == [.completed: 1, .paused: 1])
        #expect(stats.backgroundStatusCounts[.failed] == 1)
        #expect(stats.backgroundStatusCounts[.running, default: 0] == 0)
        #expect(stats.recentWorkflows24h == 2)
        #expect(stats.averageExecutionTimeMs == 20)
    }

    @Test("background usage is added to the parent's totals")
    func usage() async throws {
        let (store, _) = try makeStore()
        try await store.save(WorkflowState(runID: "parent", pipelineName: "p", costUSD: 1, tokens: 10))
        for index in 0..<2 {
            let task = WorkflowState(runID: "parent_bg_t\(index)", pipelineName: "p", status: .completed, isBackgroundTask: true, parentRunID: "parent", taskID: "t\(index)")
            try await store.save(task, step: nil, parentUsage: Usage(costUSD: 0.25, tokens: 5))
        }
        #expect(try await store.runTotals(runID: "parent") == RunTotals(costUSD: 1, tokens: 10, backgroundCostUSD: 0.5, backgroundTokens: 10))
    }

    @Test("spans keep wall-clock nanoseconds and are found by any run of their trace")
    func spans() async throws {
        let (store, _) = try makeStore()
        let start: UInt64 = 1_764_000_000_123_456_789
        let root = SpanRecord(traceID: String(repeating: "a", count: 32), spanID: "0000000000000001", parentSpanID: nil, runID: "r", name: "pipeline_run", startUnixNano: start, endUnixNano: start + 5_000, status: "ok", attributes: ["flujo.run_id": "r"])
        let background = SpanRecord(traceID: root.traceID, spanID: "0000000000000002", parentSpanID: root.spanID, runID: "r_bg_x", name: "receipt", startUnixNano: start + 10, endUnixNano: start + 20, status: "error", statusMessage: "boom \"x\"\n", attributes: ["flujo.is_background": "true"], isBackground: true)
        try await store.saveSpans([root, background])
        #expect(try await store.spans(runID: "r") == [root, background])
        #expect(try await store.spans(runID: "r_bg_x") == [root, background])
    }

    @Test("values are bound, never interpolated: quotes and SQL in data are stored as text")
    func boundParameters() async throws {
        let (store, _) = try makeStore()
        let hostile = "x'); DROP TABLE workflow_state; --"
        var state = WorkflowState(runID: hostile, pipelineName: hostile, errorMessage: hostile)
        state.contextJSON = hostile
        try await store.save(state)
        #expect(try await store.load(runID: hostile) == state)
        #expect(try await store.workflowStats(now: .now).totalWorkflows == 1)
    }
}
