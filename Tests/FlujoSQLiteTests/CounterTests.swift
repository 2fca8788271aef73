import CSQLite
import Flujo
import FlujoTestSupport
import Foundation
import Testing

@testable import FlujoSQLite

/// Counts the rows themselves, as a check of the maintained counters.
func recount(_ path: String) throws -> (byKind: [String: Int], total: Int, durationSum: Double, durationCount: Int, hours: [Int64: Int]) {
    var db: OpaquePointer?
    guard sqlite3_open(path, &db) == SQLITE_OK else { throw StateStoreError.cannotOpen(path: path, reason: "test") }
    defer { sqlite3_close(db) }
    func rows(_ sql: String, _ each: (OpaquePointer) -> Void) {
        var statement: OpaquePointer?
        sqlite3_prepare_v2(db, sql, -1, &statement, nil)
        defer { sqlite3_finalize(statement) }
        while sqlite3_step(statement) == SQLITE_ROW { each(statement!) }
    }
    var byKind: [String: Int] = [:]
    rows("SELECT is_background_task, status, count(*) FROM workflow_state GROUP BY 1, 2") {
        byKind["\(sqlite3_column_int64($0, 0)):\(String(cString: sqlite3_column_text($0, 1)))"] = Int(sqlite3_column_int64($0, 2))
    }
    var total = 0, durationCount = 0
    var durationSum = 0.0
    rows("SELECT count(*), COALESCE(sum(execution_time_ms), 0), count(execution_time_ms) FROM workflow_state") {
        total = Int(sqlite3_column_int64($0, 0))
        durationSum = sqlite3_column_double($0, 1)
        durationCount = Int(sqlite3_column_int64($0, 2))
    }
    var hours: [Int64: Int] = [:]
    rows("SELECT created_at / 3600000, count(*) FROM workflow_state GROUP BY 1") {
        hours[sqlite3_column_int64($0, 0)] = Int(sqlite3_column_int64($0, 1))
    }
    return (byKind, total, durationSum, durationCount, hours)
}

/// The maintained counters, read the way a scrape reads them, plus the per-hour table.
func maintained(_ store: SQLiteStateStore, _ path: String) async throws -> (byKind: [String: Int], total: Int, durationSum: Double, durationCount: Int, hours: [Int64: Int]) {
    let counters = try await store.statusCounters()
    var byKind: [String: Int] = [:]
    for (status, count) in counters.runs where count != 0 { byKind["0:\(status.rawValue)"] = count }
    for (status, count) in counters.backgroundTasks where count != 0 { byKind["1:\(status.rawValue)"] = count }
    var db: OpaquePointer?
    guard sqlite3_open(path, &db) == SQLITE_OK else { throw StateStoreError.cannotOpen(path: path, reason: "test") }
    defer { sqlite3_close(db) }
    var statement: OpaquePointer?
    sqlite3_prepare_v2(db, "SELECT hour, count FROM created_per_hour WHERE count != 0", -1, &statement, nil)
    defer { sqlite3_finalize(statement) }
    var hours: [Int64: Int] = [:]
    while sqlite3_step(statement) == SQLITE_ROW { hours[sqlite3_column_int64(statement, 0)] = Int(sqlite3_column_int64(statement, 1)) }
    return (byKind, counters.totalRuns, counters.durationSumMs, counters.durationCount, hours)
}

