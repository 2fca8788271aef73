import CSQLite
import Flujo
import Foundation
import Logging
import Synchronization

/// Keys of the step log: wall-clock nanoseconds, strictly increasing within a
/// process, so a run's steps sort in the order they were written and sit
/// together in the `steps` table (one page touched per step).
enum StepSequence {
    /// One per process, because keys must increase across every store of the process that writes the same file.
    private static let last = Mutex<Int64>(0)

    static func next() -> Int64 {
        let now = Int64(bitPattern: Identifiers.nowUnixNano())
        return last.withLock { last in
            last = max(now, last + 1)
            return last
        }
    }
}

/// A `StateStore` on a SQLite file, through libsqlite3.
///
/// WAL journal, a busy timeout, prepared statements reused, every value bound
/// as a parameter. Many tasks may share one store (calls are serialized on its
/// connection) and many processes may share one file (SQLite's locking; writes
/// use `BEGIN IMMEDIATE`). Calls run on the caller's thread: they are short,
/// except that a write may wait up to the busy timeout for another process.
public final class SQLiteStateStore: StateStore {
    /// The most page cache a store's connection keeps, in KiB.
    static let cacheKiB = 65_536
    /// How the database is opened.
    public struct Options: Sendable, Hashable {
        /// `PRAGMA synchronous` in WAL mode.
        public enum Synchronous: String, Sendable, Hashable, CaseIterable {
            /// Never waits for the disk; a power loss may lose recent commits.
            case off = "OFF"
            /// Syncs at checkpoints; a power loss may lose the last commits, never corrupts.
            case normal = "NORMAL"
            /// Syncs every commit.
            case full = "FULL"
        }

        /// Durability of commits; `normal` by default.
        public var synchronous: Synchronous
        /// How long a write waits for another connection's lock, in milliseconds.
        public var busyTimeoutMs: Int
        /// Open without writing: no creation, no migration, writes fail.
        public var readOnly: Bool
        /// Create the file (and its schema) when it does not exist.
        public var createIfMissing: Bool
        /// The size the write-ahead log file is cut back to once a checkpoint
        /// has copied it into the database (`PRAGMA journal_size_limit`), in
        /// bytes. The log grows past it while a reader in another process holds
        /// an old snapshot (checkpoints cannot finish) or a burst outruns them;
        /// without a limit its file would keep that size until the last
        /// connection closes. 64 MiB by default; negative: no limit.
        public var logSizeLimitBytes: Int

        /// Creates options; the defaults suit a runner: NORMAL, 5 s, read-write, create, a 64 MiB log.
        public init(
            synchronous: Synchronous = .normal, busyTimeoutMs: Int = 5000, readOnly: Bool = false, createIfMissing: Bool = true,
            logSizeLimitBytes: Int = 64 << 20
        ) {
            self.synchronous = synchronous
            self.busyTimeoutMs = busyTimeoutMs
            self.readOnly = readOnly
            self.createIfMissing = createIfMissing
            self.logSizeLimitBytes = logSizeLimitBytes
        }
    }

    /// The database file.
    public let path: String
    let connection: Mutex<SQLiteConnection>
    let pendingWrites = Mutex<(leading: Bool, jobs: [WriteJob])>((false, []))
    /// Whether the last committed batch held more than one write.
    let writesArriveTogether = Atomic<Bool>(false)
    /// The database file as SQLite resolved it, and what its claims are kept under.
    let filename: String
    let claimKey: TaskClaims.Key
    /// Stands for an in-memory database in `TaskClaims`.
    private final class Token: Sendable {}
    private let token = Token()
    /// The claims this store holds, released at the latest when it goes away.
    let heldClaims = Mutex<Set<String>>([])
    /// A read-only store opened while no writer had the file open reads it as
    /// an immutable snapshot (no locks, no `-wal` or `-shm` created, nothing
    /// written): this is the file as it was then. Every read checks it still
    /// is; if a writer came since, the store reopens through SQLite's locks.
    let snapshot: Mutex<FileFingerprint?>
    private let options: Options

