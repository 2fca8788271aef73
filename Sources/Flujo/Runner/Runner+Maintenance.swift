import Foundation

extension Runner {
    /// Starts maintenance: recovery of tasks whose process ended and one stale
    /// cleanup now, then a loop that records the heartbeat of this runner's
    /// running tasks and recovers orphaned tasks every
    /// `heartbeat_interval_seconds`, runs the stale cleanup every
    /// `stale_check_interval_seconds` (0: only now), and applies retention
    /// (`[state] keep_*_hours`) in batches of 1,000 rows, back to back while it
    /// is behind, else once a beat. `close()` stops it. Does nothing when state tracking is off, when
    /// it runs already, or after `close()`.
    ///
    /// Call it in a process whose background tasks may run for longer than
    /// `stale_task_timeout_hours`: without heartbeats another process's cleanup
    /// would take them for crashed. Reads never start it.
    public func startMaintenance() {
        let background = settings.backgroundTasks
        guard background.enableStateTracking else { return }
        let heartbeat = background.heartbeatIntervalSeconds
        let staleEvery = background.staleCheckIntervalSeconds
        let runner = self
        let operations = tasks
        tracker.startMaintenanceIfNeeded {
            Task {
                do {
                    try await runner.recoverLost(operations)
                    let count = try await operations.cleanupStaleTasks()
                    if count > 0 { runner.logger.notice("marked \(count) stale background task(s) failed") }
                } catch {
                    runner.logger.warning("recovery or stale cleanup failed: \(error)")
                }
                // Retention runs on its own: in batches of 1,000 rows (one short transaction
                // each), back to back while whole batches come back, so a store that ends
                // work faster than one beat prunes keeps up; then it waits a beat.
                let retention = Task {
                    while !Task.isCancelled {
                        let deleted = (try? await operations.prune(batch: 1000, maxBatches: 1)) ?? 0
                        if deleted < 1000 { try? await Task.sleep(for: .seconds(heartbeat)) } else { await Task.yield() }
                    }
                }
                defer { retention.cancel() }
                var sinceStaleCheck = 0.0
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(heartbeat))
                    if Task.isCancelled { break }
                    let running = runner.tracker.runningRunIDs
                    if !running.isEmpty {
                        do { try await runner.store.heartbeat(runIDs: running, at: .now) } catch {
                            runner.logger.warning("heartbeat failed: \(error)")
                        }
                    }
                    do {
                        try await runner.recoverLost(operations)
                    } catch {
                        runner.logger.warning("recovery of orphaned tasks failed: \(error)")
                    }
                    sinceStaleCheck += heartbeat
                    if staleEvery > 0 && sinceStaleCheck >= staleEvery {
                        sinceStaleCheck = 0
                        _ = try? await operations.cleanupStaleTasks()
                    }

                }
            }
        }
    }

    /// Whether maintenance is running.
    public var isMaintenanceRunning: Bool { tracker.isMaintenanceRunning }

    /// Waits for background tasks up to `timeout` (default `shutdown_timeout_seconds`),
    /// cancels the rest and persists them `cancelled`, makes a last attempt to
    /// write outcomes that could not be written, stops maintenance and drains
    /// queued sinks. The report names what could not be persisted: those
    /// tasks stay `running` under this process until it ends, and are then
    /// recovered as lost workers (resumable).
    @discardableResult
    public func close(timeout: Duration? = nil) async -> CloseReport {
        let limit = timeout ?? .seconds(settings.backgroundTasks.shutdownTimeoutSeconds)
        let deadline = ContinuousClock.now + limit
        // From here no new run starts; runs under way may still launch tasks until the wait ends.
        tracker.beginClosing()
        await tracker.waitUntilEmpty(until: deadline)
        let stragglers = tracker.entries
        for entry in stragglers { entry.task?.cancel() }
        // Give cancelled tasks a moment to persist themselves; force the rest.
        if !stragglers.isEmpty { await tracker.waitUntilEmpty(until: .now + .milliseconds(500)) }
        var notMarked: [String] = []
        for entry in tracker.entries {
            if let error = await executor.markCancelledAtShutdown(runID: entry.runID) {
                notMarked.append("could not mark task run \(entry.runID) cancelled: \(error); it stays running under this process, and recovery fails it as a lost worker once the process ends")
            }
            tracker.remove(runID: entry.runID)
        }
        logFirst(notMarked, thenCount: "more task run(s) not marked cancelled")
        if !tracker.pendingOutcomes.isEmpty { await writePending() }
        let unpersisted = tracker.pendingOutcomes
        // The report names every one.
        logFirst(
            unpersisted.map { "could not persist the outcome of task \($0.state.taskID ?? $0.state.runID) after \($0.attempts) attempt(s): \($0.error)" },
            thenCount: "more task outcome(s) not persisted (close()'s report lists every one)")
        tracker.close()?.cancel()
        await hooks.drain()
        return CloseReport(unpersisted: unpersisted.map { CloseReport.Unpersisted(taskID: $0.state.taskID ?? $0.state.runID, status: $0.state.status, error: $0.error) })
    }
}

extension Runner {
    /// The most unpersisted outcomes (and tasks not marked cancelled) `close()` logs one by one.
    static let loggedUnpersisted = 50

    /// Logs the first `loggedUnpersisted` errors one a line, then how many
    /// more: a full disk at shutdown with thousands of tasks is not thousands of lines.
    private func logFirst(_ errors: [String], thenCount more: String) {
        for line in errors.prefix(Self.loggedUnpersisted) { logger.error("\(line)") }
        if errors.count > Self.loggedUnpersisted { logger.error("... and \(errors.count - Self.loggedUnpersisted) \(more)") }
    }
}

/// What `Runner.close()` could not do.
public struct CloseReport: Sendable, Hashable {
    /// A task whose outcome is not in the store.
    public struct Unpersisted: Sendable, Hashable {
        /// The task.
        public var taskID: String
        /// The outcome that was not written.
        public var status: RunStatus
        /// The last error writing it.
        public var error: String
    }

    /// Outcomes that could not be written, even at close.
    public var unpersisted: [Unpersisted]

    /// Whether everything was persisted.
    public var isComplete: Bool { unpersisted.isEmpty }
}

extension Runner {
    /// Fails the tasks and runs of processes that have ended, and says how many.
    func recoverLost(_ operations: TaskOperations) async throws {
        let orphaned = try await operations.recoverOrphanedTasks()
        if orphaned > 0 { logger.notice("failed \(orphaned) background task(s) whose process ended (lost worker)") }
        let runs = try await operations.recoverOrphanedRuns()
        if runs > 0 { logger.notice("failed \(runs) run(s) whose process ended (lost worker)") }
    }
}