@Suite("Maintained counters")
struct CounterTests {
    @Test("after inserts, status changes, claims, stale cleanup and a failed write in a batch, the counters equal a recount")
    func countersMatchRows() async throws {
        let path = TestSupport.temporaryDirectory("flujo-counters").appendingPathComponent("state.db").path
        let store = try SQLiteStateStore(path: path)
        let old = Timestamp.now.adding(seconds: -48 * 3600)
        // Two hours of creation times, foreground and background rows, some with durations.
        var rows: [WorkflowState] = []
        for index in 0..<40 {
            let status: RunStatus = index % 3 == 0 ? .failed : .running
            let created: Timestamp = index % 2 == 0 ? old : .now
            let duration: Double? = index % 4 == 0 ? Double(index) : nil
            rows.append(WorkflowState(runID: "r\(index)_bg_bg_\(index)", pipelineName: "p", status: status, createdAt: created,
                                      executionTimeMs: duration, isBackgroundTask: true, parentRunID: "r\(index)", taskID: "bg_\(index)", stepName: "s"))
        }
        for index in 0..<10 {
            rows.append(WorkflowState(runID: "r\(index)", pipelineName: "p", status: .completed, createdAt: old, executionTimeMs: 5))
        }
        try store.saveAll(rows)
        // Many writers at once, so several share a commit; one of them breaks the
        // task id's uniqueness and must fail alone.
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<30 {
                group.addTask {
                    var state = try #require(try await store.load(runID: "r\(index)_bg_bg_\(index)"))
                    state.status = index % 2 == 0 ? .completed : .paused
                    state.executionTimeMs = index % 5 == 0 ? nil : 7.5
                    state.updatedAt = old
                    try await store.save(state, step: nil, parentUsage: Usage(costUSD: 0.001, tokens: 1))
                    return true
                }
            }
            group.addTask {
                let clash = WorkflowState(runID: "clash_bg_bg_1", pipelineName: "p", status: .failed, createdAt: .now,
                                          isBackgroundTask: true, parentRunID: "clash", taskID: "bg_1", stepName: "s")
                do {
                    try await store.save(clash)
                    return false
                } catch {
                    return true
                }
            }
            for try await ok in group { #expect(ok) }
        }
        #expect(try await store.load(runID: "clash_bg_bg_1") == nil)
        // A claim changes no row; cleanup moves old running tasks to failed.
        let now = Timestamp.now
        guard case .claimed = try await store.claimTask(taskID: "bg_1", owner: "me") else {
            Issue.record("bg_1 should be claimable")
            return
        }
        let failed = try await store.failStaleTasks(heartbeatBefore: now.adding(seconds: -3600), applying: TaskLifecycle.stale(thresholdHours: 1, at: now))
        // Rows 32, 34 and 38: untouched, running, created (and last updated) 48 h ago.
        #expect(failed.count == 3)
        let expected = try recount(path)
        let actual = try await maintained(store, path)
        #expect(actual.byKind == expected.byKind)
        #expect(actual.total == expected.total)
        #expect(actual.durationCount == expected.durationCount)
        #expect(abs(actual.durationSum - expected.durationSum) < 1e-9)
        #expect(actual.hours == expected.hours)
    }

    @Test("a version-2 database with counter triggers is migrated: triggers dropped, counters rebuilt")
    func migratesVersionTwo() async throws {
        let path = TestSupport.temporaryDirectory("flujo-counters").appendingPathComponent("state.db").path
        let store = try SQLiteStateStore(path: path)
        try await store.save(fullTask())
        store.close()
        // As version 2 left it: a trigger, and a counter that disagrees with the rows.
        try rawSQL(path, """
            CREATE TRIGGER workflow_state_counted_delete AFTER DELETE ON workflow_state BEGIN SELECT 1; END;
            UPDATE status_counts SET count = 5 WHERE is_background = 1 AND status = 'failed';
            PRAGMA user_version = 2;
            """)
        let reopened = try SQLiteStateStore(path: path)
        let counters = try await reopened.statusCounters()
        #expect(counters.backgroundTasks[.failed] == 1)
        let expected = try recount(path)
        #expect(try await maintained(reopened, path).byKind == expected.byKind)
        var db: OpaquePointer?
        sqlite3_open(path, &db)
        defer { sqlite3_close(db) }
        var statement: OpaquePointer?
        sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'trigger'), (SELECT user_version FROM pragma_user_version)", -1, &statement, nil)
        defer { sqlite3_finalize(statement) }
        #expect(sqlite3_step(statement) == SQLITE_ROW)
        #expect(sqlite3_column_int64(statement, 0) == 0)
        #expect(Int(sqlite3_column_int64(statement, 1)) == Schema.currentVersion)
    }
}
