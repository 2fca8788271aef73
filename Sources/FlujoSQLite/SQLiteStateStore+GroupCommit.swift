import Flujo
import Synchronization

/// Group commit: concurrent writes of one process share a transaction.
extension SQLiteStateStore {

    struct WriteJob: Sendable {
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
}
