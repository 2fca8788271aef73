import Flujo
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// The state store on a PostgreSQL server, for workers on several machines.
///
/// It keeps the store contract (the conformance suite runs against it):
/// claims are session-level advisory locks on a connection of their own, so
/// exactly one resumer holds a task across machines and a dead connection
/// releases its claims. A store is an owner of running tasks with an identity
/// of its own (`pg:` and a random key), alive while its locks connection holds
/// the advisory lock of that key, so recovery knows at once when the owner is
/// gone. Counters follow the rows in the same transactions (triggers of schema
/// version 1).
///
/// Connections that are lost are made again. After a server restart every
/// lock is gone, so for the location's `reconnectWindow` after the server
/// starts no task is claimed or recovered, while live stores connect again and
/// take back their owner lock and their claims. A store whose claim was taken
/// by another while its session was gone (a session killed on a running
/// server), or whose running task was recovered meanwhile, has its outcome
/// refused (`StateStoreError.superseded`) instead of overwriting the newer attempt's.
public final class PostgresStateStore: StateStore {
    /// Where the state is.
    public let location: PostgresLocation
    /// The statements connections: the first one, opened (and migrated) with the store.
    let database: PostgresDatabase
    /// Where statements run: up to the location's `poolSize` connections, opened as needed.
    let pool: ConnectionPool
    /// Holds the advisory locks: claims and this store's ownership of its running tasks.
    let locks: PostgresDatabase
    /// This store's identity as the owner of running tasks: `pg:` and the key of its owner lock.
    let ownerToken: String
    /// The key of the owner lock (single-key form, below 2^62).
    let ownerKey: Int64
    /// Claims this store holds: task id to owner.
    private let held = Mutex<[String: String]>([:])
    /// Claims held whose session was lost and which could not be taken back: their outcomes are refused.
    private let lostClaims = Mutex<Set<String>>([])
    /// Background runs this store saved as running under its owner: their later writes must find them so.
    private let owned = Mutex<Set<String>>([])
    /// The locks connection's session: its server process, and when its server started (on this
    /// clock), which tells a restart from a session killed on a running server.
    private let session = Mutex<(pid: Int32, serverStart: ContinuousClock.Instant)>((0, .now))
    /// `flujo_due` notifications received (LISTEN on a connection of its own, opened by the first wait).
    private let dueSignals = Atomic<Int>(0)
    private let listener = Mutex<(started: Bool, task: Task<Void, Never>?)>((false, nil))

    /// The advisory lock namespace of claims (two-key form: namespace, hash of the task id).
    static let claimNamespace: Int32 = 0x464C_4A43

    private init(location: PostgresLocation, database: PostgresDatabase, locks: PostgresDatabase, ownerKey: Int64) {
        self.location = location
        self.database = database
        self.pool = ConnectionPool(first: database, size: location.poolSize)
        self.locks = locks
        self.ownerKey = ownerKey
        self.ownerToken = "pg:\(ownerKey)"
    }

    /// Opens the store: connects twice (statements, locks), takes its owner
    /// lock and migrates the schema (with `migrate: false`, read-only commands change nothing).
    public static func open(
        _ location: PostgresLocation, migrate: Bool = true, logger: Logger = Logger(label: "flujo.postgres")
    ) async throws(PostgresStoreError) -> PostgresStateStore {
        let database = try await PostgresDatabase.open(location, migrate: migrate, logger: logger)
        let locks: PostgresDatabase
        do {
            locks = try await PostgresDatabase.open(location, migrate: false, logger: logger)
        } catch {
            await database.close()
            throw error
        }
        let store = PostgresStateStore(location: location, database: database, locks: locks, ownerKey: Int64.random(in: 1..<(1 << 62)))
        do {
            try await store.takeLocks(on: locks.connection, restarted: false)
        } catch {
            await store.close()
            throw PostgresDatabase.map(error, location)
        }
        locks.onReconnect { [weak store] connection in try await store?.takeLocks(on: connection, restarted: nil) }
        locks.keepConnected()
        return store
    }

    /// Takes the owner lock on a new locks session and notes the session.
    /// On a session made again (`restarted` nil: found out here) after a server
    /// restart, takes back this store's claims too: no other store could claim
    /// them within the reconnect window. After a session killed on a running
    /// server, its claims were free for others at once: they are lost.
    private func takeLocks(on connection: PostgresConnection, restarted: Bool?) async throws {
        _ = try await connection.query("SELECT pg_advisory_lock(\(ownerKey))", logger: locks.logger)
        var found: (Int32, Int64)?
        for try await row in try await connection.query(
            "SELECT pg_backend_pid(), (extract(epoch FROM clock_timestamp() - pg_postmaster_start_time()) * 1000)::bigint",
            logger: locks.logger
        ).decode((Int32, Int64).self) { found = row }
        guard let (pid, uptimeMs) = found else { return }
        let serverStart = ContinuousClock.now - .milliseconds(uptimeMs)
        let previous = session.withLock { session in
            defer { session = (pid, serverStart) }
            return session.serverStart
        }
        guard restarted != false else { return }
        // A restart: the server started after the previous session's (beyond clock noise).
        let afterRestart = serverStart - previous > .seconds(1)
        for taskID in held.withLock({ Array($0.keys) }) {
            var taken = false
            if afterRestart {
                for try await got in try await connection.query(
                    "SELECT pg_try_advisory_lock(\(Self.claimNamespace), hashtext(\(taskID.pg)))", logger: locks.logger
                ).decode(Bool.self) { taken = got }
            }
            if !taken { lostClaims.withLock { _ = $0.insert(taskID) } }
        }
    }

    /// The server processes of both connections (tests that kill them).
    func backendPIDs() async throws -> [Int32] {
        var pids: [Int32] = []
        for connection in pool.opened {
            pids += try await connection.rows("SELECT pg_backend_pid()") { try $0[0].decode(Int32.self) }
        }
        return pids + (try await locks.rows("SELECT pg_backend_pid()") { try $0[0].decode(Int32.self) })
    }

    /// Waits until a task becomes due (a `flujo_due` notification, sent by the
    /// schema's trigger when a task is failed with a next attempt) or `timeout`
    /// passes. Without the listener (it could not connect, or lost its
    /// connection), the wait lasts the whole time: workers poll.
    public func waitForDueWork(upTo timeout: Duration) async {
        startListening()
        let seen = dueSignals.load(ordering: .acquiring)
        let deadline = ContinuousClock.now + timeout
        while !Task.isCancelled, ContinuousClock.now < deadline, dueSignals.load(ordering: .acquiring) == seen {
            try? await Task.sleep(for: min(.milliseconds(10), deadline - ContinuousClock.now))
        }
    }

    private func startListening() {
        let start = listener.withLock { state -> Bool in
            guard !state.started else { return false }
            state.started = true
            return true
        }
        guard start else { return }
        let location = self.location
        let task = Task { [weak self] in
            do {
                let connection = try await PostgresDatabase.open(location, migrate: false)
                try await connection.live().listen(on: "flujo_due") { notifications in
                    for try await _ in notifications {
                        guard let self else { break }
                        self.dueSignals.add(1, ordering: .releasing)
                    }
                }
                await connection.close()
            } catch {
                // Polling goes on without it.
            }
        }
        listener.withLock { $0.task = task }
    }