    /// Opens (and, unless read-only, creates or migrates) the database at `path`.
    public init(path: String, options: Options = Options()) throws(StateStoreError) {
        self.path = path
        // A URI of another store (postgres://...) is not a file name: never create a file for it.
        if let scheme = path.firstRange(of: "://").map({ path[..<$0.lowerBound] }), !scheme.isEmpty,
           scheme.allSatisfy({ $0.isLetter || $0.isNumber || "+-.".contains($0) }) {
            throw .cannotOpen(path: path, reason: scheme.lowercased().hasPrefix("postgres")
                ? "this is a PostgreSQL URI, not a SQLite file: open it with FlujoPostgres's PostgresStateStore (the flujo command does)"
                : "a \(scheme):// URI is not a SQLite file path; give a file path")
        }
        var isFolder: ObjCBool = false
        let exists = path == ":memory:" || FileManager.default.fileExists(atPath: path, isDirectory: &isFolder)
        if isFolder.boolValue {
            throw .cannotOpen(path: path, reason: "it is a folder, not a file (for example \((path as NSString).appendingPathComponent("state.db")) would be a file in it)")
        }
        if !exists && (options.readOnly || !options.createIfMissing) {
            throw .missingDatabase(path: path)
        }
        if !exists {
            let folder = (path as NSString).deletingLastPathComponent
            if !folder.isEmpty && !FileManager.default.fileExists(atPath: folder) {
                do {
                    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                } catch {
                    throw .cannotOpen(path: path, reason: "cannot create folder \(folder): \(error.localizedDescription)")
                }
            }
        }
        self.options = options
        // No log file: no writer has the database open, so it can be read as it is.
        let fingerprint = options.readOnly && path != ":memory:" && !FileManager.default.fileExists(atPath: path + "-wal")
            ? FileFingerprint(path: path) : nil
        let connection = try SQLiteConnection(
            path: path, readOnly: options.readOnly, create: options.createIfMissing, busyTimeoutMs: options.busyTimeoutMs,
            immutable: fingerprint != nil)
        if !options.readOnly && connection.isReadOnly {
            throw .readOnly(path: path)
        }
        // Triggers, views and defaults in a file's schema run with this process's
        // rights; a file we did not write may carry ones that are not ours, so
        // SQL functions with side effects may not run from the schema.
        try connection.execute("PRAGMA trusted_schema = OFF")
        // A page cache of up to 64 MiB (SQLite's default is 2 MiB), filled only as
        // pages are read: the indexes of a busy store stay in memory instead of
        // being copied in from the kernel at every statement.
        try connection.execute("PRAGMA cache_size = -\(SQLiteStateStore.cacheKiB)")
        // The first statement that reads the file tells a non-database apart.
        _ = try Schema.userVersion(connection)
        // Before anything is migrated or written: nothing of the schema that Flujo did not create may run.
        let foreign = try SchemaAudit.foreignObjects(connection)
        if !foreign.isEmpty { throw .foreignSchema(path: path, objects: foreign) }
        if options.readOnly {
            let version = try Schema.userVersion(connection)
            if version > Schema.currentVersion {
                throw .newerSchema(path: path, found: version, supported: Schema.currentVersion)
            }
            if version < Schema.oldestReadableVersion {
                throw .olderSchema(path: path, found: version, supported: Schema.currentVersion)
            }
        } else {
            try connection.execute("PRAGMA journal_mode = WAL")
            try connection.execute("PRAGMA synchronous = \(options.synchronous.rawValue)")
            // Checkpoint every 4,000 pages (16 MiB) rather than 1,000: each
            // checkpoint syncs the log and the file, and per-step commits are small.
            try connection.execute("PRAGMA wal_autocheckpoint = 4000")
            // A log that a long reader or a burst made large is cut back once checkpointed.
            try connection.execute("PRAGMA journal_size_limit = \(max(-1, options.logSizeLimitBytes))")
            // Statement journals (pages a statement may have to undo) stay in memory
            // rather than spilling to a temporary file once past 64 KiB.
            try connection.execute("PRAGMA temp_store = MEMORY")
            try Schema.migrate(connection)
        }
        self.filename = connection.filename
        Self.warnIfShared(connection.filename)
        self.claimKey = TaskClaims.key(filename: connection.filename, token: token)
        self.connection = Mutex(connection)
        self.snapshot = Mutex(fingerprint)
    }

