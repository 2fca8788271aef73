import Dispatch
import Flujo
import Synchronization

/// Group commit: concurrent writes of one process share a transaction.
extension SQLiteStateStore {

    struct WriteJob: Sendable {
        let work: @Sendable (SQLiteConnection) -> StateStoreError?
        let done: CheckedContinuation<StateStoreError?, Never>
    }

    /// Written by the commit before the write's own continuation resumes,
    /// read by the writer after it: the continuation orders the two.
    private final class ResultBox<T>: @unchecked Sendable {
        var value: T?
    }

    /// Runs `body` in a write transaction, committed together with the writes
    /// other tasks of this process make at the same moment (group commit).
    ///
    /// A write that finds no commit under way and none queued commits at once,
    /// on its caller's thread: a lone writer never waits for a thread. Writes
    /// that arrive while a commit is under way queue, suspended; each time a
    /// commit ends, everything queued meanwhile is committed in one
    /// transaction, on the store's serial write queue (off the cooperative
    /// pool), until nothing is queued. Each caller returns only after its
    /// write is committed.
    func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws(StateStoreError) -> T) async throws(StateStoreError) -> T {
        let box = ResultBox<T>()
        let work: @Sendable (SQLiteConnection) -> StateStoreError? = { connection in
            do throws(StateStoreError) {
                box.value = try body(connection)
                return nil
            } catch {
                return error
            }
        }
        let alone = pendingWrites.withLock { state -> Bool in
            guard !state.committing && state.jobs.isEmpty else { return false }
            state.committing = true
            return true
        }
        if alone {
            let failure = commit([work])[0]
            finishCommit()
            if let failure { throw failure }
            return box.value!
        }
        let failure: StateStoreError? = await withCheckedContinuation { continuation in
            let job = WriteJob(work: work, done: continuation)
            let starts = pendingWrites.withLock { state -> Bool in
                state.jobs.append(job)
                if state.committing { return false }
                state.committing = true
                return true
            }
            if starts { writeQueue.async { self.drainWrites() } }
        }
        if let failure { throw failure }
        return box.value!
    }

    /// Ends a commit: hands what queued meanwhile to the write queue, or marks
    /// that no commit is under way.
    private func finishCommit() {
        let more = pendingWrites.withLock { state -> Bool in
            if state.jobs.isEmpty {
                state.committing = false
                return false
            }
            return true
        }
        if more { writeQueue.async { self.drainWrites() } }
    }

    /// Commits queued writes batch by batch, each batch in one transaction, until none is queued.
    private func drainWrites() {
        while true {
            let batch = pendingWrites.withLock { state -> [WriteJob] in
                if state.jobs.isEmpty {
                    state.committing = false
                    return []
                }
                defer { state.jobs.removeAll(keepingCapacity: true) }
                return state.jobs
            }
            if batch.isEmpty { return }
            let results = commit(batch.map(\.work))
            for (job, result) in zip(batch, results) { job.done.resume(returning: result) }
        }
    }

    /// Commits a batch in one transaction. If one write fails, nothing of the
    /// batch is kept and each write runs again in its own transaction, so one
    /// failure does not undo the others (a write's body may run twice).
    private func commit(_ batch: [@Sendable (SQLiteConnection) -> StateStoreError?]) -> [StateStoreError?] {
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
}
