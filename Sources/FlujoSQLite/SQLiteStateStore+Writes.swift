import Flujo

/// Writes: every change to the rows, with the counters changed in the same transaction.
extension SQLiteStateStore {
    /// Every column, the owner (`?26`: the process that runs a running background
    /// task), the next attempt (`?27`) and the task's trace record (`?28`).
    private static let insertState = SQL("""
        INSERT INTO workflow_state (\(StateRow.columns), owner, next_attempt_at, trace)
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
            metadata = ?16, error_category = ?20, attempts = ?21, resumed_from = ?22, step_name = ?23,
            cost_usd = ?24, tokens = ?25, owner = ?26, next_attempt_at = ?27, trace = coalesce(?28, trace)
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
        INSERT INTO steps (\(StateRow.stepColumns), seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
        """)

    private static let heartbeatSQL = SQL("UPDATE workflow_state SET updated_at = ?2 WHERE run_id = ?1 AND status = 'running'")
    /// `OR FAIL`: a failure keeps the rows already changed instead of undoing them,
    /// so SQLite keeps no statement journal (a copy of every page the update
    /// touches); the enclosing transaction still rolls back as a whole on any error.
    private static let failStaleUpdate = """
        UPDATE OR FAIL workflow_state
        SET status = ?2, updated_at = ?3, error_message = ?4, error_category = ?5, next_attempt_at = ?6
        WHERE is_background_task = 1 AND status = 'running' AND updated_at < ?1 AND owner IS NULL
        """
    private static let failStale = SQL(failStaleUpdate + "\nRETURNING \(endedColumns)")
    private static let failStaleCounted = SQL(failStaleUpdate)

    /// What a bulk transition returns of each task it ended.
    private static let endedColumns = "run_id, task_id, parent_run_id, pipeline_name, pipeline_version, step_name, trace"

    private static func endedTask(_ statement: Statement) -> EndedTask {
        EndedTask(
            runID: statement.string(0) ?? "", taskID: statement.string(1) ?? "", parentRunID: statement.string(2),
            pipelineName: statement.string(3) ?? "", pipelineVersion: statement.string(4) ?? "", stepName: statement.string(5) ?? "",
            trace: statement.string(6).flatMap(TaskTrace.init(encoded:)))
    }

    /// The processes recorded as running background tasks or runs now, each part
    /// through its own partial index (never a scan of every row).
    private static let runningOwners = SQL("""
        SELECT owner FROM workflow_state WHERE is_background_task = 1 AND status = 'running' AND owner IS NOT NULL
        UNION SELECT owner FROM workflow_state WHERE is_background_task = 0 AND status = 'running' AND owner IS NOT NULL
        """)

    /// A gone owner's running runs (`?1`), and running runs of no owner last
    /// updated before `?1` (rows of earlier versions): each through the index of
    /// running runs, as a pair of statements (`endRuns`).
    private static let orphanRuns = endRuns(where: "is_background_task = 0 AND status = 'running' AND owner = ?1")
    private static let staleRuns = endRuns(where: "is_background_task = 0 AND status = 'running' AND owner IS NULL AND updated_at < ?1")

    /// The statements that end the runs `condition` matches: their rows in `runs`, then their own.
    private static func endRuns(where condition: String) -> (inRuns: SQL, rows: SQL) {
        (SQL("UPDATE runs SET status = ?2, ended_at = ?3 WHERE run_id IN (SELECT run_id FROM workflow_state WHERE \(condition))"),
         SQL("""
            UPDATE OR FAIL workflow_state
            SET status = ?2, updated_at = ?3, error_message = ?4, error_category = ?5, owner = NULL, next_attempt_at = ?6
            WHERE \(condition)
            """))
    }

    /// `OR FAIL` as for stale cleanup.
    private static let failOrphansUpdate = """
        UPDATE OR FAIL workflow_state
        SET status = ?2, updated_at = ?3, error_message = ?4, error_category = ?5, owner = NULL, next_attempt_at = ?6
        WHERE is_background_task = 1 AND status = 'running' AND owner = ?1
        """
    private static let failOrphans = SQL(failOrphansUpdate + "\nRETURNING \(endedColumns)")
    private static let failOrphansCounted = SQL(failOrphansUpdate)
    private static let traceSQL = SQL("SELECT trace FROM workflow_state WHERE run_id = ?1")
    private static let addUsageSQL = SQL("UPDATE runs SET background_cost_usd = background_cost_usd + ?2, background_tokens = background_tokens + ?3 WHERE run_id = ?1")

    private static let saveSpanSQL = SQL("""
        INSERT OR REPLACE INTO spans (\(StateRow.spanColumns)) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
        """)

    public func save(_ state: WorkflowState, step: StepRecord?, parentUsage: Usage?) async throws {
        let owner = try owner(if: state.status == .running)
        try await write { (connection) throws(StateStoreError) in
            try Self.write(state, step: step, parentUsage: parentUsage, owner: owner, nextAttemptAt: nil, trace: nil, on: connection)
        }
    }

