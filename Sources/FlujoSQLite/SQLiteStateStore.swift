import CSQLite
import Flujo
import Foundation
import Synchronization

/// Keys of the step log: wall-clock nanoseconds, strictly increasing within a
/// process, so a run's steps sort in the order they were written and sit
/// together in the `steps` table (one page touched per step).
enum StepSequence {
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

        /// Creates options; the defaults suit a runner: NORMAL, 5 s, read-write, create.
        public init(synchronous: Synchronous = .normal, busyTimeoutMs: Int = 5000, readOnly: Bool = false, createIfMissing: Bool = true) {
            self.synchronous = synchronous
            self.busyTimeoutMs = busyTimeoutMs
            self.readOnly = readOnly
            self.createIfMissing = createIfMissing
        }
    }

    /// The database file.
    public let path: String
    private let connection: Mutex<SQLiteConnection>
    private let pendingWrites = Mutex<(leading: Bool, jobs: [WriteJob])>((false, []))
    /// The database file as SQLite resolved it, and what its claims are kept under.
    private let filename: String
    private let claimKey: TaskClaims.Key
    /// Stands for an in-memory database in `TaskClaims`.
    private final class Token: Sendable {}
    private let token = Token()
    /// The claims this store holds, released at the latest when it goes away.
    private let heldClaims = Mutex<Set<String>>([])

    /// Opens (and, unless read-only, creates or migrates) the database at `path`.
    public init(path: String, options: Options = Options()) throws(StateStoreError) {
        self.path = path
        let exists = path == ":memory:" || FileManager.default.fileExists(atPath: path)
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
        let connection = try SQLiteConnection(
            path: path, readOnly: options.readOnly, create: options.createIfMissing, busyTimeoutMs: options.busyTimeoutMs)
        if !options.readOnly && connection.isReadOnly {
            throw .readOnly(path: path)
        }
        // The first statement that reads the file tells a non-database apart.
        _ = try Schema.userVersion(connection)
        if options.readOnly {
            let version = try Schema.userVersion(connection)
            if version > Schema.currentVersion {
                throw .newerSchema(path: path, found: version, supported: Schema.currentVersion)
            }
            if version < Schema.currentVersion {
                throw .storage(path: path, code: 0, message: "schema version \(version) predates version \(Schema.currentVersion); open it once read-write to migrate it")
            }
        } else {
            try connection.execute("PRAGMA journal_mode = WAL")
            try connection.execute("PRAGMA synchronous = \(options.synchronous.rawValue)")
            // Checkpoint every 4,000 pages (16 MiB) rather than 1,000: each
            // checkpoint syncs the log and the file, and per-step commits are small.
            try connection.execute("PRAGMA wal_autocheckpoint = 4000")
            // Statement journals (pages a statement may have to undo) stay in memory
            // rather than spilling to a temporary file once past 64 KiB.
            try connection.execute("PRAGMA temp_store = MEMORY")
            try Schema.migrate(connection)
        }
        self.filename = connection.filename
        self.claimKey = TaskClaims.key(filename: connection.filename, token: token)
        self.connection = Mutex(connection)
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

    /// Closes the connection; later calls fail.
    public func close() {
        connection.withLock { $0.close() }
    }

    /// The batched-log VFS's counts for this store's connection (for tests).
    var logWriteStats: (requested: Int, file: Int)? {
        try? withConnection { (connection) throws(StateStoreError) in connection.logWriteStats }
    }

    private func withConnection<T>(_ body: (SQLiteConnection) throws(StateStoreError) -> T) throws(StateStoreError) -> T {
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

    // MARK: - Group commit

    private struct WriteJob: Sendable {
        let work: @Sendable (SQLiteConnection) -> StateStoreError?
        let done: CheckedContinuation<StateStoreError?, Never>
    }

    /// Written by the write's leader before the write's own continuation resumes,
    /// read by the writer after it: the continuation orders the two.
    private final class ResultBox<T>: @unchecked Sendable {
        var value: T?
    }

    /// Runs `body` in a write transaction, committed together with the writes
    /// other tasks of this process make at the same moment (group commit).
    ///
    /// The first writer to arrive leads: it commits its own write with every
    /// write queued meanwhile in one transaction (see `commit`) and resumes
    /// their writers, which wait suspended instead of blocking a thread on the
    /// connection's lock. While writes have been arriving together (the last
    /// batch held more than one), a leader first yields once, so concurrent
    /// writers can queue behind it; a lone writer never waits. Each caller
    /// returns only after its write is committed.
    private func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws(StateStoreError) -> T) async throws(StateStoreError) -> T {
        let box = ResultBox<T>()
        let work: @Sendable (SQLiteConnection) -> StateStoreError? = { connection in
            do throws(StateStoreError) {
                box.value = try body(connection)
                return nil
            } catch {
                return error
            }
        }
        let leads = pendingWrites.withLock { state -> Bool in
            guard !state.leading && state.jobs.isEmpty else { return false }
            state.leading = true
            return true
        }
        if leads {
            if writesArriveTogether.load(ordering: .relaxed) { await Task.yield() }
            let queued = pendingWrites.withLock { state -> [WriteJob] in
                defer { state.jobs.removeAll(keepingCapacity: true) }
                return state.jobs
            }
            let results = commit([work] + queued.map(\.work))
            for (job, result) in zip(queued, results.dropFirst()) { job.done.resume(returning: result) }
            drainWrites()
            if let failure = results[0] { throw failure }
            return box.value!
        }
        let failure: StateStoreError? = await withCheckedContinuation { continuation in
            let job = WriteJob(work: work, done: continuation)
            let leadsNow = pendingWrites.withLock { state -> Bool in
                state.jobs.append(job)
                if state.leading { return false }
                state.leading = true
                return true
            }
            if leadsNow { drainWrites() }
        }
        if let failure { throw failure }
        return box.value!
    }

    /// Whether the last committed batch held more than one write.
    private let writesArriveTogether = Atomic<Bool>(false)

    /// Commits queued writes batch by batch; after a few batches hands the rest
    /// to a new task, so no single writer serves others for long.
    private func drainWrites() {
        for _ in 0..<4 {
            let batch = pendingWrites.withLock { state -> [WriteJob] in
                if state.jobs.isEmpty {
                    state.leading = false
                    return []
                }
                defer { state.jobs.removeAll(keepingCapacity: true) }
                return state.jobs
            }
            if batch.isEmpty { return }
            let results = commit(batch.map(\.work))
            for (job, result) in zip(batch, results) { job.done.resume(returning: result) }
        }
        Task { self.drainWrites() }
    }

    /// Commits a batch in one transaction. If one write fails, nothing of the
    /// batch is kept and each write runs again in its own transaction, so one
    /// failure does not undo the others (a write's body may run twice).
    private func commit(_ batch: [@Sendable (SQLiteConnection) -> StateStoreError?]) -> [StateStoreError?] {
        writesArriveTogether.store(batch.count > 1, ordering: .relaxed)
        if batch.count > 1 {
            do {
                try withConnection { (connection) throws(StateStoreError) in
                    try connection.transaction { () throws(StateStoreError) in
                        for work in batch { if let error = work(connection) { throw error } }
                    }
                }
                return Array(repeating: nil, count: batch.count)
            } catch {}
        }
        return batch.map { work -> StateStoreError? in
            do throws(StateStoreError) {
                try withConnection { (connection) throws(StateStoreError) in
                    try connection.transaction { () throws(StateStoreError) in
                        if let error = work(connection) { throw error }
                    }
                }
                return nil
            } catch {
                return error
            }
        }
    }

    /// Caps the file at `pages` pages on this connection, to simulate a full disk in tests.
    func setMaxPageCountForTesting(_ pages: Int) throws(StateStoreError) {
        try withConnection { (connection) throws(StateStoreError) in
            try connection.execute("PRAGMA max_page_count = \(pages)")
        }
    }

    // MARK: - Runs

    static let stateColumns = """
        run_id, pipeline_id, pipeline_name, pipeline_version, current_step_index, pipeline_context,
        last_step_output, step_history, status, created_at, updated_at, total_steps, error_message,
        execution_time_ms, memory_usage_mb, metadata, is_background_task, parent_run_id, task_id,
        background_error, error_category, attempts, lease_owner, lease_expires_at, resumed_from,
        step_name, cost_usd, tokens
        """

    private static let loadRun = SQL("SELECT \(stateColumns) FROM workflow_state WHERE run_id = ?1")
    private static let loadTaskSQL = SQL("SELECT \(stateColumns) FROM workflow_state WHERE task_id = ?1")
    private static let taskIDPrefix = SQL("SELECT task_id FROM workflow_state WHERE task_id >= ?1 AND task_id < ?1 || x'ff' ORDER BY task_id LIMIT ?2")
    private static let heartbeatSQL = SQL("UPDATE workflow_state SET updated_at = ?2 WHERE run_id = ?1 AND status = 'running'")
    /// `OR FAIL`: a failure keeps the rows already changed instead of undoing them,
    /// so SQLite keeps no statement journal (a copy of every page the update
    /// touches); the enclosing transaction still rolls back as a whole on any error.
    private static let failStale = SQL("""
        UPDATE OR FAIL workflow_state
        SET status = 'failed', updated_at = ?2, error_message = ?3, background_error = ?3,
            error_category = 'timeout', lease_owner = NULL, lease_expires_at = NULL
        WHERE is_background_task = 1 AND status = 'running' AND updated_at < ?1
        """)
    private static let addUsageSQL = SQL("UPDATE runs SET background_cost_usd = background_cost_usd + ?2, background_tokens = background_tokens + ?3 WHERE run_id = ?1")
    private static let runTotalsSQL = SQL("""
        SELECT w.cost_usd, w.tokens, COALESCE(r.background_cost_usd, 0), COALESCE(r.background_tokens, 0)
        FROM workflow_state AS w LEFT JOIN runs AS r ON r.run_id = w.run_id WHERE w.run_id = ?1
        """)
    private static let stepsSQL = SQL("""
        SELECT run_id, step_index, step_name, success, output, attempts, latency_s, cost_usd, tokens, feedback, finished_at
        FROM steps WHERE run_id = ?1 ORDER BY seq
        """)
    private static let countsSQL = SQL("SELECT is_background, status, count FROM status_counts")
    private static let totalsSQL = SQL("SELECT name, value FROM stat_totals")
    private static let hoursSQL = SQL("SELECT COALESCE(sum(count), 0) FROM created_per_hour WHERE hour >= ?1")
    private static let edgeSQL = SQL("SELECT count(*) FROM workflow_state WHERE created_at >= ?1 AND created_at < ?2")
    private static let saveSpanSQL = SQL("""
        INSERT OR REPLACE INTO spans (span_id, trace_id, parent_span_id, run_id, name, start_unix_nano,
            end_unix_nano, status, status_message, attributes, is_background)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
        """)
    private static let spansSQL = SQL("""
        SELECT span_id, trace_id, parent_span_id, run_id, name, start_unix_nano, end_unix_nano, status,
            status_message, attributes, is_background
        FROM spans WHERE trace_id IN (SELECT trace_id FROM spans WHERE run_id = ?1)
        ORDER BY start_unix_nano, span_id
        """)

    private static let insertState = SQL("""
        INSERT INTO workflow_state (\(stateColumns))
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)
        """)

    /// Every column but the row's identity (run id, creation time, background
    /// flag, parent, task id), bound by the same numbers as `insertState`
    /// (numbers it does not use are bound and ignored).
    private static let updateState = SQL("""
        UPDATE workflow_state SET
            pipeline_id = ?2, pipeline_name = ?3, pipeline_version = ?4, current_step_index = ?5,
            pipeline_context = ?6, last_step_output = ?7, step_history = ?8, status = ?9, updated_at = ?11,
            total_steps = ?12, error_message = ?13, execution_time_ms = ?14, memory_usage_mb = ?15,
            metadata = ?16, background_error = ?20, error_category = ?21, attempts = ?22, lease_owner = ?23,
            lease_expires_at = ?24, resumed_from = ?25, step_name = ?26, cost_usd = ?27, tokens = ?28
        WHERE run_id = ?1
        """)

    /// What the counters need of a row about to be rewritten.
    private static let existingRow = SQL("SELECT status, execution_time_ms, is_background_task FROM workflow_state WHERE run_id = ?1")

    private static let upsertRun = SQL("""
        INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, started_at, ended_at, cost_usd, tokens)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
        ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at,
            cost_usd = excluded.cost_usd, tokens = excluded.tokens
        WHERE runs.status IS NOT excluded.status OR runs.ended_at IS NOT excluded.ended_at
            OR runs.cost_usd IS NOT excluded.cost_usd OR runs.tokens IS NOT excluded.tokens
        """)

    private static let insertStep = SQL("""
        INSERT INTO steps (run_id, step_index, step_name, success, output, attempts, latency_s, cost_usd, tokens, feedback, finished_at, seq)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
        """)

    public func save(_ state: WorkflowState, step: StepRecord?, parentUsage: Usage?) async throws {
        try await write { (connection) throws(StateStoreError) in
            try Self.write(state, step: step, parentUsage: parentUsage, on: connection)
        }
    }

    public func save(_ writes: [StateWrite]) async throws {
        try await write { (connection) throws(StateStoreError) in
            for item in writes { try Self.write(item.state, step: item.step, parentUsage: item.parentUsage, on: connection) }
        }
    }

    /// The synchronous body of `save`, for callers already off the cooperative pool.
    public func saveNow(_ state: WorkflowState, step: StepRecord?, parentUsage: Usage? = nil) throws(StateStoreError) {
        try withConnection { (connection) throws(StateStoreError) in
            try connection.transaction { () throws(StateStoreError) in
                try Self.write(state, step: step, parentUsage: parentUsage, on: connection)
            }
        }
    }

    /// Saves many states in one transaction (imports, tests, benchmarks):
    /// the same upsert as `save`, committed once.
    public func saveAll(_ states: [WorkflowState]) throws(StateStoreError) {
        try withConnection { (connection) throws(StateStoreError) in
            try connection.transaction { () throws(StateStoreError) in
                for state in states { try Self.write(state, step: nil, parentUsage: nil, on: connection) }
            }
        }
    }

    /// What a step of a running run changes: a narrower write than the full upsert.
    private static let progressState = SQL("""
        UPDATE workflow_state
        SET current_step_index = ?2, pipeline_context = ?3, last_step_output = ?4, updated_at = ?5, cost_usd = ?6, tokens = ?7
        WHERE run_id = ?1 AND status = 'running'
        """)

    /// Upserts the state and its run totals, appends the step and adds the usage
    /// to the parent's totals, inside the caller's transaction.
    private static func write(_ state: WorkflowState, step: StepRecord?, parentUsage: Usage?, on connection: SQLiteConnection) throws(StateStoreError) {
        if let parentUsage, let parent = state.parentRunID, parentUsage.costUSD != 0 || parentUsage.tokens != 0 {
            try addUsage(parentUsage, to: parent, on: connection)
        }
        // A step of a running run changes only its progress columns; the row exists.
        var written = false
        if step != nil && state.status == .running {
            let progress = try connection.statement(progressState)
            progress.bind(1, state.runID)
            progress.bind(2, state.currentStepIndex)
            progress.bind(3, state.contextJSON)
            progress.bind(4, state.lastStepOutputJSON)
            progress.bind(5, state.updatedAt)
            progress.bind(6, state.costUSD)
            progress.bind(7, state.tokens)
            try progress.run()
            written = connection.changes == 1
        }
        if !written {
            let existing = try connection.statement(existingRow)
            existing.bind(1, state.runID)
            if try existing.step() {
                let oldStatus = existing.string(0) ?? ""
                let oldDuration = existing.optionalDouble(1)
                let isBackground = existing.int(2) != 0
                existing.reset()
                let update = try connection.statement(updateState)
                bind(state, to: update)
                try update.run()
                connection.counterChanges.moved(isBackground: isBackground, from: oldStatus, to: state.status.rawValue)
                connection.counterChanges.duration(from: oldDuration, to: state.executionTimeMs)
            } else {
                let insert = try connection.statement(insertState)
                bind(state, to: insert)
                try insert.run()
                connection.counterChanges.inserted(
                    isBackground: state.isBackgroundTask, status: state.status.rawValue,
                    createdAtMs: state.createdAt.millisecondsSince1970, executionTimeMs: state.executionTimeMs)
            }
            // The run's row in `runs` changes with its status; its own usage is read from
            // workflow_state (see runTotals), so progress writes leave `runs` alone, and
            // background tasks, which launch nothing, need no row there.
            if state.isBackgroundTask { return try appendStep(step, on: connection) }
            let run = try connection.statement(upsertRun)
            run.bind(1, state.runID)
            run.bind(2, state.pipelineName)
            run.bind(3, state.pipelineVersion)
            run.bind(4, state.status.rawValue)
            run.bind(5, state.createdAt)
            run.bind(6, state.status == .running ? nil : state.updatedAt)
            run.bind(7, state.costUSD)
            run.bind(8, state.tokens)
            try run.run()
        }
        try appendStep(step, on: connection)
    }

    private static func appendStep(_ step: StepRecord?, on connection: SQLiteConnection) throws(StateStoreError) {
        guard let step else { return }
        let insert = try connection.statement(insertStep)
        insert.bind(1, step.runID)
        insert.bind(2, step.stepIndex)
        insert.bind(3, step.stepName)
        insert.bind(4, step.success)
        insert.bind(5, step.outputJSON)
        insert.bind(6, step.attempts)
        insert.bind(7, step.latencySeconds)
        insert.bind(8, step.costUSD)
        insert.bind(9, step.tokens)
        insert.bind(10, step.feedback)
        insert.bind(11, step.finishedAt)
        insert.bind(12, StepSequence.next())
        try insert.run()
    }

    private static func bind(_ state: WorkflowState, to statement: Statement) {
        statement.bind(1, state.runID)
        statement.bind(2, state.pipelineID)
        statement.bind(3, state.pipelineName)
        statement.bind(4, state.pipelineVersion)
        statement.bind(5, state.currentStepIndex)
        statement.bind(6, state.contextJSON)
        statement.bind(7, state.lastStepOutputJSON)
        statement.bind(8, state.stepHistoryJSON)
        statement.bind(9, state.status.rawValue)
        statement.bind(10, state.createdAt)
        statement.bind(11, state.updatedAt)
        statement.bind(12, state.totalSteps)
        statement.bind(13, state.errorMessage)
        statement.bind(14, state.executionTimeMs)
        statement.bind(15, state.memoryUsageMB)
        statement.bind(16, state.metadataJSON)
        statement.bind(17, state.isBackgroundTask)
        statement.bind(18, state.parentRunID)
        statement.bind(19, state.taskID)
        statement.bind(20, state.backgroundError)
        statement.bind(21, state.errorCategory?.rawValue)
        statement.bind(22, state.attempts)
        statement.bind(23, state.leaseOwner)
        statement.bind(24, state.leaseExpiresAt)
        statement.bind(25, state.resumedFrom)
        statement.bind(26, state.stepName)
        statement.bind(27, state.costUSD)
        statement.bind(28, state.tokens)
    }

    /// Reads a row selected with `stateColumns`, starting at column 0.
    static func readState(_ row: Statement) -> WorkflowState {
        WorkflowState(
            runID: row.string(0) ?? "",
            pipelineName: row.string(2) ?? "",
            pipelineVersion: row.string(3) ?? "",
            pipelineID: row.string(1),
            currentStepIndex: row.int(4),
            contextJSON: row.string(5) ?? "{}",
            lastStepOutputJSON: row.string(6),
            stepHistoryJSON: row.string(7) ?? "[]",
            status: RunStatus(rawValue: row.string(8) ?? "") ?? .failed,
            createdAt: row.timestamp(9),
            updatedAt: row.timestamp(10),
            totalSteps: row.int(11),
            errorMessage: row.string(12),
            executionTimeMs: row.optionalDouble(13),
            memoryUsageMB: row.optionalDouble(14),
            metadataJSON: row.string(15) ?? "{}",
            isBackgroundTask: row.int(16) != 0,
            parentRunID: row.string(17),
            taskID: row.string(18),
            backgroundError: row.string(19),
            errorCategory: row.string(20).flatMap(ErrorCategory.init(rawValue:)),
            attempts: row.int(21),
            leaseOwner: row.string(22),
            leaseExpiresAt: row.optionalTimestamp(23),
            resumedFrom: row.string(24),
            stepName: row.string(25),
            costUSD: row.double(26),
            tokens: row.int(27)
        )
    }

    public func load(runID: String) async throws -> WorkflowState? {
        try withConnection { (connection) throws(StateStoreError) in
            let statement = try connection.statement(Self.loadRun)
            statement.bind(1, runID)
            return try statement.step() ? Self.readState(statement) : nil
        }
    }

    public func loadTask(taskID: String) async throws -> WorkflowState? {
        try withConnection { (connection) throws(StateStoreError) in
            let statement = try connection.statement(Self.loadTaskSQL)
            statement.bind(1, taskID)
            return try statement.step() ? Self.readState(statement) : nil
        }
    }

    /// One statement per combination of filters, so each can use its index:
    /// parent_run_id with a parent, (status, updated_at) otherwise.
    private static let listQueries: [Int: SQL] = {
        var queries: [Int: SQL] = [:]
        for parent in [false, true] {
            for since in [false, true] {
                for statusCount in 0...RunStatus.allCases.count {
                    var conditions = ["is_background_task = 1"]
                    if parent { conditions.append("parent_run_id = ?1") }
                    if since { conditions.append("updated_at >= ?2") }
                    if statusCount > 0 {
                        conditions.append("status IN (" + (0..<statusCount).map { "?\($0 + 5)" }.joined(separator: ", ") + ")")
                    }
                    // With a parent, its index finds the few rows at once; without the hint the
                    // planner may walk the (status, updated_at) index to save a sort.
                    queries[listKey(parent: parent, since: since, statusCount: statusCount)] = SQL("""
                        SELECT \(stateColumns) FROM workflow_state \(parent ? "INDEXED BY workflow_state_parent" : "")
                        WHERE \(conditions.joined(separator: " AND "))
                        ORDER BY updated_at DESC, run_id
                        LIMIT ?3 OFFSET ?4
                        """)
                }
            }
        }
        return queries
    }()

    private static func listKey(parent: Bool, since: Bool, statusCount: Int) -> Int {
        (parent ? 100 : 0) + (since ? 10 : 0) + statusCount
    }

    public func listBackgroundTasks(_ query: BackgroundTaskQuery) async throws -> [WorkflowState] {
        let statuses = (query.statuses ?? []).map(\.rawValue).sorted()
        if let wanted = query.statuses, wanted.isEmpty { return [] }
        let sql = Self.listQueries[Self.listKey(parent: query.parentRunID != nil, since: query.updatedSince != nil, statusCount: statuses.count)]!
        return try withConnection { (connection) throws(StateStoreError) in
            let statement = try connection.statement(sql)
            if let parent = query.parentRunID { statement.bind(1, parent) }
            if let since = query.updatedSince { statement.bind(2, since) }
            statement.bind(3, max(0, query.limit))
            statement.bind(4, max(0, query.offset))
            for (index, status) in statuses.enumerated() { statement.bind(Int32(index + 5), status) }
            var rows: [WorkflowState] = []
            while try statement.step() { rows.append(Self.readState(statement)) }
            return rows
        }
    }

    public func taskIDs(withPrefix prefix: String, limit: Int) async throws -> [String] {
        try withConnection { (connection) throws(StateStoreError) in
            let statement = try connection.statement(Self.taskIDPrefix)
            statement.bind(1, prefix)
            statement.bind(2, limit)
            var ids: [String] = []
            while try statement.step() { if let id = statement.string(0) { ids.append(id) } }
            return ids
        }
    }

    /// Takes the task's claim (see `TaskClaims`), then reads the task: reading
    /// after taking it sees everything the previous holder committed.
    public func claimTask(taskID: String, owner: String) async throws -> ClaimResult {
        switch try TaskClaims.shared.take(taskID, owner: owner, key: claimKey, filename: filename) {
        case let .heldHere(holder): return .notClaimable(status: .running, owner: holder)
        case .heldElsewhere: return .notClaimable(status: .running, owner: nil)
        case .taken: break
        }
        var keep = false
        defer { if !keep { TaskClaims.shared.release(taskID, key: claimKey) } }
        guard let state = try await loadTask(taskID: taskID) else { return .notFound }
        guard state.status.isResumable else { return .notClaimable(status: state.status, owner: nil) }
        keep = true
        heldClaims.withLock { _ = $0.insert(taskID) }
        return .claimed(state)
    }

    public func claimedTaskIDs(among taskIDs: [String]) async throws -> Set<String> {
        TaskClaims.shared.held(among: taskIDs, key: claimKey, filename: filename)
    }

    public func releaseClaim(taskID: String) {
        guard heldClaims.withLock({ $0.remove(taskID) }) != nil else { return }
        TaskClaims.shared.release(taskID, key: claimKey)
    }

    public func heartbeat(runIDs: [String], at time: Timestamp) async throws {
        guard !runIDs.isEmpty else { return }
        try await write { (connection) throws(StateStoreError) in
            do {
                let statement = try connection.statement(Self.heartbeatSQL)
                for runID in runIDs {
                    statement.reset()
                    statement.bind(1, runID)
                    statement.bind(2, time)
                    try statement.run()
                }
            }
        }
    }

    public func failStaleTasks(heartbeatBefore: Timestamp, now: Timestamp, message: String) async throws -> Int {
        try await write { (connection) throws(StateStoreError) -> Int in
            do {
                let statement = try connection.statement(Self.failStale)
                statement.bind(1, heartbeatBefore)
                statement.bind(2, now)
                statement.bind(3, message)
                try statement.run()
                let count = connection.changes
                connection.counterChanges.moved(isBackground: true, from: RunStatus.running.rawValue, to: RunStatus.failed.rawValue, count: count)
                return count
            }
        }
    }

    private static func addUsage(_ usage: Usage, to parentRunID: String, on connection: SQLiteConnection) throws(StateStoreError) {
        let statement = try connection.statement(Self.addUsageSQL)
        statement.bind(1, parentRunID)
        statement.bind(2, usage.costUSD)
        statement.bind(3, usage.tokens)
        try statement.run()
    }

    public func runTotals(runID: String) async throws -> RunTotals? {
        try withConnection { (connection) throws(StateStoreError) in
            let statement = try connection.statement(Self.runTotalsSQL)
            statement.bind(1, runID)
            guard try statement.step() else { return nil }
            return RunTotals(costUSD: statement.double(0), tokens: statement.int(1), backgroundCostUSD: statement.double(2), backgroundTokens: statement.int(3))
        }
    }

    public func steps(runID: String) async throws -> [StepRecord] {
        try withConnection { (connection) throws(StateStoreError) in
            let statement = try connection.statement(Self.stepsSQL)
            statement.bind(1, runID)
            var records: [StepRecord] = []
            while try statement.step() {
                records.append(StepRecord(
                    runID: statement.string(0) ?? "", stepIndex: statement.int(1), stepName: statement.string(2) ?? "",
                    success: statement.int(3) != 0, outputJSON: statement.string(4), attempts: statement.int(5),
                    latencySeconds: statement.double(6), costUSD: statement.double(7), tokens: statement.int(8),
                    feedback: statement.string(9), finishedAt: statement.timestamp(10)))
            }
            return records
        }
    }

    // MARK: - Stats

    public func statusCounters() async throws -> StatusCounters {
        try withConnection { (connection) throws(StateStoreError) in try Self.readCounters(connection) }
    }

    private static func readCounters(_ connection: SQLiteConnection) throws(StateStoreError) -> StatusCounters {
        var runs: [RunStatus: Int] = [:]
        var background: [RunStatus: Int] = [:]
        let counts = try connection.statement(Self.countsSQL)
        while try counts.step() {
            guard let status = RunStatus(rawValue: counts.string(1) ?? ""), counts.int(2) != 0 else { continue }
            if counts.int(0) != 0 { background[status, default: 0] += counts.int(2) } else { runs[status, default: 0] += counts.int(2) }
        }
        var totals: [String: Double] = [:]
        let totalRows = try connection.statement(Self.totalsSQL)
        while try totalRows.step() { totals[totalRows.string(0) ?? ""] = totalRows.double(1) }
        return StatusCounters(
            runs: runs, backgroundTasks: background, totalRuns: Int(totals["total_runs"] ?? 0),
            durationSumMs: totals["duration_sum_ms"] ?? 0, durationCount: Int(totals["duration_count"] ?? 0))
    }

    public func workflowStats(now: Timestamp) async throws -> WorkflowStats {
        try withConnection { (connection) throws(StateStoreError) in
            let counters = try Self.readCounters(connection)
            // Whole hours come from the per-hour counters; the first, partial hour
            // of the window is counted exactly through the created_at index.
            let since = now.millisecondsSince1970 - 24 * 3_600_000
            let firstWholeHour = since / 3_600_000 + 1
            let hours = try connection.statement(Self.hoursSQL)
            hours.bind(1, firstWholeHour)
            let wholeHours = try hours.step() ? hours.int(0) : 0
            let edge = try connection.statement(Self.edgeSQL)
            edge.bind(1, since)
            edge.bind(2, firstWholeHour * 3_600_000)
            let partial = try edge.step() ? edge.int(0) : 0
            return WorkflowStats(
                totalWorkflows: counters.totalRuns, statusCounts: counters.runs,
                backgroundStatusCounts: counters.backgroundTasks, recentWorkflows24h: wholeHours + partial,
                averageExecutionTimeMs: counters.durationCount > 0 ? counters.durationSumMs / Double(counters.durationCount) : 0)
        }
    }

    // MARK: - Spans

    public func saveSpans(_ spans: [SpanRecord]) async throws {
        guard !spans.isEmpty else { return }
        try await write { (connection) throws(StateStoreError) in
            do {
                let statement = try connection.statement(Self.saveSpanSQL)
                for span in spans {
                    statement.reset()
                    statement.bind(1, span.spanID)
                    statement.bind(2, span.traceID)
                    statement.bind(3, span.parentSpanID)
                    statement.bind(4, span.runID)
                    statement.bind(5, span.name)
                    statement.bind(6, Int64(bitPattern: span.startUnixNano))
                    statement.bind(7, Int64(bitPattern: span.endUnixNano))
                    statement.bind(8, span.status)
                    statement.bind(9, span.statusMessage)
                    statement.bind(10, JSONText.object(span.attributes))
                    statement.bind(11, span.isBackground)
                    try statement.run()
                }
            }
        }
    }

    public func spans(runID: String) async throws -> [SpanRecord] {
        try withConnection { (connection) throws(StateStoreError) in
            let statement = try connection.statement(Self.spansSQL)
            statement.bind(1, runID)
            var records: [SpanRecord] = []
            while try statement.step() {
                records.append(SpanRecord(
                    traceID: statement.string(1) ?? "", spanID: statement.string(0) ?? "", parentSpanID: statement.string(2),
                    runID: statement.string(3) ?? "", name: statement.string(4) ?? "",
                    startUnixNano: UInt64(bitPattern: statement.int64(5)), endUnixNano: UInt64(bitPattern: statement.int64(6)),
                    status: statement.string(7) ?? "unset", statusMessage: statement.string(8),
                    attributes: JSONText.parseStringObject(statement.string(9) ?? "{}"), isBackground: statement.int(10) != 0))
            }
            return records
        }
    }
}
