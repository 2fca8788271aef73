import Flujo

/// Claims: a resume holds a lock on the task (see `TaskClaims`), never a row.
extension SQLiteStateStore {
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

    private static let dueTasksSQL = """
        SELECT task_id FROM workflow_state INDEXED BY workflow_state_due
        WHERE status = 'failed' AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?1 AND is_background_task = 1
        """
    private static let dueTasks = SQL(dueTasksSQL + " ORDER BY next_attempt_at LIMIT 64")
    /// Only tasks of the steps in `?2`, a JSON array of names.
    private static let dueTasksOfSteps = SQL(dueTasksSQL + " AND step_name IN (SELECT value FROM json_each(?2)) ORDER BY next_attempt_at LIMIT 64")
    private static let stillDue = SQL("SELECT next_attempt_at FROM workflow_state WHERE task_id = ?1 AND status = 'failed' AND next_attempt_at <= ?2")

    /// Tries the due tasks oldest first: the first whose claim this store takes,
    /// and that is still due once claimed, is the one.
    public func claimNextDueTask(owner: String, now: Timestamp, steps: Set<String>?) async throws -> WorkflowState? {
        if let steps, steps.isEmpty { return nil }
        let candidates = try withConnection { (connection) throws(StateStoreError) -> [String] in
            let statement = try connection.statement(steps == nil ? Self.dueTasks : Self.dueTasksOfSteps)
            statement.bind(1, now)
            if let steps { statement.bind(2, "[" + steps.sorted().map(JSONText.quote).joined(separator: ",") + "]") }
            var ids: [String] = []
            while try statement.step() { if let id = statement.string(0) { ids.append(id) } }
            return ids
        }
        for taskID in candidates {
            guard case let .claimed(state) = try await claimTask(taskID: taskID, owner: owner) else { continue }
            let due = try withConnection { (connection) throws(StateStoreError) -> Bool in
                let statement = try connection.statement(Self.stillDue)
                statement.bind(1, taskID)
                statement.bind(2, now)
                return try statement.step()
            }
            if due { return state }
            // Another worker ran it in between and it is no longer due.
            releaseClaim(taskID: taskID)
        }
        return nil
    }
}
