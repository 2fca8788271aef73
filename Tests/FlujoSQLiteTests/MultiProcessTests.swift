import CSQLite
import Flujo
import FlujoTestSupport
import Foundation
import Testing

@testable import FlujoSQLite

@Suite("Several processes on one file")
struct MultiProcessTests {
    let helper = TestSupport.executable("FlujoTestHelper")

    @Test("two processes writing at once: no error, no lost row, counters exact")
    func concurrentWriters() async throws {
        let (store, path) = try makeStore()
        async let first = TestSupport.run(helper, ["write", path, "300", "a"])
        async let second = TestSupport.run(helper, ["write", path, "300", "b"])
        let results = try await [first, second]
        for result in results {
            #expect(result.status == 0, "helper failed: \(result.stderr)")
            #expect(result.stdout.split(separator: "\n").count == 300)
        }
        for prefix in ["a", "b"] {
            for index in [0, 1, 150, 299] {
                #expect(try await store.load(runID: "\(prefix)-\(index)") != nil)
            }
        }
        let counters = try await store.statusCounters()
        #expect(counters.totalRuns == 600)
        let all = counters.runs.values.reduce(0, +) + counters.backgroundTasks.values.reduce(0, +)
        #expect(all == 600)
        #expect(try await store.listBackgroundTasks(.init(limit: 10_000)).count == 200)
    }

