import Foundation

extension Runner {
    /// Starts maintenance: recovery of tasks whose process ended and one stale
    /// cleanup now, then a loop that records the heartbeat of this runner's
    /// running tasks and recovers orphaned tasks every
    /// `heartbeat_interval_seconds`, and runs the stale cleanup every
    /// `stale_check_interval_seconds` (0: only now). `close()` stops it. Does nothing when state tracking is off, when
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
                    let orphaned = try await operations.recoverOrphanedTasks()
                    if orphaned > 0 { runner.logger.notice("failed \(orphaned) background task(s) whose process ended (lost worker)") }
                    let count = try await operations.cleanupStaleTasks()
                    if count > 0 { runner.logger.notice("marked \(count) stale background task(s) failed") }
                } catch {
                    runner.logger.warning("recovery or stale cleanup failed: \(error)")
                }
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
                        let orphaned = try await operations.recoverOrphanedTasks()
                        if orphaned > 0 { runner.logger.notice("failed \(orphaned) background task(s) whose process ended (lost worker)") }
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
    /// cancels the rest and persists them `cancelled`, stops maintenance and drains queued sinks.
    public func close(timeout: Duration? = nil) async {
        let limit = timeout ?? .seconds(settings.backgroundTasks.shutdownTimeoutSeconds)
        let deadline = ContinuousClock.now + limit
        while !tracker.isEmpty && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(2))
        }
        let stragglers = tracker.entries
        for entry in stragglers { entry.task.cancel() }
        // Give cancelled tasks a moment to persist themselves; force the rest.
        let grace = ContinuousClock.now + .milliseconds(500)
        while !tracker.isEmpty && ContinuousClock.now < grace {
            try? await Task.sleep(for: .milliseconds(2))
        }
        for entry in tracker.entries {
            await executor.markCancelledAtShutdown(runID: entry.runID)
            tracker.remove(runID: entry.runID)
        }
        tracker.close()?.cancel()
        await hooks.drain()
    }
}
