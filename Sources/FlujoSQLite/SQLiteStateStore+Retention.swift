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
            var clause = "(status = '\(status.rawValue)' AND updated_at < ?\(cutoffs.count)"
            if status == .failed {
                // `?` numbered after the cutoffs; bound with the kept categories.
                let marks = kept.indices.map { "?\(4 + $0)" }.joined(separator: ", ")
                clause += " AND error_category IS NOT NULL" + (kept.isEmpty ? "" : " AND error_category NOT IN (\(marks))")
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
                let statement = try connection.statement("SELECT count(*) FROM workflow_state WHERE \(condition.sql)")
                Self.bind(condition, to: statement)
                return try statement.step() ? statement.int(0) : 0
            }
        }
        let limit = max(0, limit)
        return try await write { (connection) throws(StateStoreError) -> Int in
            let select = try connection.statement("""
                SELECT run_id, is_background_task, status, created_at, execution_time_ms FROM workflow_state
                WHERE \(condition.sql) LIMIT \(limit)
                """)
            Self.bind(condition, to: select)
            var doomed: [(runID: String, isBackground: Bool, status: String, createdAt: Int64, duration: Double?)] = []
            while try select.step() {
                doomed.append((select.string(0) ?? "", select.int(1) != 0, select.string(2) ?? "", select.int64(3), select.optionalDouble(4)))
            }
            select.reset()
            for row in doomed {
                for table in ["workflow_state", "steps", "spans", "runs"] {
                    let delete = try connection.statement("DELETE FROM \(table) WHERE run_id = ?1")
                    delete.bind(1, row.runID)
                    try delete.run()
                }
                connection.counterChanges.deleted(isBackground: row.isBackground, status: row.status, createdAtMs: row.createdAt, executionTimeMs: row.duration)
            }
            return doomed.count
        }
    }
}
