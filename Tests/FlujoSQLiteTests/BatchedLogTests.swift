import CSQLite
import CSQLiteVFS
import Flujo
import FlujoTestSupport
import Foundation
import Testing

@testable import FlujoSQLite

/// A raw connection for checking what the store wrote, through the batched VFS or the default one.
private final class RawConnection {
    let handle: OpaquePointer

    init(_ path: String, batched: Bool) throws {
        #expect(flujo_sqlite3_register_batched_vfs() == SQLITE_OK)
        var db: OpaquePointer?
        let code = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, batched ? FLUJO_BATCHED_VFS_NAME : nil)
        guard code == SQLITE_OK, let db else { throw RawError("open \(path): \(code)") }
        handle = db
        sqlite3_busy_timeout(db, 5000)
    }

    deinit { sqlite3_close_v2(handle) }

    func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let code = sqlite3_exec(handle, sql, nil, nil, &message)
        defer { sqlite3_free(message) }
        if code != SQLITE_OK { throw RawError("\(sql.prefix(60)): \(message.map { String(cString: $0) } ?? "\(code)")") }
    }

    func text(_ sql: String) throws -> String {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK else { throw RawError("prepare \(sql)") }
        defer { sqlite3_finalize(statement) }
        guard sqlite3_step(statement) == SQLITE_ROW, let value = sqlite3_column_text(statement, 0) else { return "" }
        return String(cString: value)
    }

    var stats: FlujoWALStats {
        var stats = FlujoWALStats()
        #expect(sqlite3_file_control(handle, "main", FLUJO_FCNTL_WAL_STATS, &stats) == SQLITE_OK)
        return stats
    }
}

private struct RawError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@Suite("The batched-log VFS")
struct BatchedLogTests {
    func path() -> String {
        TestSupport.temporaryDirectory("flujo-vfs").appendingPathComponent("log.db").path
    }

    @Test("a commit of many pages reaches the log in one write; a large one in few")
    func oneWritePerCommit() throws {
        let db = try RawConnection(path(), batched: true)
        try db.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        let before = db.stats
        try db.execute("BEGIN; INSERT INTO t SELECT value, printf('%02000d', value) FROM (WITH RECURSIVE c(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM c WHERE value < 20) SELECT value FROM c); COMMIT")
        let small = db.stats
        // 20 rows of 2 kB: about ten pages, two writes asked for each.
        #expect(small.requestedWrites - before.requestedWrites >= 20)
        #expect(small.fileWrites - before.fileWrites == 1)
        try db.execute("BEGIN; INSERT INTO t SELECT value, printf('%02000d', value) FROM (WITH RECURSIVE c(value) AS (SELECT 21 UNION ALL SELECT value + 1 FROM c WHERE value < 2000) SELECT value FROM c); COMMIT")
        let large = db.stats
        let asked = large.requestedWrites - small.requestedWrites
        let made = large.fileWrites - small.fileWrites
        // About 1,000 pages (4 MB): one write per 124 KiB of frames.
        #expect(asked >= 1_800)
        #expect(made >= 2 && made <= 40, "\(made) writes for \(asked) asked")
    }

    @Test("every commit is seen at once by a connection through the default VFS; the file checks out afterwards")
    func visibleAndIntact() throws {
        let file = path()
        let writer = try RawConnection(file, batched: true)
        try writer.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 100; CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        let reader = try RawConnection(file, batched: false)
        for index in 1...300 {
            // Some commits are one page, some span several write-outs.
            let width = index % 50 == 0 ? 400_000 : 100
            try writer.execute("INSERT INTO t VALUES (\(index), printf('%0\(width)d', \(index)))")
            #expect(try reader.text("SELECT count(*) FROM t") == "\(index)")
            if index % 97 == 0 { try writer.execute("PRAGMA wal_checkpoint(RESTART)") }
        }
        try writer.execute("BEGIN; UPDATE t SET v = v || 'x' WHERE k % 3 = 0; ROLLBACK")
        try writer.execute("UPDATE t SET v = 'y' WHERE k % 7 = 0")
        let expected = try writer.text("SELECT sum(length(v)) FROM t")
        let check = try RawConnection(file, batched: false)
        #expect(try check.text("PRAGMA integrity_check") == "ok")
        #expect(try check.text("SELECT sum(length(v)) FROM t") == expected)
        #expect(try check.text("SELECT count(*) FROM t WHERE v = 'y'") == "42")
    }

    @Test("the store writes through it: one file write per commit")
    func storeUsesIt() async throws {
        let (store, _) = try makeStore()
        let before = try #require(store.logWriteStats)
        for index in 0..<20 {
            try await store.save(fullTask(runID: "r\(index)", taskID: "t\(index)"), step: StepRecord(runID: "r\(index)", stepIndex: 0, stepName: "s", success: true), parentUsage: nil)
        }
        let after = try #require(store.logWriteStats)
        #expect(after.file - before.file == 20)
        #expect(after.requested - before.requested >= 20 * 4)
    }

    @Test("a log write refused by the system fails its commit; nothing committed is lost and the next write succeeds")
    func refusedWrite() async throws {
        let (_, file) = try makeStore()
        let result = try await TestSupport.run(TestSupport.executable("FlujoTestHelper"), ["filelimit", file])
        #expect(result.status == 0, "helper failed: \(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        #expect(lines.first?.hasPrefix("refused ") == true, "\(lines)")
        #expect(lines.last == "recovered")
        let store = try SQLiteStateStore(path: file)
        #expect(try await store.load(runID: "before") != nil)
        #expect(try await store.load(runID: "after") != nil)
        #expect(try await store.load(runID: "big") == nil)
        #expect(try await store.statusCounters().totalRuns == 2)
        let check = try RawConnection(file, batched: false)
        #expect(try check.text("PRAGMA integrity_check") == "ok")
    }
}

@Suite("The write-ahead log's size")
struct LogSizeLimitTests {
    @Test("a log that grew while another process held an old snapshot is cut back to the limit once checkpointed, not kept at its largest")
    func logCutBack() async throws {
        let (store, path) = try makeStore(.init(logSizeLimitBytes: 1 << 20))
        func logBytes() -> Int { ((try? FileManager.default.attributesOfItem(atPath: path + "-wal"))?[.size] as? Int) ?? 0 }
        func write(_ batch: Int) async throws {
            let writes = (0..<100).map { index in
                var task = fullTask(runID: "run_\(batch)_bg_\(index)", taskID: "bg_\(batch)_\(index)")
                task.contextJSON = "\"" + String(repeating: "c", count: 3000) + "\""
                return StateWrite(task)
            }
            try await store.save(writes)
        }
        // Another connection reads inside a transaction: no checkpoint can start the log over.
        let reader = try SQLiteConnection(path: path, readOnly: true, create: false, busyTimeoutMs: 1000)
        try reader.execute("BEGIN")
        try reader.execute("SELECT count(*) FROM workflow_state")
        for batch in 0..<20 { try await write(batch) }
        let grown = logBytes()
        #expect(grown > 4 << 20, "2,000 rows of 3 KB while the snapshot is held: \(grown) bytes")
        try reader.execute("COMMIT")
        reader.close()
        // Checkpointed, then written again: the log starts over and its file is cut to the limit.
        try store.checkpoint()
        try await write(100)
        #expect(logBytes() <= 1 << 20, "\(logBytes()) bytes after the checkpoint, \(grown) before")
        store.close()
    }
}