    /// Closes both connections; claims and ownership end with them.
    public func close() async {
        listener.withLock { $0.task }?.cancel()
        for connection in pool.opened { await connection.close() }
        await locks.close()
    }

    // MARK: - Writes

    static let stateColumns = """
        run_id, pipeline_id, pipeline_name, pipeline_version, current_step_index, pipeline_context,
        last_step_output, step_history, status, created_at, updated_at, total_steps, error_message,
        execution_time_ms, memory_usage_mb, metadata, is_background_task, parent_run_id, task_id,
        error_category, attempts, resumed_from, step_name, cost_usd, tokens
        """

    /// `stateColumns` of the row aliased `w`.
    static let qualifiedStateColumns = stateColumns.split(separator: ",")
        .map { "w." + $0.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(separator: ", ")

    public func save(_ state: WorkflowState, step: StepRecord?, parentUsage: Usage?) async throws {
        try await save([StateWrite(state, step: step, parentUsage: parentUsage)])
    }

    public func save(_ writes: [StateWrite]) async throws {
        guard !writes.isEmpty else { return }
        let fences = try writes.map { try fence(for: $0.state) }
        if writes.count == 1 {
            // One write is one statement: its own transaction, one round trip.
            let database = try await pool.acquire()
            defer { pool.release(database) }
            let item = writes[0]
            if let step = item.step, item.state.status == .running, !item.state.isBackgroundTask, item.parentUsage == nil, item.trace == nil {
                // A step of a running run changes only its progress columns, as in SQLite.
                let written = try await database.prepared(ProgressWrite(bindings: Self.progressBindings(item.state, step: step)))
                if !written.isEmpty { return }
            }
            try await write(item, fence: fences[0], on: database)
        } else if fences.allSatisfy({ if case .none = $0 { true } else { false } }), let combined = Self.combinedWrite(writes, owner: ownerToken) {
            // A launch (its parent's step and the task) in one statement: one round trip.
            let database = try await pool.acquire()
            defer { pool.release(database) }
            _ = try await database.query(combined)
        } else {
            try await transaction { db in
                for (write, fence) in zip(writes, fences) { try await self.write(write, fence: fence, on: db) }
            }
        }
        owned.withLock { owned in
            for write in writes where write.state.isBackgroundTask {
                if write.state.status == .running { owned.insert(write.state.runID) } else { owned.remove(write.state.runID) }
            }
        }
    }

    /// What a write of a background task must find in its row to replace it.
    enum WriteFence: Sendable {
        /// Nothing: a new task, or one this store neither runs nor resumes.
        case none
        /// Still running under this store's owner: no one recovered it meanwhile.
        case owned
        /// The claim still held by this store's locks session `pid`.
        case claimed(pid: Int32, taskID: String)
    }

    private func fence(for state: WorkflowState) throws -> WriteFence {
        guard state.isBackgroundTask else { return .none }
        if let taskID = state.taskID, held.withLock({ $0[taskID] != nil }) {
            if lostClaims.withLock({ $0.contains(taskID) }) {
                throw StateStoreError.superseded(taskID: taskID, reason: "this process's claim on it ended with its database session, and another worker could take it")
            }
            return .claimed(pid: session.withLock { $0.pid }, taskID: taskID)
        }
        return owned.withLock { $0.contains(state.runID) } ? .owned : .none
    }

    private func write(_ item: StateWrite, fence: WriteFence, on db: PostgresDatabase) async throws {
        // Prepared once per connection and variant: the server parses and plans it once.
        let binds = Self.singleWrite(item, owner: ownerToken, fence: fence).binds
        let written: [Int]
        switch fence {
        case .none: written = try await db.prepared(PreparedWrite<UnfencedWrite>(bindings: binds))
        case .owned: written = try await db.prepared(PreparedWrite<OwnedWrite>(bindings: binds))
        case .claimed: written = try await db.prepared(PreparedWrite<ClaimedWrite>(bindings: binds))
        }
        guard written.first == 1 else {
            let state = item.state
            let reason: String
            if case .claimed = fence {
                reason = "this process's claim on it ended with its database session, and another worker took it"
            } else {
                reason = "it was recovered as a lost worker's task while this process's database session was gone"
            }
            throw StateStoreError.superseded(taskID: state.taskID ?? state.runID, reason: reason)
        }
    }

    /// A whole write as one statement: the state's upsert, its run's row (foreground),
    /// its step, and the usage added to its parent, as data-modifying CTEs.
    /// The upsert replaces a row only as `fence` allows; when it does not, nothing
    /// is written and the statement returns 0 (else 1).
    static func singleWrite(_ item: StateWrite, owner ownerToken: String, fence: WriteFence = .none) -> PostgresQuery {
        singleWriteTyped(item, owner: ownerToken, fence: fence).query
    }

    /// `singleWrite` and the type of each bound value (a prepared statement
    /// declares them: a null alone would leave its type to the server's guess).
    static func singleWriteTyped(_ item: StateWrite, owner ownerToken: String, fence: WriteFence) -> (query: PostgresQuery, types: [PostgresDataType]) {
        var binds = PostgresBindings()
        var types: [PostgresDataType] = []
        let ctes = writeCTEs(item, owner: ownerToken, fence: fence, suffix: "", binds: &binds, types: &types)
        return (PostgresQuery(unsafeSQL: "WITH \(ctes) SELECT count(*)::bigint FROM state", binds: binds), types)
    }

    /// Several writes as one statement, when none fences and none touches a row
    /// another touches (a statement cannot change a row twice); nil otherwise.
    /// A write whose progress the run's next write replaces
    /// (`progressReplacedLater`) adds only its step, so a launch group (its
    /// parent's progress once per launched step, and the tasks) is one statement.
    /// Every step goes in one insert, in the batch's order, which is the order
    /// of its run's log. Returns the number of states written.
    static func combinedWrite(_ items: [StateWrite], owner ownerToken: String) -> PostgresQuery? {
        let replaced = items.progressReplacedLater
        var runIDs = Set<String>()
        var usedParents = Set<String>()
        for (item, replaced) in zip(items, replaced) {
            let usage = item.parentUsage ?? Usage()
            let addsUsage = item.state.parentRunID != nil && (usage.costUSD != 0 || usage.tokens != 0)
            if replaced {
                // Only a step; usage would need an update of its own.
                if addsUsage { return nil }
                continue
            }
            guard runIDs.insert(item.state.runID).inserted else { return nil }
            // Each parent's totals once: a second update of its row in the same statement would be lost.
            if addsUsage, let parent = item.state.parentRunID, !usedParents.insert(parent).inserted { return nil }
        }
        guard usedParents.isDisjoint(with: runIDs) else { return nil }
        var binds = PostgresBindings()
        var types: [PostgresDataType] = []
        var ctes: [String] = []
        var written: [Int] = []
        for (index, (item, replaced)) in zip(items, replaced).enumerated() where !replaced {
            var stateOnly = item
            stateOnly.step = nil
            ctes.append(writeCTEs(stateOnly, owner: ownerToken, fence: .none, suffix: "_\(index)", binds: &binds, types: &types))
            written.append(index)
        }
        let steps = items.compactMap(\.step)
        if !steps.isEmpty { ctes.append(stepsCTE(steps, binds: &binds)) }
        let counts = written.map { "(SELECT count(*) FROM state_\($0))" }.joined(separator: " + ")
        return PostgresQuery(unsafeSQL: "WITH \(ctes.joined(separator: ", ")) SELECT (\(counts))::bigint", binds: binds)
    }

    /// One insert of `steps`, in order (each row's `seq` is drawn as it is inserted).
    private static func stepsCTE(_ steps: [StepRecord], binds: inout PostgresBindings) -> String {
        var rows: [String] = []
        rows.reserveCapacity(steps.count)
        for step in steps {
            let first = binds.count + 1
            append(step, to: &binds)
            rows.append("($\(first), $\(first + 1)::integer, $\(first + 2), $\(first + 3)::boolean, $\(first + 4), $\(first + 5)::integer, "
                + "$\(first + 6)::double precision, $\(first + 7)::double precision, $\(first + 8)::bigint, $\(first + 9), $\(first + 10)::bigint)")
        }
        return """
            steps_all AS (
                INSERT INTO steps (run_id, step_index, step_name, success, output, attempts, latency_s, cost_usd, tokens, feedback, finished_at)
                VALUES \(rows.joined(separator: ", "))
                RETURNING 1
            )
            """
    }

    /// The statement of a single write with a fence of `fence`'s kind: its text
    /// depends on nothing else (every value is bound).
    static func writeSQL(_ fence: WriteFence) -> (sql: String, types: [PostgresDataType]) {
        let typed = singleWriteTyped(StateWrite(WorkflowState(runID: "", pipelineName: "")), owner: "", fence: fence)
        return (typed.query.sql, typed.types)
    }

    /// A step's progress: the run's progress columns and the step, when the run is running.
    static let progressSQL = """
        WITH progress AS (
            UPDATE workflow_state SET current_step_index = $1, pipeline_context = $2, last_step_output = $3, updated_at = $4,
                cost_usd = $5, tokens = $6
            WHERE run_id = $7 AND status = 'running'
            RETURNING run_id
        )
        INSERT INTO steps (run_id, step_index, step_name, success, output, attempts, latency_s, cost_usd, tokens, feedback, finished_at)
        SELECT $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18
        FROM progress
        RETURNING 1
        """

    static func progressBindings(_ state: WorkflowState, step: StepRecord) -> PostgresBindings {
        var binds = PostgresBindings(capacity: 18)
        binds.append(state.currentStepIndex)
        binds.append(state.contextJSON.pg)
        binds.append(state.lastStepOutputJSON?.pg)
        binds.append(state.updatedAt.millisecondsSince1970)
        binds.append(state.costUSD)
        binds.append(state.tokens)
        binds.append(state.runID.pg)
        append(step, to: &binds)
        return binds
    }

    /// A step record's 11 values, in the order of the `steps` columns after `seq`.
    private static func append(_ step: StepRecord, to binds: inout PostgresBindings) {
        binds.append(step.runID.pg)
        binds.append(step.stepIndex)
        binds.append(step.stepName.pg)
        binds.append(step.success)
        binds.append(step.outputJSON?.pg)
        binds.append(step.attempts)
        binds.append(step.latencySeconds)
        binds.append(step.costUSD)
        binds.append(step.tokens)
        binds.append(step.feedback?.pg)
        binds.append(step.finishedAt.millisecondsSince1970)
    }

    /// The CTEs of one write, named with `suffix`, their values appended to `binds`.
    private static func writeCTEs(
        _ item: StateWrite, owner ownerToken: String, fence: WriteFence, suffix: String, binds: inout PostgresBindings, types: inout [PostgresDataType]
    ) -> String {
        func bind<T: PostgresNonThrowingEncodable>(_ value: T?) -> String {
            binds.append(value)
            types.append(T.psqlType)
            return "$\(binds.count)"
        }
        let state = item.state
        // A running task or run records its process, so recovery can tell when that process is gone.
        let owner = state.status == .running ? ownerToken : nil
        let ended = state.status == .running ? nil : Optional(state.updatedAt.millisecondsSince1970)
        let step = item.step
        let usage = item.parentUsage ?? Usage()
        let addsUsage = state.parentRunID != nil && (usage.costUSD != 0 || usage.tokens != 0)
        let condition: String
        switch fence {
        case .none:
            condition = "true"
        case .owned:
            condition = "workflow_state.owner = \(bind(ownerToken)) AND workflow_state.status = 'running'"
        case let .claimed(pid, taskID):
            condition = """
                EXISTS (SELECT 1 FROM pg_locks AS l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.pid = \(bind(pid))
                    AND l.classid::bigint = \(Int64(claimNamespace)) AND l.objid::bigint = (hashtext(\(bind(taskID.pg)))::bigint & 4294967295))
                """
        }
        let stateName = "state" + suffix
        return """
            \(stateName) AS (
                INSERT INTO workflow_state (\(stateColumns), owner, next_attempt_at, trace)
                VALUES (\(bind(state.runID.pg)), \(bind(state.pipelineID.pg)), \(bind(state.pipelineName.pg)), \(bind(state.pipelineVersion.pg)),
                        \(bind(state.currentStepIndex)), \(bind(state.contextJSON.pg)), \(bind(state.lastStepOutputJSON?.pg)),
                        \(bind(state.stepHistoryJSON.pg)), \(bind(state.status.rawValue)), \(bind(state.createdAt.millisecondsSince1970)),
                        \(bind(state.updatedAt.millisecondsSince1970)), \(bind(state.totalSteps)), \(bind(state.errorMessage?.pg)),
                        \(bind(state.executionTimeMs)), \(bind(state.memoryUsageMB)), \(bind(state.metadataJSON.pg)), \(bind(state.isBackgroundTask)),
                        \(bind(state.parentRunID?.pg)), \(bind(state.taskID?.pg)), \(bind(state.errorCategory?.rawValue)), \(bind(state.attempts)),
                        \(bind(state.resumedFrom?.pg)), \(bind(state.stepName?.pg)), \(bind(state.costUSD)), \(bind(state.tokens)), \(bind(owner)),
                        \(bind(item.nextAttemptAt?.millisecondsSince1970)), \(bind(item.trace?.encoded)))
                ON CONFLICT (run_id) DO UPDATE SET
                    pipeline_id = excluded.pipeline_id, pipeline_name = excluded.pipeline_name, pipeline_version = excluded.pipeline_version,
                    current_step_index = excluded.current_step_index, pipeline_context = excluded.pipeline_context,
                    last_step_output = excluded.last_step_output, step_history = excluded.step_history, status = excluded.status,
                    updated_at = excluded.updated_at, total_steps = excluded.total_steps, error_message = excluded.error_message,
                    execution_time_ms = excluded.execution_time_ms, memory_usage_mb = excluded.memory_usage_mb,
                    metadata = excluded.metadata, error_category = excluded.error_category, attempts = excluded.attempts,
                    resumed_from = excluded.resumed_from, step_name = excluded.step_name, cost_usd = excluded.cost_usd,
                    tokens = excluded.tokens, owner = excluded.owner, next_attempt_at = excluded.next_attempt_at,
                    trace = coalesce(excluded.trace, workflow_state.trace)
                WHERE \(condition)
                RETURNING 1
            ), run\(suffix) AS (
                INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, started_at, ended_at, cost_usd, tokens)
                SELECT \(bind(state.runID.pg)), \(bind(state.pipelineName.pg)), \(bind(state.pipelineVersion.pg)), \(bind(state.status.rawValue)),
                       \(bind(state.createdAt.millisecondsSince1970))::bigint, \(bind(ended))::bigint, \(bind(state.costUSD))::double precision,
                       \(bind(state.tokens))::bigint
                WHERE NOT \(bind(state.isBackgroundTask))::boolean AND EXISTS (SELECT 1 FROM \(stateName))
                ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at,
                    cost_usd = excluded.cost_usd, tokens = excluded.tokens
                RETURNING 1
            ), step\(suffix) AS (
                INSERT INTO steps (run_id, step_index, step_name, success, output, attempts, latency_s, cost_usd, tokens, feedback, finished_at)
                SELECT \(bind(step?.runID.pg)), \(bind(step?.stepIndex))::integer, \(bind(step?.stepName.pg)), \(bind(step?.success))::boolean,
                       \(bind(step?.outputJSON?.pg)), \(bind(step?.attempts))::integer, \(bind(step?.latencySeconds))::double precision,
                       \(bind(step?.costUSD))::double precision, \(bind(step?.tokens))::bigint, \(bind(step?.feedback?.pg)),
                       \(bind(step?.finishedAt.millisecondsSince1970))::bigint
                WHERE \(bind(step != nil))::boolean AND EXISTS (SELECT 1 FROM \(stateName))
                RETURNING 1
            ), parent\(suffix) AS (
                UPDATE runs SET background_cost_usd = background_cost_usd + \(bind(usage.costUSD))::double precision,
                    background_tokens = background_tokens + \(bind(usage.tokens))::bigint
                WHERE run_id = \(bind(state.parentRunID?.pg)) AND \(bind(addsUsage))::boolean AND EXISTS (SELECT 1 FROM \(stateName))
                RETURNING 1
            )
            """
    }

    public func heartbeat(runIDs: [String], at time: Timestamp) async throws {
        guard !runIDs.isEmpty else { return }
        // One statement: its own transaction.
        let database = try await pool.acquire()
        defer { pool.release(database) }
        try await database.execute("UPDATE workflow_state SET updated_at = \(time.millisecondsSince1970) WHERE run_id = ANY(\(runIDs.map(\.pg))) AND status = 'running'")
    }

    public func saveSpans(_ spans: [SpanRecord]) async throws {
        guard !spans.isEmpty else { return }
        // One statement may not change a row twice: each span once, with its last record.
        let unique = spans.lastRecordPerSpan
        // One statement per chunk, its own transaction when there is one: one round
        // trip instead of one per span; a chunk stays under the protocol's 65,535 binds.
        let chunks = stride(from: 0, to: unique.count, by: Self.spansPerStatement).map {
            Self.saveSpansQuery(unique[$0..<min($0 + Self.spansPerStatement, unique.count)])
        }
        if chunks.count == 1 {
            let database = try await pool.acquire()
            defer { pool.release(database) }
            try await database.execute(chunks[0])
        } else {
            try await transaction { db in
                for chunk in chunks { try await db.execute(chunk) }
            }
        }
    }

    /// Spans per statement of `saveSpans`: 11 binds each.
    static let spansPerStatement = 2_000

    /// One multi-row upsert of `spans`, which hold each span id once.
    static func saveSpansQuery(_ spans: ArraySlice<SpanRecord>) -> PostgresQuery {
        var binds = PostgresBindings(capacity: spans.count * 11)
        var rows: [String] = []
        rows.reserveCapacity(spans.count)
        for span in spans {
            let first = binds.count + 1
            binds.append(span.spanID.pg)
            binds.append(span.traceID.pg)
            binds.append(span.parentSpanID?.pg)
            binds.append(span.runID.pg)
            binds.append(span.name.pg)
            binds.append(Int64(bitPattern: span.startUnixNano))
            binds.append(Int64(bitPattern: span.endUnixNano))
            binds.append(span.status)
            binds.append(span.statusMessage?.pg)
            binds.append(JSONText.object(span.attributes).pg)
            binds.append(span.isBackground)
            rows.append("(" + (first..<(first + 11)).map { "$\($0)" }.joined(separator: ", ") + ")")
        }
        return PostgresQuery(unsafeSQL: """
            INSERT INTO spans (span_id, trace_id, parent_span_id, run_id, name, start_unix_nano, end_unix_nano, status,
                               status_message, attributes, is_background)
            VALUES \(rows.joined(separator: ", "))
            ON CONFLICT (span_id) DO UPDATE SET trace_id = excluded.trace_id, parent_span_id = excluded.parent_span_id,
                run_id = excluded.run_id, name = excluded.name, start_unix_nano = excluded.start_unix_nano,
                end_unix_nano = excluded.end_unix_nano, status = excluded.status, status_message = excluded.status_message,
                attributes = excluded.attributes, is_background = excluded.is_background
            """, binds: binds)
    }

    // MARK: - Bulk transitions

    static let endedColumns = "run_id, task_id, parent_run_id, pipeline_name, pipeline_version, step_name, trace"

    static func endedTask(_ row: PostgresRandomAccessRow) throws -> EndedTask {
        EndedTask(
            runID: try row.text(0), taskID: try row.optionalText(1) ?? "",
            parentRunID: try row.optionalText(2), pipelineName: try row.text(3),
            pipelineVersion: try row.text(4), stepName: try row.optionalText(5) ?? "",
            trace: try row[6].decode(String?.self).flatMap(TaskTrace.init(encoded:)))
    }

    public func failStaleTasks(heartbeatBefore: Timestamp, applying transition: TaskTransition) async throws -> [EndedTask] {
        try await transaction { db in
            try await db.rows(Self.failStale(heartbeatBefore, transition, .tasks), Self.endedTask)
        }
    }

    public func failStaleTaskCount(heartbeatBefore: Timestamp, applying transition: TaskTransition) async throws -> Int {
        try await transaction { db in
            try await db.query(Self.failStale(heartbeatBefore, transition, .count)).first ?? 0
        }
    }

    public func failOrphanedTasks(applying transition: TaskTransition) async throws -> [EndedTask] {
        try await transaction { db in
            try await db.rows(self.failOrphans(transition, .tasks), Self.endedTask)
        }
    }

    public func failOrphanedTaskCount(applying transition: TaskTransition) async throws -> Int {
        try await transaction { db in
            try await db.query(self.failOrphans(transition, .count)).first ?? 0
        }
    }

    /// What a bulk transition's statement returns: the tasks it ended, or how many.
    private enum BulkResult {
        case tasks, count

        /// Opens the statement: a count wraps the update in a query of its own.
        var head: String { self == .count ? "WITH changed AS (" : "" }
        /// Closes it.
        var tail: String { self == .count ? "RETURNING 1) SELECT count(*)::bigint FROM changed" : "RETURNING \(PostgresStateStore.endedColumns)" }
    }

    private static func failStale(_ heartbeatBefore: Timestamp, _ transition: TaskTransition, _ result: BulkResult) -> PostgresQuery {
        """
        \(unescaped: result.head)UPDATE workflow_state SET status = \(transition.status.rawValue), updated_at = \(transition.at.millisecondsSince1970),
            error_message = \(transition.errorMessage), error_category = \(transition.errorCategory?.rawValue),
            next_attempt_at = \(transition.nextAttemptAt?.millisecondsSince1970)
        WHERE is_background_task AND status = 'running' AND updated_at < \(heartbeatBefore.millisecondsSince1970) AND owner IS NULL
        \(unescaped: result.tail)
        """
    }

    /// Rows whose recorded owner is gone: no session holds its owner lock
    /// (single-key advisory locks: the key's high and low halves). Within the
    /// reconnect window after the server started, live owners are taking their
    /// locks back: no verdict.
    private var ownerGone: String {
        """
        owner IS NOT NULL
          AND clock_timestamp() - pg_postmaster_start_time() >= \(location.reconnectWindow.seconds) * interval '1 second'
          AND owner NOT IN (
            SELECT 'pg:' || ((l.classid::bigint << 32) | l.objid::bigint) FROM pg_locks AS l
            WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))
        """
    }

    private func failOrphans(_ transition: TaskTransition, _ result: BulkResult) -> PostgresQuery {
        """
        \(unescaped: result.head)UPDATE workflow_state SET status = \(transition.status.rawValue), updated_at = \(transition.at.millisecondsSince1970),
            error_message = \(transition.errorMessage), error_category = \(transition.errorCategory?.rawValue),
            owner = NULL, next_attempt_at = \(transition.nextAttemptAt?.millisecondsSince1970)
        WHERE is_background_task AND status = 'running' AND \(unescaped: ownerGone)
        \(unescaped: result.tail)
        """
    }

    public func failOrphanedRuns(applying transition: TaskTransition) async throws -> Int {
        try await transaction { db in
            try await db.query(self.failOrphanRuns(transition)).first ?? 0
        }
    }

    public func failStaleRuns(updatedBefore: Timestamp, applying transition: TaskTransition) async throws -> Int {
        try await transaction { db in
            try await db.query(Self.endRuns(transition, where: "owner IS NULL AND updated_at < \(updatedBefore.millisecondsSince1970)")).first ?? 0
        }
    }

    /// Foreground runs of gone owners, and their rows in `runs`, in one statement.
    private func failOrphanRuns(_ transition: TaskTransition) -> PostgresQuery {
        Self.endRuns(transition, where: ownerGone)
    }

    /// Ends the running foreground runs `condition` matches, their rows in `runs`
    /// included, in one statement; returns how many.
    private static func endRuns(_ transition: TaskTransition, where condition: String) -> PostgresQuery {
        """
        WITH changed AS (
            UPDATE workflow_state SET status = \(transition.status.rawValue), updated_at = \(transition.at.millisecondsSince1970),
                error_message = \(transition.errorMessage), error_category = \(transition.errorCategory?.rawValue),
                owner = NULL, next_attempt_at = NULL
            WHERE NOT is_background_task AND status = 'running' AND \(unescaped: condition)
            RETURNING run_id
        ), ended AS (
            UPDATE runs SET status = \(transition.status.rawValue), ended_at = \(transition.at.millisecondsSince1970)
            WHERE run_id IN (SELECT run_id FROM changed)
            RETURNING 1
        )
        SELECT count(*)::bigint FROM changed
        """
    }

    // MARK: - Claims

    public func claimTask(taskID: String, owner: String) async throws -> ClaimResult {
        // Advisory locks are re-entrant within a session: this store admits one claimer per task itself.
        let reserved = held.withLock { held -> Bool in
            guard held[taskID] == nil else { return false }
            held[taskID] = owner
            return true
        }
        guard reserved else {
            return try await loadTask(taskID: taskID) == nil ? .notFound : .notClaimable(status: .running, owner: held.withLock { $0[taskID] })
        }
        do {
            guard try await tryLock(taskID) else {
                held.withLock { $0[taskID] = nil }
                return try await loadTask(taskID: taskID) == nil ? .notFound : .notClaimable(status: .running, owner: nil)
            }
            guard let state = try await loadTask(taskID: taskID) else {
                try await unlock(taskID)
                held.withLock { $0[taskID] = nil }
                return .notFound
            }
            guard [.failed, .paused, .cancelled].contains(state.status) else {
                try await unlock(taskID)
                held.withLock { $0[taskID] = nil }
                return .notClaimable(status: state.status, owner: nil)
            }
            return .claimed(state)
        } catch {
            try? await unlock(taskID)
            held.withLock { $0[taskID] = nil }
            throw error
        }
    }

    public func releaseClaim(taskID: String) {
        guard held.withLock({ $0.removeValue(forKey: taskID) }) != nil else { return }
        if lostClaims.withLock({ $0.remove(taskID) }) != nil { return }
        // The contract makes the release synchronous: the next claim, in any
        // process, must find the task free. The lock connection runs on its own
        // event loop, never on the caller's thread, so waiting here cannot deadlock.
        guard !locks.connection.isClosed else { return }
        _ = try? locks.connection.query("SELECT pg_advisory_unlock(\(Self.claimNamespace), hashtext(\(taskID.pg)))", logger: locks.logger).wait()
    }

    public func endClaim(taskID: String) async {
        guard held.withLock({ $0.removeValue(forKey: taskID) }) != nil else { return }
        if lostClaims.withLock({ $0.remove(taskID) }) != nil { return }
        try? await unlock(taskID)
    }

    public func claimedTaskIDs(among taskIDs: [String]) async throws -> Set<String> {
        guard !taskIDs.isEmpty else { return [] }
        let claimed = try await locks.rows("""
            SELECT t.id FROM unnest(\(taskIDs.map(\.pg))::text[]) AS t(id)
            WHERE EXISTS (SELECT 1 FROM pg_locks AS l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                AND l.classid::bigint = \(Int64(Self.claimNamespace)) AND l.objid::bigint = (hashtext(t.id)::bigint & 4294967295))
            """) { try $0.text(0) }
        return Set(claimed)
    }

    public func claimNextDueTask(owner: String, now: Timestamp, steps: Set<String>?) async throws -> WorkflowState? {
        if let steps, steps.isEmpty { return nil }
        // Any step (NULL), or only those named.
        let names: [String]? = steps.map { $0.sorted().map(\.pg) }
        // One statement on the locks session: the oldest due task whose claim no
        // session holds (pg_locks) and whose row no other claimer is reading
        // (SKIP LOCKED: the row lock lasts until this statement has taken the
        // claim, after which pg_locks shows it), its claim, and its row.
        // Concurrent claimers get different tasks without trying each other's.
        let window = location.reconnectWindow.seconds
        while true {
            let claimed = try await locks.rows("""
                WITH candidate AS (
                    SELECT run_id, task_id FROM workflow_state
                    WHERE status = 'failed' AND next_attempt_at IS NOT NULL AND next_attempt_at <= \(now.millisecondsSince1970) AND task_id IS NOT NULL
                      AND (\(names)::text[] IS NULL OR step_name = ANY(\(names)::text[]))
                      AND clock_timestamp() - pg_postmaster_start_time() >= \(window) * interval '1 second'
                      AND (hashtext(task_id)::bigint & 4294967295) NOT IN (
                        SELECT l.objid::bigint FROM pg_locks AS l
                        WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.classid::bigint = \(Int64(Self.claimNamespace))
                          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))
                    ORDER BY next_attempt_at, run_id LIMIT 1
                    FOR UPDATE SKIP LOCKED
                )
                SELECT \(unescaped: Self.qualifiedStateColumns)
                FROM workflow_state AS w JOIN candidate AS c ON c.run_id = w.run_id
                WHERE pg_try_advisory_lock(\(Self.claimNamespace), hashtext(c.task_id))
                """, Self.readState)
            if let state = claimed.first, let taskID = state.taskID {
                let fresh = held.withLock { held -> Bool in
                    guard held[taskID] == nil else { return false }
                    held[taskID] = owner
                    return true
                }
                if fresh { return state }
                // Held by this store already (the session's locks are re-entrant): undo the second hold.
                try await unlock(taskID)
                continue
            }
            // None due, or the server started within the reconnect window: then wait it out.
            let wait = try await locks.rows("""
                SELECT greatest(0, \(window) - extract(epoch FROM clock_timestamp() - pg_postmaster_start_time())::double precision)
                """) { try $0[0].decode(Double.self) }.first ?? 0
            guard wait > 0 else { return nil }
            try await Task.sleep(for: .milliseconds(Int(wait * 1000) + 1))
        }
    }

    /// Takes a claim's lock if it is free. Within the reconnect window after the
    /// server started, stores that lived through a restart are taking their
    /// claims back: the attempt waits until the window is over (the server's clock decides).
    private func tryLock(_ taskID: String) async throws -> Bool {
        while true {
            let got = try await locks.rows("""
                SELECT CASE WHEN up >= \(location.reconnectWindow.seconds) THEN pg_try_advisory_lock(\(Self.claimNamespace), hashtext(\(taskID.pg))) END,
                       greatest(0, \(location.reconnectWindow.seconds) - up)
                FROM (SELECT extract(epoch FROM clock_timestamp() - pg_postmaster_start_time())::double precision AS up) AS server
                """) { (try $0[0].decode(Bool?.self), try $0[1].decode(Double.self)) }
            guard let (taken, wait) = got.first else { return false }
            if let taken { return taken }
            try await Task.sleep(for: .milliseconds(Int(wait * 1000) + 1))
        }
    }

    private func unlock(_ taskID: String) async throws(PostgresStoreError) {
        _ = try await locks.rows("SELECT pg_advisory_unlock(\(Self.claimNamespace), hashtext(\(taskID.pg)))") { try $0[0].decode(Bool.self) }
    }

    // MARK: - Reads

    static func readState(_ row: PostgresRandomAccessRow) throws -> WorkflowState {
        WorkflowState(
            runID: try row.text(0), pipelineName: try row.text(2),
            pipelineVersion: try row.text(3), pipelineID: try row.text(1),
            currentStepIndex: try row[4].decode(Int.self), contextJSON: try row.text(5),
            lastStepOutputJSON: try row.optionalText(6), stepHistoryJSON: try row.text(7),
            status: RunStatus(rawValue: try row[8].decode(String.self)) ?? .failed,
            createdAt: Timestamp(millisecondsSince1970: try row[9].decode(Int64.self)),
            updatedAt: Timestamp(millisecondsSince1970: try row[10].decode(Int64.self)),
            totalSteps: try row[11].decode(Int.self), errorMessage: try row.optionalText(12),
            executionTimeMs: try row[13].decode(Double?.self), memoryUsageMB: try row[14].decode(Double?.self),
            metadataJSON: try row.text(15), isBackgroundTask: try row[16].decode(Bool.self),
            parentRunID: try row.optionalText(17), taskID: try row.optionalText(18),
            errorCategory: try row[19].decode(String?.self).flatMap(ErrorCategory.init(rawValue:)),
            attempts: try row[20].decode(Int.self), resumedFrom: try row.optionalText(21),
            stepName: try row.optionalText(22), costUSD: try row[23].decode(Double.self), tokens: try row[24].decode(Int.self))
    }

    public func load(runID: String) async throws -> WorkflowState? {
        try await select("SELECT \(unescaped: Self.stateColumns) FROM workflow_state WHERE run_id = \(runID.pg)", Self.readState).first
    }

    public func loadTask(taskID: String) async throws -> WorkflowState? {
        try await select("SELECT \(unescaped: Self.stateColumns) FROM workflow_state WHERE task_id = \(taskID.pg)", Self.readState).first
    }

    public func listBackgroundTasks(_ query: BackgroundTaskQuery) async throws -> [WorkflowState] {
        if let statuses = query.statuses, statuses.isEmpty { return [] }
        guard query.limit > 0 else { return [] }
        let statuses = query.statuses.map { $0.map(\.rawValue) }
        return try await select("""
            SELECT \(unescaped: Self.stateColumns) FROM workflow_state
            WHERE is_background_task
              AND (\(query.parentRunID?.pg)::text IS NULL OR parent_run_id = \(query.parentRunID?.pg))
              AND (\(query.updatedSince?.millisecondsSince1970)::bigint IS NULL OR updated_at >= \(query.updatedSince?.millisecondsSince1970))
              AND (\(statuses)::text[] IS NULL OR status = ANY(\(statuses)))
            ORDER BY updated_at DESC, run_id COLLATE "C"
            LIMIT \(query.limit) OFFSET \(max(0, query.offset))
            """, Self.readState)
    }

    public func taskIDNeighbors(of taskID: String) async throws -> [String] {
        let found = try await select("""
            SELECT (SELECT task_id FROM workflow_state WHERE task_id COLLATE "C" <= \(taskID.pg) ORDER BY task_id COLLATE "C" DESC LIMIT 1),
                   (SELECT task_id FROM workflow_state WHERE task_id COLLATE "C" > \(taskID.pg) ORDER BY task_id COLLATE "C" LIMIT 1)
            """) { row in [try row.optionalText(0), try row.optionalText(1)] }
        return (found.first ?? []).compactMap { $0 }
    }

    public func taskIDs(withPrefix prefix: String, limit: Int) async throws -> [String] {
        guard limit > 0 else { return [] }
        return try await select("""
            SELECT task_id FROM workflow_state WHERE task_id IS NOT NULL AND starts_with(task_id, \(prefix.pg))
            ORDER BY task_id COLLATE "C" LIMIT \(limit)
            """) { try $0.text(0) }
    }

    public func taskTrace(runID: String) async throws -> TaskTrace? {
        try await select("SELECT trace FROM workflow_state WHERE run_id = \(runID.pg)") { try $0[0].decode(String?.self) }
            .first.flatMap { $0 }.flatMap(TaskTrace.init(encoded:))
    }

    public func runTotals(runID: String) async throws -> RunTotals? {
        try await select("""
            SELECT w.cost_usd, w.tokens, coalesce(r.background_cost_usd, 0), coalesce(r.background_tokens, 0)
            FROM workflow_state AS w LEFT JOIN runs AS r ON r.run_id = w.run_id WHERE w.run_id = \(runID.pg)
            """) { row in
            RunTotals(costUSD: try row[0].decode(Double.self), tokens: try row[1].decode(Int.self),
                      backgroundCostUSD: try row[2].decode(Double.self), backgroundTokens: try row[3].decode(Int.self))
        }.first
    }

    public func steps(runID: String) async throws -> [StepRecord] {
        try await select("""
            SELECT run_id, step_index, step_name, success, output, attempts, latency_s, cost_usd, tokens, feedback, finished_at
            FROM steps WHERE run_id = \(runID.pg) ORDER BY seq
            """) { row in
            StepRecord(
                runID: try row.text(0), stepIndex: try row[1].decode(Int.self), stepName: try row.text(2),
                success: try row[3].decode(Bool.self), outputJSON: try row.optionalText(4), attempts: try row[5].decode(Int.self),
                latencySeconds: try row[6].decode(Double.self), costUSD: try row[7].decode(Double.self), tokens: try row[8].decode(Int.self),
                feedback: try row.optionalText(9), finishedAt: Timestamp(millisecondsSince1970: try row[10].decode(Int64.self)))
        }
    }

    public func spans(runID: String) async throws -> [SpanRecord] {
        try await select("""
            SELECT span_id, trace_id, parent_span_id, run_id, name, start_unix_nano, end_unix_nano, status, status_message, attributes, is_background
            FROM spans WHERE trace_id IN (SELECT trace_id FROM spans WHERE run_id = \(runID.pg))
            ORDER BY start_unix_nano, span_id COLLATE "C"
            """) { row in
            SpanRecord(
                traceID: try row.text(1), spanID: try row.text(0), parentSpanID: try row.optionalText(2),
                runID: try row.text(3), name: try row.text(4),
                startUnixNano: UInt64(bitPattern: try row[5].decode(Int64.self)), endUnixNano: UInt64(bitPattern: try row[6].decode(Int64.self)),
                status: try row[7].decode(String.self), statusMessage: try row.optionalText(8),
                attributes: JSONText.parseStringObject(try row.text(9)), isBackground: try row[10].decode(Bool.self))
        }
    }

    public func statusCounters() async throws -> StatusCounters {
        var runs: [RunStatus: Int] = [:]
        var background: [RunStatus: Int] = [:]
        for (isBackground, status, count) in try await select("SELECT is_background, status, sum(count)::bigint FROM status_counts GROUP BY 1, 2", { row in
            (try row[0].decode(Bool.self), try row[1].decode(String.self), try row[2].decode(Int.self))
        }) {
            guard let status = RunStatus(rawValue: status), count != 0 else { continue }
            if isBackground { background[status, default: 0] = background[status, default: 0].addingSaturating(count) } else { runs[status, default: 0] = runs[status, default: 0].addingSaturating(count) }
        }
        var totals: [String: Double] = [:]
        for (name, value) in try await select("SELECT name, sum(value) FROM stat_totals GROUP BY name", { row in
            (try row[0].decode(String.self), try row[1].decode(Double.self))
        }) { totals[name] = value }
        var oldest: [RunStatus: Timestamp] = [:]
        for status in StatusCounters.agedStatuses where (background[status] ?? 0) > 0 {
            let time = try await select("SELECT min(updated_at) FROM workflow_state WHERE is_background_task AND status = \(status.rawValue)") {
                try $0[0].decode(Int64?.self)
            }
            if let value = time.first ?? nil { oldest[status] = Timestamp(millisecondsSince1970: value) }
        }
        return StatusCounters(
            runs: runs, backgroundTasks: background, totalRuns: Int(saturating: totals["total_runs"] ?? 0),
            durationSumMs: totals["duration_sum_ms"] ?? 0, durationCount: Int(saturating: totals["duration_count"] ?? 0),
            prunedRuns: Int(saturating: totals["pruned_runs"] ?? 0), oldestTaskUpdate: oldest)
    }

    public func workflowStats(now: Timestamp) async throws -> WorkflowStats {
        let counters = try await statusCounters()
        let since = now.millisecondsSince1970 - 24 * 3_600_000
        let firstWholeHour = since / 3_600_000 + 1
        let whole = try await select("SELECT coalesce(sum(count), 0)::bigint FROM created_per_hour WHERE hour >= \(firstWholeHour)") {
            try $0[0].decode(Int.self)
        }.first ?? 0
        let partial = try await select("""
            SELECT count(*)::bigint FROM workflow_state WHERE created_at >= \(since) AND created_at < \(firstWholeHour * 3_600_000)
            """) { try $0[0].decode(Int.self) }.first ?? 0
        return WorkflowStats(
            totalWorkflows: counters.totalRuns, statusCounts: counters.runs, backgroundStatusCounts: counters.backgroundTasks,
            recentWorkflows24h: whole + partial,
            averageExecutionTimeMs: counters.durationCount > 0 ? counters.durationSumMs / Double(counters.durationCount) : 0)
    }

    // MARK: - Retention

    public func prune(_ policy: PrunePolicy, limit: Int, dryRun: Bool) async throws -> Int {
        let completed = policy.cutoffs[.completed]?.millisecondsSince1970
        let failed = policy.cutoffs[.failed]?.millisecondsSince1970
        let cancelled = policy.cutoffs[.cancelled]?.millisecondsSince1970
        let kept = policy.keptFailureCategories.map(\.rawValue).sorted()
        func doomed(_ select: String, _ suffix: String) -> PostgresQuery {
            """
            SELECT \(unescaped: select) FROM workflow_state AS w
            WHERE (w.status = 'completed' AND w.updated_at < \(completed))
               OR (w.status = 'failed' AND w.updated_at < \(failed) AND w.error_category IS NOT NULL AND NOT (w.error_category = ANY(\(kept))))
               OR (w.status = 'cancelled' AND w.updated_at < \(cancelled))
            \(unescaped: suffix)
            """
        }
        if dryRun {
            return try await select(doomed("count(*)::bigint", "")) { try $0[0].decode(Int.self) }.first ?? 0
        }
        let limit = max(0, limit)
        guard limit > 0 else { return 0 }
        return try await transaction { db in
            let rows = try await db.rows(doomed("w.run_id", "LIMIT \(limit) FOR UPDATE SKIP LOCKED")) { try $0[0].decode(String.self) }
            guard !rows.isEmpty else { return 0 }
            for table in ["steps", "spans", "runs", "workflow_state"] {
                try await db.execute("DELETE FROM \(unescaped: table) WHERE run_id = ANY(\(rows))")
            }
            return rows.count
        }
    }

    // MARK: - Transactions

    /// Runs a read on a statements connection.
    private func select<T>(_ query: PostgresQuery, _ decode: (PostgresRandomAccessRow) throws -> T) async throws -> [T] {
        let database = try await pool.acquire()
        defer { pool.release(database) }
        return try await database.rows(query, decode)
    }

    /// Runs `body` in one transaction on a statements connection of its own.
    private func transaction<T: Sendable>(_ body: (PostgresDatabase) async throws -> T) async throws -> T {
        let database = try await pool.acquire()
        defer { pool.release(database) }
        try await database.execute("BEGIN")
        do {
            let value = try await body(database)
            try await database.execute("COMMIT")
            return value
        } catch {
            try? await database.execute("ROLLBACK")
            throw error
        }
    }
}

/// Which statement a write is, by its fence: each is prepared once per connection.
protocol WriteVariant: Sendable {
    static var statement: (sql: String, types: [PostgresDataType]) { get }
}

enum UnfencedWrite: WriteVariant {
    static let statement = PostgresStateStore.writeSQL(.none)
}

enum OwnedWrite: WriteVariant {
    static let statement = PostgresStateStore.writeSQL(.owned)
}

enum ClaimedWrite: WriteVariant {
    static let statement = PostgresStateStore.writeSQL(.claimed(pid: 0, taskID: ""))
}

/// A single write, prepared: its values bound, its statement parsed and planned once per connection.
struct PreparedWrite<Variant: WriteVariant>: PostgresPreparedStatement {
    typealias Row = Int
    static var sql: String { Variant.statement.sql }
    static var bindingDataTypes: [PostgresDataType] { Variant.statement.types }
    let bindings: PostgresBindings
    func makeBindings() throws -> PostgresBindings { bindings }
    func decodeRow(_ row: PostgresRow) throws -> Int { try row.decode(Int.self) }
}

/// A step's progress, prepared.
struct ProgressWrite: PostgresPreparedStatement {
    typealias Row = Int
    static var sql: String { PostgresStateStore.progressSQL }
    static let bindingDataTypes: [PostgresDataType] = [
        .int8, .text, .text, .int8, .float8, .int8, .text,
        .text, .int8, .text, .bool, .text, .int8, .float8, .float8, .int8, .text, .int8,
    ]
    let bindings: PostgresBindings
    func makeBindings() throws -> PostgresBindings { bindings }
    func decodeRow(_ row: PostgresRow) throws -> Int { try row.decode(Int.self) }
}

/// The statements connections of a store: one per statement or transaction in
/// flight, up to `size`, opened when all are busy; callers beyond wait in arrival order.
final class ConnectionPool: Sendable {
    private let size: Int
    private let location: PostgresLocation
    private let logger: Logger
    private let state: Mutex<(opened: [PostgresDatabase], free: [PostgresDatabase], opening: Int, waiting: [CheckedContinuation<PostgresDatabase, Never>])>

