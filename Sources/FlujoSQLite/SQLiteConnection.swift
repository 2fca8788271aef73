import CSQLite
import CSQLiteVFS
import Flujo

/// SQLite's "transient" destructor: the engine copies bound text before returning.
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// A statement's SQL text, declared once (`static let`), so the connection can
/// find its prepared form by identity instead of hashing the text each call.
final class SQL: Sendable {
    let text: String

    init(_ text: String) {
        self.text = text
    }
}

/// One libsqlite3 connection with a cache of prepared statements.
///
/// Not thread-safe by itself. `@unchecked Sendable` is safe because the only
/// owner, `SQLiteStateStore`, keeps it inside a `Mutex` and touches the handle
/// only while holding that lock (and the handle is opened with NOMUTEX).
final class SQLiteConnection: @unchecked Sendable {
    let path: String
    let busyTimeoutMs: Int
    private var handle: OpaquePointer?
    private var cache: [String: OpaquePointer] = [:]
    private var cacheByIdentity: [ObjectIdentifier: OpaquePointer] = [:]
    /// Statements handed out since the last `resetActive`: a statement left
    /// mid-result keeps a read transaction (an old snapshot) open.
    private var active: [OpaquePointer] = []

    /// Process-wide settings made once, before the first connection opens:
    /// no memory statistics (they serialize every allocation on one mutex).
    /// The batched-log VFS is registered here too (see `Sources/CSQLiteVFS/vfs.c`).
    private static let configured: Bool = flujo_sqlite3_disable_memstatus() == SQLITE_OK
    private static let batchedVFS: Int32 = flujo_sqlite3_register_batched_vfs()

    /// Opens `path`. `immutable` (read-only only) reads the file as it is, with
    /// no locks and no `-wal` or `-shm` file: for a database no writer has open.
    init(path: String, readOnly: Bool, create: Bool, busyTimeoutMs: Int, immutable: Bool = false) throws(StateStoreError) {
        _ = Self.configured
        self.path = path
        self.busyTimeoutMs = busyTimeoutMs
        var flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI
        flags |= readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE
        if create && !readOnly { flags |= SQLITE_OPEN_CREATE }
        var db: OpaquePointer?
        // Opened through the batched-log VFS when it registered; the default VFS otherwise.
        let name = immutable && readOnly ? Self.immutableURI(path) : path
        let code = sqlite3_open_v2(name, &db, flags, Self.batchedVFS == SQLITE_OK ? FLUJO_BATCHED_VFS_NAME : nil)
        if code != SQLITE_OK {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(db)
            throw SQLiteConnection.openError(path: path, code: code, message: message)
        }
        handle = db
        sqlite3_busy_timeout(db, Int32(clamping: busyTimeoutMs))
        sqlite3_extended_result_codes(db, 1)
    }

    deinit { close() }

    /// `file:` URI of `path` with `immutable=1`; `?`, `#`, `%` and non-ASCII bytes
    /// percent-encoded so the path stays the path.
    static func immutableURI(_ path: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var escaped: [UInt8] = []
        for byte in path.utf8 {
            if byte >= 0x80 || byte == UInt8(ascii: "?") || byte == UInt8(ascii: "#") || byte == UInt8(ascii: "%") {
                escaped += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            } else {
                escaped.append(byte)
            }
        }
        let encoded = String(decoding: escaped, as: UTF8.self)
        return "file:" + encoded + "?immutable=1"
    }

    func close() {
        for statement in cache.values { sqlite3_finalize(statement) }
        for statement in cacheByIdentity.values { sqlite3_finalize(statement) }
        cache.removeAll()
        cacheByIdentity.removeAll()
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
    }

    /// What the batched-log VFS did for this connection's log: writes SQLite
    /// asked for and writes made to the file. Nil when the VFS is not in use.
    var logWriteStats: (requested: Int, file: Int)? {
        var stats = FlujoWALStats()
        guard let handle, sqlite3_file_control(handle, "main", FLUJO_FCNTL_WAL_STATS, &stats) == SQLITE_OK else { return nil }
        return (Int(stats.requestedWrites), Int(stats.fileWrites))
    }

    /// The main database's file name as SQLite resolved it; empty when in memory.
    var filename: String {
        guard let handle, let name = sqlite3_db_filename(handle, "main") else { return "" }
        return String(cString: name)
    }

    /// Whether the engine opened the main database read-only (for example a write-protected file).
    var isReadOnly: Bool { handle.map { sqlite3_db_readonly($0, "main") == 1 } ?? true }

    /// Resets every statement handed out, ending their implicit read transactions.
    func resetActive() {
        for statement in active { sqlite3_reset(statement) }
        active.removeAll(keepingCapacity: true)
    }