    public func save(_ writes: [StateWrite]) async throws {
        let owner = try owner(if: writes.contains { $0.state.status == .running })
        let replaced = writes.progressReplacedLater
        try await write { (connection) throws(StateStoreError) in
            // By index: each write's fields are read in place, not copied.
            for index in writes.indices {
                if replaced[index] {
                    // A later write of this batch sets the run's progress; this one adds its step.
                    try Self.addUsage(writes[index].parentUsage, of: writes[index].state, on: connection)
                    try Self.appendStep(writes[index].step, on: connection)
                    continue
                }
                try Self.write(
                    writes[index].state, step: writes[index].step, parentUsage: writes[index].parentUsage, owner: owner,
                    nextAttemptAt: writes[index].nextAttemptAt, trace: writes[index].trace, on: connection)
            }
        }
    }

    /// This process's owner identity when the writes hold a running background
    /// task or run (`needed`): its owner lock is taken before the row is
    /// committed, so no other process ever sees it running without a live owner.
    private func owner(if needed: Bool) throws(StateStoreError) -> String? {
        guard needed else { return nil }
        return try TaskClaims.shared.holdOwnerLock(key: claimKey, filename: filename)
    }

    public func taskTrace(runID: String) async throws -> TaskTrace? {
        try withConnection { (connection) throws(StateStoreError) -> TaskTrace? in
            defer { connection.resetActive() }
            let statement = try connection.statement(Self.traceSQL)
            statement.bind(1, runID)
            guard try statement.step() else { return nil }
            return statement.string(0).flatMap(TaskTrace.init(encoded:))
        }
    }

    public func failOrphanedTasks(applying transition: TaskTransition) async throws -> [EndedTask] {
        try await failOrphans(transition, returning: true).ended
    }

    public func failOrphanedTaskCount(applying transition: TaskTransition) async throws -> Int {
        try await failOrphans(transition, returning: false).count
    }

    /// Fails the running tasks of every gone owner; with `returning`, reads each back.
    private func failOrphans(_ transition: TaskTransition, returning: Bool) async throws -> (ended: [EndedTask], count: Int) {
        let gone = try goneOwners()
        guard !gone.isEmpty else { return ([], 0) }
        return try await write { (connection) throws(StateStoreError) -> (ended: [EndedTask], count: Int) in
            var ended: [EndedTask] = []
            var count = 0
            for owner in gone {
                let statement = try connection.statement(returning ? Self.failOrphans : Self.failOrphansCounted)
                statement.bind(1, owner)
                count += try Self.runBulk(statement, transition, returning: returning, into: &ended, on: connection)
            }
            return (ended, count)
        }
    }

    /// Runs a bulk transition's update (its own values bound from `?2`) and moves
    /// the counters by what it changed; with `returning`, appends each ended task.
    private static func runBulk(
        _ statement: Statement, _ transition: TaskTransition, returning: Bool, into ended: inout [EndedTask], on connection: SQLiteConnection
    ) throws(StateStoreError) -> Int {
        bind(transition, to: statement)
        let count: Int
        if returning {
            let before = ended.count
            while try statement.step() { ended.append(endedTask(statement)) }
            statement.reset()
            count = ended.count - before
        } else {
            try statement.run()
            count = connection.changes
        }
        connection.counterChanges.moved(isBackground: true, from: RunStatus.running.rawValue, to: transition.status.rawValue, count: count)
        return count
    }

    public func failOrphanedRuns(applying transition: TaskTransition) async throws -> Int {
        let gone = try goneOwners()
        guard !gone.isEmpty else { return 0 }
        return try await write { (connection) throws(StateStoreError) -> Int in
            var count = 0
            for owner in gone {
                count += try Self.endRuns(Self.orphanRuns, matching: { $0.bind(1, owner) }, transition, on: connection)
            }
            return count
        }
    }

    public func failStaleRuns(updatedBefore: Timestamp, applying transition: TaskTransition) async throws -> Int {
        try await write { (connection) throws(StateStoreError) -> Int in
            try Self.endRuns(Self.staleRuns, matching: { $0.bind(1, updatedBefore) }, transition, on: connection)
        }
    }

    /// Ends the runs both statements match (`?1`, bound by `matching`): their
    /// rows in `runs` first, then their own; the counters follow. Returns how many.
    private static func endRuns(
        _ statements: (inRuns: SQL, rows: SQL), matching bindCondition: (Statement) -> Void, _ transition: TaskTransition, on connection: SQLiteConnection
    ) throws(StateStoreError) -> Int {
        let runs = try connection.statement(statements.inRuns)
        bindCondition(runs)
        runs.bind(2, transition.status.rawValue)
        runs.bind(3, transition.at)
        try runs.run()
        let statement = try connection.statement(statements.rows)
        bindCondition(statement)
        bind(transition, to: statement)
        try statement.run()
        let changed = connection.changes
        connection.counterChanges.moved(isBackground: false, from: RunStatus.running.rawValue, to: transition.status.rawValue, count: changed)
        return changed
    }