    init(first: PostgresDatabase, size: Int) {
        self.size = max(1, size)
        self.location = first.location
        self.logger = first.logger
        state = Mutex(([first], [first], 0, []))
    }

    /// Every connection opened so far.
    var opened: [PostgresDatabase] { state.withLock { $0.opened } }

    /// A free connection, a new one when all are busy and the pool is not full, or the next one released.
    func acquire() async throws -> PostgresDatabase {
        enum Next { case use(PostgresDatabase), open, wait }
        let next = state.withLock { state -> Next in
            if let free = state.free.popLast() { return .use(free) }
            if state.opened.count + state.opening < size {
                state.opening += 1
                return .open
            }
            return .wait
        }
        switch next {
        case let .use(database):
            return database
        case .open:
            do {
                let database = try await PostgresDatabase.open(location, migrate: false, logger: logger)
                state.withLock {
                    $0.opening -= 1
                    $0.opened.append(database)
                }
                return database
            } catch {
                // The server refuses more connections (or is gone): wait for one of those open.
                state.withLock { $0.opening -= 1 }
                logger.debug("no further PostgreSQL state connection: \(error)")
                return await waitForRelease()
            }
        case .wait:
            return await waitForRelease()
        }
    }

    private func waitForRelease() async -> PostgresDatabase {
        await withCheckedContinuation { (continuation: CheckedContinuation<PostgresDatabase, Never>) in
            let free = state.withLock { state -> PostgresDatabase? in
                if let free = state.free.popLast() { return free }
                state.waiting.append(continuation)
                return nil
            }
            if let free { continuation.resume(returning: free) }
        }
    }

