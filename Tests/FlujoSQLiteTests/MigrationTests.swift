import CSQLite
import Flujo
import FlujoTestSupport
import Foundation
import Testing

@testable import FlujoSQLite

/// Runs raw SQL on a file with a plain libsqlite3 connection (as an older version would have).
func rawSQL(_ path: String, _ sql: String) throws {
    var db: OpaquePointer?
    guard sqlite3_open(path, &db) == SQLITE_OK else { throw StateStoreError.cannotOpen(path: path, reason: "test") }
    defer { sqlite3_close(db) }
    var message: UnsafeMutablePointer<CChar>?
    if sqlite3_exec(db, sql, nil, nil, &message) != SQLITE_OK {
        let text = message.map { String(cString: $0) } ?? "?"
        sqlite3_free(message)
        throw StateStoreError.storage(path: path, code: 1, message: text)
    }
}

func columns(_ path: String, _ table: String) throws -> Set<String> {
    var db: OpaquePointer?
    guard sqlite3_open(path, &db) == SQLITE_OK else { return [] }
    defer { sqlite3_close(db) }
    var statement: OpaquePointer?
    sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info('\(table)')", -1, &statement, nil)
    defer { sqlite3_finalize(statement) }
    var names = Set<String>()
    while sqlite3_step(statement) == SQLITE_ROW { names.insert(String(cString: sqlite3_column_text(statement, 0))) }
    return names
}

/// `workflow_state` as version 1 created it (the original's columns).
let versionOneWorkflowState = """
    CREATE TABLE workflow_state (
        run_id TEXT PRIMARY KEY, pipeline_id TEXT NOT NULL, pipeline_name TEXT NOT NULL, pipeline_version TEXT NOT NULL,
        current_step_index INTEGER NOT NULL DEFAULT 0, pipeline_context TEXT NOT NULL DEFAULT '{}', last_step_output TEXT,
        step_history TEXT NOT NULL DEFAULT '[]', status TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
        total_steps INTEGER NOT NULL DEFAULT 0, error_message TEXT, execution_time_ms REAL, memory_usage_mb REAL,
        metadata TEXT NOT NULL DEFAULT '{}', is_background_task INTEGER NOT NULL DEFAULT 0, parent_run_id TEXT, task_id TEXT,
        background_error TEXT
    );
    """

/// Every table of version 1: `workflow_state` as it was, the others as they still are.
var versionOneTables: String {
    let others = Schema.baseTables.components(separatedBy: "CREATE TABLE IF NOT EXISTS runs")[1]
    return versionOneWorkflowState + "CREATE TABLE IF NOT EXISTS runs" + others
}

/// The counter tables and indexes of version 3 (the due-task index came later).
var versionThreeObjects: String {
    // Without the indexes of later versions (the due index, the index of running runs).
    Schema.version2Objects.split(separator: "\n").filter { !$0.contains("workflow_state_due") && !$0.contains("workflow_state_running_runs") }.joined(separator: "\n")
}

func newPath() -> String {
    TestSupport.temporaryDirectory("flujo-migration").appendingPathComponent("state.db").path
}

