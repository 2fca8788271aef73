import Flujo

/// Retention: deleting ended runs and tasks with their step logs and spans.
extension SQLiteStateStore {
    /// The condition of the rows `policy` prunes, and its parameters in order.
    private static func condition(_ policy: PrunePolicy) -> (sql: String, cutoffs: [Timestamp], kept: [String]) {
        var clauses: [String] = []
        var cutoffs: [Timestamp] = []
        let kept = policy.keptFailureCategories.map(\.rawValue).sorted()
        for status in [RunStatus.completed, .failed, .cancelled] {
            guard let cutoff = policy.cutoffs[status] else { continue }
            cutoffs.append(cutoff)
            var clause = "(w.status = '\(status.rawValue)' AND w.updated_at < ?\(cutoffs.count)"
            if status == .failed {
                // `?` numbered after the cutoffs; bound with the kept categories.
                let marks = kept.indices.map { "?\(4 + $0)" }.joined(separator: ", ")
                clause += " AND w.error_category IS NOT NULL" + (kept.isEmpty ? "" : " AND w.error_category NOT IN (\(marks))")
            }
            clauses.append(clause + ")")
        }
        return (clauses.isEmpty ? "0" : clauses.joined(separator: " OR "), cutoffs, kept)
    }

    private static func bind(_ condition: (sql: String, cutoffs: [Timestamp], kept: [String]), to statement: Statement) {
        for (index, cutoff) in condition.cutoffs.enumerated() { statement.bind(Int32(index + 1), cutoff) }
        for (index, category) in condition.kept.enumerated() { statement.bind(Int32(4 + index), category) }
    }

    public func prune(_ policy: PrunePolicy, limit: Int, dryRun: Bool) async throws -> Int {
        let condition = Self.condition(policy)
        if dryRun {
            return try withConnection { (connection) throws(StateStoreError) -> Int in
                let statement = try connection.statement("SELECT count(*) FROM workflow_state AS w WHERE \(condition.sql)")
                Self.bind(condition, to: statement)
                return try statement.step() ? statement.int(0) : 0
            }
        }
        let limit = max(0, limit)
        let latest = condition.cutoffs.max() ?? Timestamp(millisecondsSince1970: 0)
        return try await write { (connection) throws(StateStoreError) -> Int in
            // Background rows through their partial (status, updated_at) index; foreground
            // runs through the end times in `runs`: neither scans the table.
            let columns = "w.run_id, w.is_background_task, w.status, w.created_at, w.execution_time_ms"
            let background = try connection.statement("""
                SELECT \(columns) FROM workflow_state AS w INDEXED BY workflow_state_background
                WHERE w.is_background_task = 1 AND (\(condition.sql)) LIMIT \(limit)
                """)
            Self.bind(condition, to: background)
            var doomed: [(runID: String, isBackground: Bool, status: String, createdAt: Int64, duration: Double?)] = []
            while try background.step() {
                doomed.append((background.string(0) ?? "", true, background.string(2) ?? "", background.int64(3), background.optionalDouble(4)))
            }
            background.reset()
            if doomed.count < limit {
                let foreground = try connection.statement("""
                    SELECT \(columns) FROM runs AS r INDEXED BY runs_ended JOIN workflow_state AS w ON w.run_id = r.run_id
                    WHERE r.ended_at IS NOT NULL AND r.ended_at < ?99 AND w.is_background_task = 0 AND (\(condition.sql))
                    LIMIT \(limit - doomed.count)
                    """)
                Self.bind(condition, to: foreground)
                foreground.bind(99, latest)
                while try foreground.step() {
                    doomed.append((foreground.string(0) ?? "", false, foreground.string(2) ?? "", foreground.int64(3), foreground.optionalDouble(4)))
                }
                foreground.reset()
            }
            guard !doomed.isEmpty else { return 0 }
            // One statement per table for the whole batch.
            let marks = doomed.indices.map { "?\($0 + 1)" }.joined(separator: ", ")
            for table in ["workflow_state", "steps", "spans", "runs"] {
                let delete = try connection.statement("DELETE FROM \(table) WHERE run_id IN (\(marks))")
                for (index, row) in doomed.enumerated() { delete.bind(Int32(index + 1), row.runID) }
                try delete.run()
            }
            for row in doomed {
                connection.counterChanges.deleted(isBackground: row.isBackground, status: row.status, createdAtMs: row.createdAt, executionTimeMs: row.duration)
            }
            return doomed.count
        }
    }
}