    /// Gives a connection back: to the first waiter, or to the free list.
    func release(_ database: PostgresDatabase) {
        let waiter = state.withLock { state -> CheckedContinuation<PostgresDatabase, Never>? in
            if state.waiting.isEmpty {
                state.free.append(database)
                return nil
            }
            return state.waiting.removeFirst()
        }
        waiter?.resume(returning: database)
    }
}

extension String {
    /// The text as stored: PostgreSQL text cannot hold NUL, so NUL is written
    /// as SUB followed by `0`, and SUB as SUB SUB. `fromStored` reverses it.
    var pg: String {
        guard contains(where: { $0 == "\u{0}" || $0 == "\u{1A}" }) else { return self }
        var out = ""
        for scalar in unicodeScalars {
            switch scalar {
            case "\u{0}": out += "\u{1A}0"
            case "\u{1A}": out += "\u{1A}\u{1A}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Stored text back as it was given.
    static func fromStored(_ text: String) -> String {
        guard text.contains("\u{1A}") else { return text }
        var out = ""
        var escaped = false
        for scalar in text.unicodeScalars {
            if escaped {
                out.unicodeScalars.append(scalar == "0" ? "\u{0}" : scalar)
                escaped = false
            } else if scalar == "\u{1A}" {
                escaped = true
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

extension PostgresRandomAccessRow {
    /// A text column, as it was given.
    func text(_ index: Int) throws -> String { String.fromStored(try self[index].decode(String.self)) }
    /// An optional text column, as it was given.
    func optionalText(_ index: Int) throws -> String? { try self[index].decode(String?.self).map(String.fromStored) }
}