@Suite("Schema migrations")
struct MigrationTests {
    @Test("a version-1 database is migrated: columns added, rows kept, counters rebuilt")
    func migratesVersionOne() async throws {
        let path = newPath()
        try rawSQL(path, versionOneTables + """
            INSERT INTO workflow_state (run_id, pipeline_id, pipeline_name, pipeline_version, status, created_at, updated_at, is_background_task, task_id, parent_run_id, background_error)
            VALUES ('p_bg_t1', 'p@1', 'p', '1', 'failed', 1000, 2000, 1, 't1', 'p', 'boom'),
                   ('p', 'p@1', 'p', '1', 'completed', 1000, 3000, 0, NULL, NULL, NULL);
            PRAGMA user_version = 1;
            """)
        #expect(try columns(path, "workflow_state").contains("background_error"))
        let store = try SQLiteStateStore(path: path)
        let migrated = try columns(path, "workflow_state")
        #expect(migrated.isSuperset(of: ["error_category", "attempts", "resumed_from", "step_name", "cost_usd", "tokens"]))
        #expect(migrated.isDisjoint(with: ["background_error", "lease_owner", "lease_expires_at"]))
        let task = try #require(try await store.loadTask(taskID: "t1"))
        #expect(task.status == .failed)
        #expect(task.attempts == 0)
        #expect(task.createdAt == Timestamp(millisecondsSince1970: 1000))
        let counters = try await store.statusCounters()
        #expect(counters.backgroundTasks[.failed] == 1)
        #expect(counters.runs[.completed] == 1)
        #expect(counters.totalRuns == 2)
        // The migrated file resumes like any other.
        guard case .claimed = try await store.claimTask(taskID: "t1", owner: "me") else {
            Issue.record("migrated task should be claimable")
            return
        }
    }

    @Test("a database at the current version but missing columns is repaired")
    func repairsMissingColumns() async throws {
        let path = newPath()
        _ = try SQLiteStateStore(path: path)
        // Simulate a damaged layout: rebuild workflow_state without two columns.
        try rawSQL(path, """
            DROP INDEX workflow_state_task_id;
            ALTER TABLE workflow_state DROP COLUMN step_name;
            ALTER TABLE workflow_state DROP COLUMN resumed_from;
            """)
        #expect(!(try columns(path, "workflow_state")).contains("step_name"))
        let store = try SQLiteStateStore(path: path)
        #expect(try columns(path, "workflow_state").isSuperset(of: ["step_name", "resumed_from"]))
        try await store.save(fullTask())
        #expect(try await store.loadTask(taskID: "bg_0123") == fullTask())
    }

    @Test("a version-3 database (the previous release) migrates: dead columns dropped, rows, counters and claims kept")
    func migratesVersionThree() async throws {
        let path = newPath()
        try rawSQL(path, versionOneTables + """
            ALTER TABLE workflow_state ADD COLUMN error_category TEXT;
            ALTER TABLE workflow_state ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE workflow_state ADD COLUMN lease_owner TEXT;
            ALTER TABLE workflow_state ADD COLUMN lease_expires_at INTEGER;
            ALTER TABLE workflow_state ADD COLUMN resumed_from TEXT;
            ALTER TABLE workflow_state ADD COLUMN step_name TEXT;
            ALTER TABLE workflow_state ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
            ALTER TABLE workflow_state ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE runs ADD COLUMN background_cost_usd REAL NOT NULL DEFAULT 0;
            ALTER TABLE runs ADD COLUMN background_tokens INTEGER NOT NULL DEFAULT 0;
            """ + versionThreeObjects + """
            INSERT INTO workflow_state (run_id, pipeline_id, pipeline_name, pipeline_version, status, created_at, updated_at,
                is_background_task, task_id, parent_run_id, background_error, error_category, attempts, lease_owner, step_name, execution_time_ms)
            VALUES ('p_bg_t3', 'p@1', 'p', '1', 'failed', 1000, 2000, 1, 't3', 'p', 'boom', 'network', 2, 'host:1', 's', 5),
                   ('p_bg_t4', 'p@1', 'p', '1', 'running', 1000, 2000, 1, 't4', 'p', NULL, NULL, 1, NULL, 's', NULL);
            """ + Schema.rebuildCounters + "PRAGMA user_version = 3;")
        let store = try SQLiteStateStore(path: path)
        #expect(try columns(path, "workflow_state").isDisjoint(with: ["background_error", "lease_owner", "lease_expires_at"]))
        let task = try #require(try await store.loadTask(taskID: "t3"))
        #expect(task.status == .failed && task.errorCategory == .network && task.attempts == 2 && task.stepName == "s")
        let counters = try await store.statusCounters()
        #expect(counters.backgroundTasks[.failed] == 1 && counters.backgroundTasks[.running] == 1 && counters.durationCount == 1)
        guard case .claimed = try await store.claimTask(taskID: "t3", owner: "me") else {
            Issue.record("a migrated task is claimable")
            return
        }
        store.releaseClaim(taskID: "t3")
        // Opening it again finds it current and changes nothing.
        _ = try SQLiteStateStore(path: path)
        #expect(try await store.loadTask(taskID: "t3") == task)
    }