    /// Opens the database `[state]` names, with its `synchronous` and
    /// `busy_timeout_ms`: an embedded store configured exactly as the `flujo` command's.
    public convenience init(settings: StateSettings, readOnly: Bool = false) throws(StateStoreError) {
        try self.init(path: settings.path, options: Options(
            synchronous: Options.Synchronous(rawValue: settings.synchronous.uppercased()) ?? .normal,
            busyTimeoutMs: settings.busyTimeoutMs, readOnly: readOnly, createIfMissing: !readOnly))
    }

    /// Files already warned about in this process: one warning per file, however many stores open it.
    private static let warnedFiles = Mutex<Set<String>>([])

    /// Logs once per file when it is on a network file system (see `NetworkFileSystem`).
    private static func warnIfShared(_ filename: String) {
        guard let fileSystem = NetworkFileSystem.name(holding: filename),
              warnedFiles.withLock({ $0.insert(filename).inserted }) else { return }
        Logger(label: "flujo.sqlite").warning("\(NetworkFileSystem.warning(path: filename, fileSystem: fileSystem))")
    }

    deinit {
        for taskID in heldClaims.withLock({ $0 }) { TaskClaims.shared.release(taskID, key: claimKey) }
    }

    /// Copies the write-ahead log into the database file and starts the log over
    /// from its beginning, keeping its file (`PRAGMA wal_checkpoint(RESTART)`):
    /// for example before copying the database file. Waits up to the busy
    /// timeout for readers of other connections.
    public func checkpoint() throws(StateStoreError) {
        try withConnection { (connection) throws(StateStoreError) in
            let statement = try connection.statement(Self.checkpointSQL)
            guard try statement.step() else { return }
            if statement.int(0) != 0 { throw .locked(path: path, timeoutMs: connection.busyTimeoutMs) }
        }
    }

    private static let checkpointSQL = SQL("PRAGMA wal_checkpoint(RESTART)")

    /// The schema version of the file (`PRAGMA user_version`).
    public var schemaVersion: Int {
        (try? withConnection { (connection) throws(StateStoreError) in try Schema.userVersion(connection) }) ?? 0
    }

    /// Closes the connection; later calls fail.
    public func close() {
        connection.withLock { $0.close() }
    }

    /// The batched-log VFS's counts for this store's connection (for tests).
    var logWriteStats: (requested: Int, file: Int)? {
        try? withConnection { (connection) throws(StateStoreError) in connection.logWriteStats }
    }

    func withConnection<T>(_ body: (SQLiteConnection) throws(StateStoreError) -> T) throws(StateStoreError) -> T {
        guard let expected = snapshot.withLock({ $0 }) else { return try withCurrentConnection(body) }
        let result = Result { () throws(StateStoreError) -> T in try withCurrentConnection(body) }
        if FileFingerprint(path: path) == expected && !FileManager.default.fileExists(atPath: path + "-wal") {
            return try result.get()
        }
        // A writer opened the file while it was read as a snapshot: read it again through SQLite's locks.
        let locked = try SQLiteConnection(path: path, readOnly: true, create: false, busyTimeoutMs: options.busyTimeoutMs)
        try locked.execute("PRAGMA trusted_schema = OFF")
        connection.withLock { old in
            old.close()
            old = locked
        }
        snapshot.withLock { $0 = nil }
        return try withCurrentConnection(body)
    }

    private func withCurrentConnection<T>(_ body: (SQLiteConnection) throws(StateStoreError) -> T) throws(StateStoreError) -> T {
        do {
            return try connection.withLock { connection in
                defer { connection.resetActive() }
                return try body(connection)
            }
        } catch let error as StateStoreError {
            throw error
        } catch {
            throw .storage(path: path, code: 0, message: "\(error)")
        }
    }
}
