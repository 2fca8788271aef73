import Synchronization

/// The background tasks this runner has in flight, and its maintenance loop.
final class BackgroundTracker: Sendable {
    struct Entry: Sendable {
        let runID: String
        let taskID: String
        /// Nil only for the moment between recording the task and starting it.
        var task: Task<Void, Never>?
    }

    private struct State {
        var running: [String: Entry] = [:]
        /// `close()` has begun: no new run.
        var closing = false
        /// `close()` has ended: no new background task either.
        var closed = false
        /// Outcomes not written yet, by run id, and the task writing them again.
        var pending: [String: PendingOutcome] = [:]
        var pendingWriter: Task<Void, Never>?
        var maintenance: Task<Void, Never>?
        /// Callers of `waitUntilEmpty`, woken when the last task ends or at their deadline.
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var lastWaiter = 0
    }

    private let state = Mutex(State())

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Whether `close()` has begun.
    var isClosing: Bool { state.withLock { $0.closing } }

    /// Marks the start of `close()`.
    func beginClosing() {
        state.withLock { $0.closing = true }
    }

    var isMaintenanceRunning: Bool { state.withLock { $0.maintenance != nil } }

    /// Records a task, then starts it: it cannot remove itself (it may finish
    /// at once on another thread) before it is recorded. The task is created
    /// outside the lock, which creating it would otherwise hold while waking a
    /// thread, so concurrent launches and ends do not queue on it.
    func start(runID: String, taskID: String, _ operation: @escaping @Sendable () async -> Void) {
        state.withLock { state in
            state.running[runID] = Entry(runID: runID, taskID: taskID, task: nil)
        }
        let task = Task(operation: operation)
        state.withLock { state in
            // Unless it has ended already.
            state.running[runID]?.task = task
        }
    }

    /// Removes a finished task; the last one wakes whoever waits for none to be left.
    func remove(runID: String) {
        let woken = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.running.removeValue(forKey: runID)
            guard state.running.isEmpty && !state.waiters.isEmpty else { return [] }
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in woken { waiter.resume() }
    }

    /// Returns as soon as no task is in flight, or at `deadline`, whichever
    /// comes first: the moment the last task ends, without polling.
    func waitUntilEmpty(until deadline: ContinuousClock.Instant) async {
        let id = state.withLock { state -> Int in
            state.lastWaiter += 1
            return state.lastWaiter
        }
        let timer = Task { [weak self] in
            try? await Task.sleep(until: deadline, clock: .continuous)
            self?.wake(id)
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // Under the lock: a timer that fired before this finds no waiter, and then the deadline has passed.
            let now = state.withLock { state -> Bool in
                if state.running.isEmpty || ContinuousClock.now >= deadline { return true }
                state.waiters[id] = continuation
                return false
            }
            if now { continuation.resume() }
        }
        timer.cancel()
    }

    private func wake(_ id: Int) {
        state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
    }

    var isEmpty: Bool { state.withLock { $0.running.isEmpty } }

    var runningRunIDs: [String] { state.withLock { Array($0.running.keys) } }

    var entries: [Entry] { state.withLock { Array($0.running.values) } }

    /// Keeps an outcome to write again; returns true when no writer runs yet (the caller starts one).
    func addPending(_ outcome: PendingOutcome) -> Bool {
        state.withLock { state in
            state.pending[outcome.state.runID] = outcome
            return state.pendingWriter == nil
        }
    }

    var pendingOutcomes: [PendingOutcome] { state.withLock { Array($0.pending.values) } }

    var pendingCount: Int { state.withLock { $0.pending.count } }

    /// Forgets an outcome once written.
    func removePending(runID: String) {
        _ = state.withLock { $0.pending.removeValue(forKey: runID) }
    }

    /// Records a failed try to write an outcome.
    func notePendingFailure(runID: String, error: String) {
        state.withLock { state in
            state.pending[runID]?.error = error
            state.pending[runID]?.attempts += 1
        }
    }

    /// Sets the writer of pending outcomes, unless one runs.
    func startPendingWriter(_ start: () -> Task<Void, Never>) {
        state.withLock { state in
            guard state.pendingWriter == nil else { return }
            state.pendingWriter = start()
        }
    }

    /// Clears the writer when nothing is left to write; false when more came meanwhile.
    func finishPendingWriter() -> Bool {
        state.withLock { state in
            guard state.pending.isEmpty else { return false }
            state.pendingWriter = nil
            return true
        }
    }

    /// Starts the maintenance loop unless it runs already or the runner is closed.
    func startMaintenanceIfNeeded(_ start: () -> Task<Void, Never>) {
        state.withLock { state in
            guard state.maintenance == nil, !state.closed else { return }
            state.maintenance = start()
        }
    }

    /// Marks the runner closed and returns the maintenance loop to stop.
    func close() -> Task<Void, Never>? {
        state.withLock { state in
            state.closing = true
            state.closed = true
            defer { state.maintenance = nil }
            return state.maintenance
        }
    }
}