    @Test("a writer killed mid-transaction: the file opens, committed rows are there, the interrupted one is absent")
    func killedMidTransaction() async throws {
        let (store, path) = try makeStore(.init(busyTimeoutMs: 200))
        try await store.save(WorkflowState(runID: "committed", pipelineName: "p"))
        let holder = try RunningProcess(helper, ["hold", path, "interrupted"])
        #expect(await holder.waitForLine { $0 == "in-transaction" })
        // While the other process holds the write lock, a write waits out the busy timeout and says so.
        await #expect(throws: StateStoreError.locked(path: path, timeoutMs: 200)) {
            try await store.save(WorkflowState(runID: "blocked", pipelineName: "p"))
        }
        await holder.kill()
        let reopened = try SQLiteStateStore(path: path)
        #expect(try await reopened.load(runID: "committed") != nil)
        #expect(try await reopened.load(runID: "interrupted") == nil)
        // The lock is gone with the process: the next write succeeds.
        try await store.save(WorkflowState(runID: "after", pipelineName: "p"))
        #expect(try await reopened.load(runID: "after") != nil)
        #expect(try await reopened.statusCounters().totalRuns == 2)
    }

    @Test("a writer killed at a random point of a stream of commits loses no committed row")
    func killedDuringStream() async throws {
        let (store, path) = try makeStore()
        let writer = try RunningProcess(helper, ["write", path, "100000", "k"])
        #expect(await writer.waitForLine { $0 == "committed 200" })
        await writer.kill()
        let reported = writer.linesSoFar.compactMap { line in line.hasPrefix("committed ") ? Int(line.dropFirst(10)) : nil }
        let last = try #require(reported.max())
        for index in stride(from: 0, through: last, by: 1) where index % 17 == 0 || index == last {
            #expect(try await store.load(runID: "k-\(index)") != nil, "committed row k-\(index) lost")
        }
        let counters = try await store.statusCounters()
        #expect(counters.totalRuns >= last + 1)
        #expect(counters.totalRuns <= last + 2)
        #expect(try await store.steps(runID: "k-\(last)").count == 1)
    }

    @Test("eight processes claim one task: exactly one wins, and the row is not touched")
    func claimRace() async throws {
        let (store, path) = try makeStore()
        try await store.save(fullTask(status: .failed))
        let outputs = try await withThrowingTaskGroup(of: TestSupport.ProcessOutput.self) { group in
            for index in 0..<8 {
                // The winner holds its claim for three seconds, past every other attempt.
                group.addTask { try await TestSupport.run(helper, ["claim", path, "bg_0123", "owner-\(index)", "3000"]) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let lines = outputs.map { $0.stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(outputs.allSatisfy { $0.status == 0 }, "\(outputs.map(\.stderr))")
        #expect(lines.filter { $0 == "claimed" }.count == 1, "\(lines)")
        #expect(lines.filter { $0 == "lost running" }.count == 7, "\(lines)")
        let stored = try await store.loadTask(taskID: "bg_0123")
        #expect(stored?.status == .failed)
        #expect(stored?.attempts == 2)
        // The winner has exited: the claim went with it.
        guard case .claimed = try await store.claimTask(taskID: "bg_0123", owner: "after") else {
            Issue.record("the claim should end with the process that held it")
            return
        }
    }

    @Test("eight stores of one process claim one task: exactly one wins; releasing or dropping the store ends the claim")
    func claimRaceInProcess() async throws {
        let (_, path) = try makeStore()
        let seed = try SQLiteStateStore(path: path)
        try await seed.save(fullTask(status: .paused))
        // Each claimer has its own store and connection, as separate runners would;
        // all are kept until every claim has been tried.
        let results = try await withThrowingTaskGroup(of: (Bool, SQLiteStateStore).self) { group in
            for index in 0..<8 {
                group.addTask {
                    let store = try SQLiteStateStore(path: path)
                    if case .claimed = try await store.claimTask(taskID: "bg_0123", owner: "t\(index)") { return (true, store) }
                    return (false, store)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.filter(\.0).count == 1)
        let winner = try #require(results.first(where: \.0)?.1)
        guard case let .notClaimable(status, owner) = try await seed.claimTask(taskID: "bg_0123", owner: "seed") else {
            Issue.record("the task should still be held")
            return
        }
        #expect(status == .running)
        #expect(owner?.hasPrefix("t") == true)
        // Every store of the process sees the claim, and only that one.
        #expect(try await seed.claimedTaskIDs(among: ["bg_0123", "bg_other"]) == ["bg_0123"])
        winner.releaseClaim(taskID: "bg_0123")
        guard case .claimed = try await seed.claimTask(taskID: "bg_0123", owner: "seed") else {
            Issue.record("a released claim can be taken again")
            return
        }
        // A store that goes away without releasing gives its claims up.
        seed.releaseClaim(taskID: "bg_0123")
        var holder: SQLiteStateStore? = try SQLiteStateStore(path: path)
        if case .claimed = try await holder?.claimTask(taskID: "bg_0123", owner: "dropped") {} else {
            Issue.record("should be claimable")
        }
        #expect(try await seed.claimTask(taskID: "bg_0123", owner: "seed") == .notClaimable(status: .running, owner: "dropped"))
        holder = nil
        #expect(holder == nil)
        if case .claimed = try await seed.claimTask(taskID: "bg_0123", owner: "later") {} else {
            Issue.record("a dropped store's claim should be gone")
        }
    }

    @Test("a foreground run whose process is killed is failed as a lost worker at once, in another process; a live one never")
    func killedForegroundRun() async throws {
        let path = TestSupport.temporaryDirectory("flujo-run-lost").appendingPathComponent("state.db").path
        let process = try RunningProcess(helper, ["foreground", path])
        #expect(await process.waitForLine { $0.hasPrefix("running ") })
        let runID = try #require(process.linesSoFar.first { $0.hasPrefix("running ") }.map { String($0.dropFirst(8)) })
        let store = try SQLiteStateStore(path: path)
        let operations = TaskOperations(store: store)
        // Alive: never touched.
        #expect(try await operations.recoverOrphanedRuns() == 0)
        #expect(try await store.load(runID: runID)?.status == .running)
        await process.kill()
        #expect(try await operations.recoverOrphanedRuns() == 1)
        let run = try #require(try await store.load(runID: runID))
        #expect(run.status == .failed)
        #expect(run.errorCategory == .lostWorker)
        #expect(run.errorMessage == "the process running it ended before it finished (lost worker)")
        #expect(try await operations.recoverOrphanedRuns() == 0, "once")
        #expect(try await store.statusCounters().runs == [.failed: 1])
        let counted = try recount(path)
        #expect(counted.byKind == ["0:failed": 1])
        #expect(try runsRow(path, runID) == "failed ended", "its row in `runs` ended too")
    }

    /// A run's row in `runs`: its status, and whether it has ended.
    func runsRow(_ path: String, _ runID: String) throws -> String? {
        var db: OpaquePointer?
        guard sqlite3_open(path, &db) == SQLITE_OK else { return nil }
        defer { sqlite3_close(db) }
        var statement: OpaquePointer?
        sqlite3_prepare_v2(db, "SELECT status, ended_at FROM runs WHERE run_id = ?1", -1, &statement, nil)
        defer { sqlite3_finalize(statement) }
        sqlite3_bind_text(statement, 1, runID, -1, nil)
        guard sqlite3_step(statement) == SQLITE_ROW else { return nil }
        return String(cString: sqlite3_column_text(statement, 0)) + (sqlite3_column_type(statement, 1) == SQLITE_INTEGER ? " ended" : " open")
    }

    @Test("running runs that record no process (rows of earlier versions) are failed by stale cleanup once not updated for the threshold; recent and owned ones are not")
    func staleLegacyRuns() async throws {
        let path = TestSupport.temporaryDirectory("flujo-run-stale").appendingPathComponent("state.db").path
        let store = try SQLiteStateStore(path: path)
        let old = Timestamp.now.adding(seconds: -7200)
        // As an earlier version left them: no owner (saveAll records none).
        try store.saveAll([
            WorkflowState(runID: "run_legacy_old", pipelineName: "p", status: .running, createdAt: old, updatedAt: old),
            WorkflowState(runID: "run_legacy_recent", pipelineName: "p", status: .running),
        ])
        // A run of this live process, as old: it records its owner.
        try await store.save(WorkflowState(runID: "run_owned_old", pipelineName: "p", status: .running, createdAt: old, updatedAt: old))
        let operations = TaskOperations(store: store)
        #expect(try await operations.cleanupStaleTasks(staleHours: 1) == 0, "it counts tasks; none here")
        #expect(try await store.load(runID: "run_legacy_old")?.status == .failed)
        #expect(try await store.load(runID: "run_legacy_old")?.errorCategory == .lostWorker)
        #expect(try await store.load(runID: "run_legacy_recent")?.status == .running)
        #expect(try await store.load(runID: "run_owned_old")?.status == .running, "its process lives")
        #expect(try runsRow(path, "run_legacy_old") == "failed ended")
        #expect(try await store.statusCounters().runs == [.failed: 1, .running: 2])
        #expect(try recount(path).byKind == ["0:failed": 1, "0:running": 2])
    }
}