    /// The owners recorded on running tasks or runs whose processes have ended: read
    /// first (a lock probe each), so their rows then change in one write.
    private func goneOwners() throws(StateStoreError) -> [String] {
        let owners = try withConnection { (connection) throws(StateStoreError) -> [String] in
            let statement = try connection.statement(Self.runningOwners)
            var owners: [String] = []
            while try statement.step() { if let owner = statement.string(0) { owners.append(owner) } }
            return owners
        }
        return owners.filter { !TaskClaims.shared.isOwnerAlive($0, key: claimKey, filename: filename) }
    }

    /// The synchronous body of `save`, for callers already off the cooperative pool.
    public func saveNow(_ state: WorkflowState, step: StepRecord?, parentUsage: Usage? = nil) throws(StateStoreError) {
        try withConnection { (connection) throws(StateStoreError) in
            try connection.transaction { () throws(StateStoreError) in
                try Self.write(state, step: step, parentUsage: parentUsage, owner: nil, nextAttemptAt: nil, trace: nil, on: connection)
            }
        }
    }

    /// Saves many states in one transaction (imports, tests, benchmarks):
    /// the same upsert as `save`, committed once.
    public func saveAll(_ states: [WorkflowState]) throws(StateStoreError) {
        try withConnection { (connection) throws(StateStoreError) in
            try connection.transaction { () throws(StateStoreError) in
                for state in states { try Self.write(state, step: nil, parentUsage: nil, owner: nil, nextAttemptAt: nil, trace: nil, on: connection) }
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
    private static func write(
        _ state: WorkflowState, step: StepRecord?, parentUsage: Usage?, owner: String?, nextAttemptAt: Timestamp?, trace: TaskTrace?,
        on connection: SQLiteConnection
    ) throws(StateStoreError) {
        let rowOwner = state.status == .running ? owner : nil
        try addUsage(parentUsage, of: state, on: connection)
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
                StateRow.bind(state, to: update)
                update.bind(26, rowOwner)
                update.bind(27, nextAttemptAt)
                update.bind(28, trace?.encoded)
                try update.run()
                connection.counterChanges.moved(isBackground: isBackground, from: oldStatus, to: state.status.rawValue)
                connection.counterChanges.duration(from: oldDuration, to: state.executionTimeMs)
            } else {
                let insert = try connection.statement(insertState)
                StateRow.bind(state, to: insert)
                insert.bind(26, rowOwner)
                insert.bind(27, nextAttemptAt)
                insert.bind(28, trace?.encoded)
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
        StateRow.bind(step, sequence: StepSequence.next(), to: insert)
        try insert.run()
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

    /// Binds what a bulk transition records to `?2`...`?6` (status, time, message, category, next attempt).
    private static func bind(_ transition: TaskTransition, to statement: Statement) {
        statement.bind(2, transition.status.rawValue)
        statement.bind(3, transition.at)
        statement.bind(4, transition.errorMessage)
        statement.bind(5, transition.errorCategory?.rawValue)
        statement.bind(6, transition.nextAttemptAt)
    }

    public func failStaleTasks(heartbeatBefore: Timestamp, applying transition: TaskTransition) async throws -> [EndedTask] {
        try await failStale(heartbeatBefore, transition, returning: true).ended
    }

    public func failStaleTaskCount(heartbeatBefore: Timestamp, applying transition: TaskTransition) async throws -> Int {
        try await failStale(heartbeatBefore, transition, returning: false).count
    }

    /// Fails running tasks of no owner whose heartbeat is older than `heartbeatBefore`; with `returning`, reads each back.
    private func failStale(_ heartbeatBefore: Timestamp, _ transition: TaskTransition, returning: Bool) async throws -> (ended: [EndedTask], count: Int) {
        try await write { (connection) throws(StateStoreError) -> (ended: [EndedTask], count: Int) in
            let statement = try connection.statement(returning ? Self.failStale : Self.failStaleCounted)
            statement.bind(1, heartbeatBefore)
            var ended: [EndedTask] = []
            let count = try Self.runBulk(statement, transition, returning: returning, into: &ended, on: connection)
            return (ended, count)
        }
    }

    /// Adds a write's parent usage, if any, to the totals of the state's parent.
    private static func addUsage(_ usage: Usage?, of state: WorkflowState, on connection: SQLiteConnection) throws(StateStoreError) {
        guard let usage, let parent = state.parentRunID, usage.costUSD != 0 || usage.tokens != 0 else { return }
        let statement = try connection.statement(Self.addUsageSQL)
        statement.bind(1, parent)
        statement.bind(2, usage.costUSD)
        statement.bind(3, usage.tokens)
        try statement.run()
    }

    public func saveSpans(_ spans: [SpanRecord]) async throws {
        guard !spans.isEmpty else { return }
        try await write { (connection) throws(StateStoreError) in
            do {
                let statement = try connection.statement(Self.saveSpanSQL)
                for span in spans {
                    statement.reset()
                    StateRow.bind(span, to: statement)
                    try statement.run()
                }
            }
        }
    }
}
