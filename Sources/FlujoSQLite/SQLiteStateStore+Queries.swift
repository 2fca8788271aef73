import Flujo

/// Reads: one statement each, every one served by an index or a counter.
extension SQLiteStateStore {
    private static let loadRun = SQL("SELECT \(StateRow.columns) FROM workflow_state WHERE run_id = ?1")
    private static let loadTaskSQL = SQL("SELECT \(StateRow.columns) FROM workflow_state WHERE task_id = ?1")
    private static let taskIDPrefix = SQL("SELECT task_id FROM workflow_state WHERE task_id >= ?1 AND task_id < ?1 || x'ff' ORDER BY task_id LIMIT ?2")
    /// Both neighbours of an id in the task_id index, in one statement.
    private static let taskIDNeighborsSQL = SQL("""
        SELECT (SELECT task_id FROM workflow_state WHERE task_id <= ?1 ORDER BY task_id DESC LIMIT 1),
               (SELECT task_id FROM workflow_state WHERE task_id > ?1 ORDER BY task_id LIMIT 1)
        """)
    private static let runTotalsSQL = SQL("""
        SELECT w.cost_usd, w.tokens, COALESCE(r.background_cost_usd, 0), COALESCE(r.background_tokens, 0)
        FROM workflow_state AS w LEFT JOIN runs AS r ON r.run_id = w.run_id WHERE w.run_id = ?1
        """)
    private static let stepsSQL = SQL("SELECT \(StateRow.stepColumns) FROM steps WHERE run_id = ?1 ORDER BY seq")
    /// Every counter in one statement (one consistent read, no transaction of its own):
    /// the status counts (kind 0), the totals (kind 1), and the oldest update of each
    /// aged status (kind 2: one seek each on the background (status, updated_at) index).
    private static let countersSQL = SQL("""
        SELECT 0, is_background, status, count FROM status_counts
        UNION ALL SELECT 1, 0, name, value FROM stat_totals
        \(StatusCounters.agedStatuses.map { status in
            "UNION ALL SELECT 2, 1, '\(status.rawValue)', (SELECT min(updated_at) FROM workflow_state WHERE is_background_task = 1 AND status = '\(status.rawValue)')"
        }.joined(separator: "\n"))
        """)
    private static let hoursSQL = SQL("SELECT COALESCE(sum(count), 0) FROM created_per_hour WHERE hour >= ?1")
    private static let edgeSQL = SQL("SELECT count(*) FROM workflow_state WHERE created_at >= ?1 AND created_at < ?2")
    private static let spansSQL = SQL("""
        SELECT \(StateRow.spanColumns)
        FROM spans WHERE trace_id IN (SELECT trace_id FROM spans WHERE run_id = ?1)
        ORDER BY start_unix_nano, span_id
        """)

    public func load(runID: String) async throws -> WorkflowState? {
        try withConnection { (connection) throws(StateStoreError) in
            let statement = try connection.statement(Self.loadRun)
            statement.bind(1, runID)
            return try statement.step() ? StateRow.read(statement) : nil
        }
    }

    public func loadTask(taskID: String) async throws -> WorkflowState? {
        try withConnection { (connection) throws(StateStoreError) in
            let statement = try connection.statement(Self.loadTaskSQL)
            statement.bind(1, taskID)
            return try statement.step() ? StateRow.read(statement) : nil
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
                        SELECT \(StateRow.columns) FROM workflow_state \(parent ? "INDEXED BY workflow_state_parent" : "")
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
            while try statement.step() { rows.append(StateRow.read(statement)) }
            return rows
        }
    }

    public func taskIDNeighbors(of taskID: String) async throws -> [String] {
        try withConnection { (connection) throws(StateStoreError) in
            let statement = try connection.statement(Self.taskIDNeighborsSQL)
            statement.bind(1, taskID)
            guard try statement.step() else { return [] }
            return [statement.string(0), statement.string(1)].compactMap { $0 }
        }
    }

    public func taskIDs(withPrefix prefix: String, limit: Int) async throws -> [String] {
        try withConnection { (connection) throws(StateStoreError) in
            let statement = try connection.statement(Self.taskIDPrefix)
            statement.bind(1, prefix)
            statement.bind(2, max(0, limit))
            var ids: [String] = []
            while try statement.step() { if let id = statement.string(0) { ids.append(id) } }
            return ids
        }
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
            while try statement.step() { records.append(StateRow.readStep(statement)) }
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
        var totals: [String: Double] = [:]
        var oldest: [RunStatus: Timestamp] = [:]
        let rows = try connection.statement(Self.countersSQL)
        while try rows.step() {
            switch rows.int(0) {
            case 0:
                guard let status = RunStatus(rawValue: rows.string(2) ?? ""), rows.int(3) != 0 else { continue }
                let count = rows.int(3)
                if rows.int(1) != 0 {
                    background[status, default: 0] = background[status, default: 0].addingSaturating(count)
                } else {
                    runs[status, default: 0] = runs[status, default: 0].addingSaturating(count)
                }
            case 1:
                totals[rows.string(2) ?? ""] = rows.double(3)
            default:
                if let status = RunStatus(rawValue: rows.string(2) ?? ""), let time = rows.optionalTimestamp(3) { oldest[status] = time }
            }
        }
        // An age is shown only while tasks have that status.
        oldest = oldest.filter { (background[$0.key] ?? 0) > 0 }
        return StatusCounters(
            runs: runs, backgroundTasks: background, totalRuns: Int(saturating: totals["total_runs"] ?? 0),
            durationSumMs: totals["duration_sum_ms"] ?? 0, durationCount: Int(saturating: totals["duration_count"] ?? 0),
            prunedRuns: Int(saturating: totals["pruned_runs"] ?? 0), oldestTaskUpdate: oldest)
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

    public func spans(runID: String) async throws -> [SpanRecord] {
        try withConnection { (connection) throws(StateStoreError) in
            let statement = try connection.statement(Self.spansSQL)
            statement.bind(1, runID)
            var records: [SpanRecord] = []
            while try statement.step() { records.append(StateRow.readSpan(statement)) }
            return records
        }
    }
}