    @Test("a database with a newer schema is refused, naming both versions")
    func refusesNewer() throws {
        let path = newPath()
        _ = try SQLiteStateStore(path: path)
        try rawSQL(path, "PRAGMA user_version = 7")
        #expect(throws: StateStoreError.newerSchema(path: path, found: 7, supported: Schema.currentVersion)) {
            try SQLiteStateStore(path: path)
        }
        let message = StateStoreError.newerSchema(path: path, found: 7, supported: 2).description
        #expect(message.contains("7") && message.contains("2") && message.contains("Upgrade"))
    }

    @Test("column additions off the whitelist or with unsafe definitions are refused before any SQL",
          arguments: [
            ("workflow_state", "evil", "TEXT"),
            ("workflow_state", "lease_owner; DROP TABLE runs", "TEXT"),
            ("workflow_state", "Lease_Owner", "TEXT"),
            ("sqlite_master", "lease_owner", "TEXT"),
            ("workflow_state", "lease_owner", "TEXT; DROP TABLE workflow_state"),
            ("workflow_state", "lease_owner", "TEXT DEFAULT 'x'"),
            ("workflow_state", "lease_owner", "TEXT -- comment"),
            ("workflow_state", "lease_owner", "TEXT DEFAULT (SELECT 1)"),
            ("workflow_state", "lease_owner", "TEXT NOT NULL DEFAULT 1 CHECK (1)"),
            ("workflow_state", "lease_owner", "BLOB"),
            ("workflow_state", "lease_owner", "TEXT\nNOT NULL"),
          ])
    func whitelistRefusals(table: String, name: String, definition: String) {
        #expect(throws: StateStoreError.self) {
            try Schema.validateColumnAddition(table: table, name: name, definition: definition)
        }
    }

    @Test("every whitelisted column passes its own check")
    func whitelistAccepts() throws {
        for column in Schema.addedColumns {
            try Schema.validateColumnAddition(table: column.table, name: column.name, definition: column.definition)
        }
    }
}

@Suite("Store errors a user can meet")
struct StoreErrorTests {
    @Test("a file that is not a database is named as such")
    func notADatabase() throws {
        let path = newPath()
        try Data(String(repeating: "this is not sqlite\n", count: 100).utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: StateStoreError.notADatabase(path: path)) { try SQLiteStateStore(path: path) }
    }

    @Test("a read-only store reads a closed file as a snapshot and switches to SQLite's locks when a writer arrives")
    func snapshotThenWriter() async throws {
        let path = newPath()
        let setup = try SQLiteStateStore(path: path)
        try await setup.save(fullTask(runID: "r1_bg_bg_1", taskID: "bg_1"))
        setup.close()
        let reader = try SQLiteStateStore(path: path, options: .init(readOnly: true))
        #expect(reader.snapshot.withLock { $0 } != nil, "no writer: read as a snapshot")
        #expect(try await reader.listBackgroundTasks(BackgroundTaskQuery()).count == 1)
        #expect(!FileManager.default.fileExists(atPath: path + "-wal") && !FileManager.default.fileExists(atPath: path + "-shm"))
        let writer = try SQLiteStateStore(path: path)
        try await writer.save(fullTask(runID: "r2_bg_bg_2", taskID: "bg_2"))
        #expect(try await reader.listBackgroundTasks(BackgroundTaskQuery()).count == 2, "the reader sees the writer's commit")
        #expect(reader.snapshot.withLock { $0 } == nil, "and reads through SQLite's locks from then on")
        try await writer.save(fullTask(runID: "r3_bg_bg_3", taskID: "bg_3"))
        #expect(try await reader.statusCounters().backgroundTasks[.failed] == 3)
        #expect(throws: (any Error).self) { try reader.saveNow(fullTask(runID: "x", taskID: "x"), step: nil) }
    }