    /// Runs one or more statements without parameters.
    func execute(_ sql: String) throws(StateStoreError) {
        resetActive()
        var message: UnsafeMutablePointer<CChar>?
        let code = sqlite3_exec(handle, sql, nil, nil, &message)
        if code != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(code))
            sqlite3_free(message)
            throw error(code, text)
        }
    }

    /// The prepared form of a declared statement, reset and with its bindings cleared.
    func statement(_ sql: SQL) throws(StateStoreError) -> Statement {
        let key = ObjectIdentifier(sql)
        if let cached = cacheByIdentity[key] { return reuse(cached) }
        let prepared = try prepare(sql.text)
        cacheByIdentity[key] = prepared
        return reuse(prepared)
    }

    /// A prepared statement for SQL text (schema work), cached by its text.
    func statement(_ text: String) throws(StateStoreError) -> Statement {
        if let cached = cache[text] { return reuse(cached) }
        let prepared = try prepare(text)
        cache[text] = prepared
        return reuse(prepared)
    }

    private func prepare(_ text: String) throws(StateStoreError) -> OpaquePointer {
        var prepared: OpaquePointer?
        let code = sqlite3_prepare_v3(handle, text, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &prepared, nil)
        guard code == SQLITE_OK, let prepared else { throw error(code, lastMessage) }
        return prepared
    }

    private func reuse(_ prepared: OpaquePointer) -> Statement {
        sqlite3_reset(prepared)
        sqlite3_clear_bindings(prepared)
        active.append(prepared)
        return Statement(handle: prepared, connection: self)
    }

    private static let begin = SQL("BEGIN IMMEDIATE")
    private static let beginRead = SQL("BEGIN")
    private static let commit = SQL("COMMIT")
    private static let rollback = SQL("ROLLBACK")

    /// Counter changes of the open transaction (cleared when one begins),
    /// added to the counters when it commits.
    var counterChanges = CounterChanges()

    /// Runs `body` inside `BEGIN IMMEDIATE ... COMMIT`, rolling back on any error.
    /// The counter changes `body` noted are written just before the commit.
    /// With `reading`, a deferred `BEGIN`: reads in one consistent snapshot,
    /// under one shared lock instead of one per statement.
    /// The statements are prepared once, like every other.
    func transaction<T>(reading: Bool = false, _ body: () throws(StateStoreError) -> T) throws(StateStoreError) -> T {
        try statement(reading ? Self.beginRead : Self.begin).run()
        counterChanges = CounterChanges()
        do {
            let value = try body()
            resetActive()
            if !counterChanges.isEmpty {
                try counterChanges.apply(on: self)
                resetActive()
            }
            try statement(Self.commit).run()
            return value
        } catch {
            resetActive()
            _ = try? statement(Self.rollback).run()
            throw error
        }
    }

    var changes: Int { Int(sqlite3_changes(handle)) }

    var lastMessage: String { handle.map { String(cString: sqlite3_errmsg($0)) } ?? "closed" }

    /// Maps a SQLite result code to the error a user can act on.
    func error(_ code: Int32, _ message: String) -> StateStoreError {
        switch code & 0xff {
        case SQLITE_BUSY, SQLITE_LOCKED: return .locked(path: path, timeoutMs: busyTimeoutMs)
        case SQLITE_FULL: return .diskFull(path: path)
        case SQLITE_READONLY: return .readOnly(path: path)
        case SQLITE_NOTADB: return .notADatabase(path: path)
        case SQLITE_CORRUPT: return .corrupt(path: path, detail: message)
        case SQLITE_CANTOPEN: return .cannotOpen(path: path, reason: message)
        case SQLITE_PERM, SQLITE_AUTH: return .readOnly(path: path)
        default: return .storage(path: path, code: code, message: message)
        }
    }

    static func openError(path: String, code: Int32, message: String) -> StateStoreError {
        switch code & 0xff {
        case SQLITE_NOTADB: return .notADatabase(path: path)
        case SQLITE_READONLY, SQLITE_PERM: return .readOnly(path: path)
        default: return .cannotOpen(path: path, reason: message)
        }
    }
}

/// A prepared statement borrowed from the connection's cache.
struct Statement {
    let handle: OpaquePointer
    unowned let connection: SQLiteConnection

    func bind(_ index: Int32, _ value: String?) {
        if var value {
            // The byte count, not -1: a text may hold NUL characters, and SQLite keeps them.
            _ = value.withUTF8 { bytes in
                bytes.withMemoryRebound(to: CChar.self) { chars in
                    if let base = chars.baseAddress {
                        sqlite3_bind_text(handle, index, base, Int32(clamping: chars.count), transient)
                    } else {
                        sqlite3_bind_text(handle, index, "", 0, transient)
                    }
                }
            }
        } else {
            sqlite3_bind_null(handle, index)
        }
    }

    func bind(_ index: Int32, _ value: Int64?) {
        if let value { sqlite3_bind_int64(handle, index, value) } else { sqlite3_bind_null(handle, index) }
    }

    func bind(_ index: Int32, _ value: Int?) { bind(index, value.map(Int64.init)) }

    func bind(_ index: Int32, _ value: Double?) {
        if let value { sqlite3_bind_double(handle, index, value) } else { sqlite3_bind_null(handle, index) }
    }

    func bind(_ index: Int32, _ value: Bool) { sqlite3_bind_int64(handle, index, value ? 1 : 0) }

    func bind(_ index: Int32, _ value: Timestamp?) { bind(index, value?.millisecondsSince1970) }

    /// Makes the statement ready to run again with new bindings.
    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    /// Steps once; true when a row is available.
    func step() throws(StateStoreError) -> Bool {
        let code = sqlite3_step(handle)
        switch code {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let message = connection.lastMessage
            sqlite3_reset(handle)
            throw connection.error(code, message)
        }
    }

    /// Steps until done, ignoring rows.
    func run() throws(StateStoreError) {
        while try step() {}
    }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    func string(_ column: Int32) -> String? {
        guard let text = sqlite3_column_text(handle, column) else { return nil }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }

    func int(_ column: Int32) -> Int { Int(sqlite3_column_int64(handle, column)) }

    func double(_ column: Int32) -> Double { sqlite3_column_double(handle, column) }

    func optionalDouble(_ column: Int32) -> Double? { isNull(column) ? nil : double(column) }

    func timestamp(_ column: Int32) -> Timestamp { Timestamp(millisecondsSince1970: int64(column)) }

    func optionalTimestamp(_ column: Int32) -> Timestamp? { isNull(column) ? nil : timestamp(column) }
}
