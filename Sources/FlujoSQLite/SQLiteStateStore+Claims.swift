import Flujo

/// Claims: a resume holds a lock on the task (see `TaskClaims`), never a row.
extension SQLiteStateStore {
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
}