    @Test("read-only opening never creates a file")
    func missingFile() throws {
        let path = newPath()
        #expect(throws: StateStoreError.missingDatabase(path: path)) {
            try SQLiteStateStore(path: path, options: .init(readOnly: true))
        }
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("a folder that cannot be created is reported with the path")
    func cannotOpen() throws {
        let blocker = TestSupport.temporaryDirectory().appendingPathComponent("file")
        try Data("x".utf8).write(to: blocker)
        let path = blocker.appendingPathComponent("sub/state.db").path
        #expect { try SQLiteStateStore(path: path) } throws: { error in
            guard case let .cannotOpen(reportedPath, _) = error as? StateStoreError else { return false }
            return reportedPath == path
        }
    }

    @Test("a folder given as the database is named as a folder, for reading and for writing")
    func folderAsDatabase() throws {
        let folder = TestSupport.temporaryDirectory().appendingPathComponent("state.db")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for options in [SQLiteStateStore.Options(), SQLiteStateStore.Options(readOnly: true)] {
            #expect { try SQLiteStateStore(path: folder.path, options: options) } throws: { error in
                guard case let .cannotOpen(reportedPath, reason) = error as? StateStoreError else { return false }
                return reportedPath == folder.path && reason.contains("is a folder")
            }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
    }

    @Test("a full disk is a clear error, nothing committed is lost, and writes work after space returns")
    func diskFull() async throws {
        let (store, path) = try makeStore()
        try await store.save(WorkflowState(runID: "kept", pipelineName: "p"))
        let pages = try pageCount(path)
        try rawSQL(path, "PRAGMA max_page_count = \(pages)")
        // max_page_count is per connection: set it on the store's own connection.
        try store.setMaxPageCountForTesting(pages)
        var failed = false
        do {
            for index in 0..<200 {
                try await store.save(WorkflowState(runID: "fill-\(index)", pipelineName: String(repeating: "x", count: 4000)))
            }
        } catch let error as StateStoreError {
            failed = true
            #expect(error == .diskFull(path: path))
            #expect(error.description.contains("full"))
        }
        #expect(failed)
        #expect(try await store.load(runID: "kept") != nil)
        try store.setMaxPageCountForTesting(1_000_000)
        try await store.save(WorkflowState(runID: "after", pipelineName: "p"))
        #expect(try await store.load(runID: "after") != nil)
        try rawSQL(path, "PRAGMA integrity_check")
    }

    @Test("a read-only file is refused for writing with a clear error")
    func readOnlyFile() async throws {
        guard getuid() != 0 else {
            // root ignores file permissions; use SQLite's own read-only mode instead.
            let (_, path) = try makeStore()
            let reader = try SQLiteStateStore(path: path, options: .init(readOnly: true))
            await #expect(throws: StateStoreError.readOnly(path: path)) {
                try await reader.save(WorkflowState(runID: "x", pipelineName: "p"))
            }
            return
        }
        let (store, path) = try makeStore()
        store.close()
        chmod(path, 0o444)
        #expect(throws: StateStoreError.readOnly(path: path)) { try SQLiteStateStore(path: path) }
    }
}

func pageCount(_ path: String) throws -> Int {
    var db: OpaquePointer?
    sqlite3_open(path, &db)
    defer { sqlite3_close(db) }
    var statement: OpaquePointer?
    sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &statement, nil)
    defer { sqlite3_finalize(statement) }
    return sqlite3_step(statement) == SQLITE_ROW ? Int(sqlite3_column_int64(statement, 0)) : 0
}
