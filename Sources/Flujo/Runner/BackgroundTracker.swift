import Synchronization

/// The background tasks this runner has in flight, and its maintenance loop.
final class BackgroundTracker: Sendable {
    struct Entry: Sendable {
        let runID: String
        let taskID: String
        let task: Task<Void, Never>
    }

    private struct State {
        var running: [String: Entry] = [:]
        /// Tasks that finished before their entry was added (a task may end on
        /// another thread before `add` runs); their entry is never added.
        var finishedEarly: Set<String> = []
        var started = false
        var closed = false
        var maintenance: Task<Void, Never>?
    }

    private let state = Mutex(State())

    /// Marks the runner started; true only for the first caller.
    func markStarted() -> Bool {
        state.withLock { state in
            if state.started { return false }
            state.started = true
            return true
        }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Adds a started task, unless it has already finished.
    func add(_ entry: Entry) {
        state.withLock { state in
            if state.finishedEarly.remove(entry.runID) != nil { return }
            state.running[entry.runID] = entry
        }
    }

    /// Removes a finished task (called by the task itself, possibly before `add`).
    func remove(runID: String) {
        state.withLock { state in
            if state.running.removeValue(forKey: runID) == nil { state.finishedEarly.insert(runID) }
        }
    }

    var isEmpty: Bool { state.withLock { $0.running.isEmpty } }

    var runningRunIDs: [String] { state.withLock { Array($0.running.keys) } }

    var entries: [Entry] { state.withLock { Array($0.running.values) } }

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
            state.closed = true
            defer { state.maintenance = nil }
            return state.maintenance
        }
    }
}
