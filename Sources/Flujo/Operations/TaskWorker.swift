import Logging

/// Runs due tasks: failed tasks whose next attempt (`TaskLifecycle.nextAttempt`,
/// kept in the store) has come, `concurrency` at once, each claimed directly,
/// so several workers in several processes share the work and no task runs
/// twice at once. Cancel the task running `run` to stop: no new task is
/// claimed, and the ones running finish.
public struct TaskWorker: Sendable {
    /// What a worker did.
    public struct Report: Sendable, Hashable {
        /// Tasks it ran.
        public var ran = 0
        /// Of those, the ones that completed.
        public var completed = 0
        /// Of those, the ones that failed (again).
        public var failed = 0
    }

    /// The operations it runs tasks with (their store, steps and bus).
    public let operations: TaskOperations
    /// Tasks run at once.
    public let concurrency: Int
    /// How long it waits when no task is due.
    public let pollInterval: Duration
    let logger: Logger
    /// Failed claims or runs (a database down, a full disk), shared by the
    /// worker's loops: logged as a streak, not one line per loop and poll.
    let failures = LogStreak()

    /// Creates a worker.
    public init(operations: TaskOperations, concurrency: Int = 1, pollInterval: Duration = .seconds(1), logger: Logger = Logger(label: "flujo.worker")) {
        self.operations = operations
        self.concurrency = min(max(1, concurrency), 1024)
        self.pollInterval = pollInterval
        self.logger = logger
    }

    /// Runs due tasks until cancelled; with `once`, until no task is due.
    /// `onOutcome` is called after each task.
    public func run(once: Bool = false, onOutcome: (@Sendable (TaskOutcome) -> Void)? = nil) async -> Report {
        await withTaskGroup(of: Report.self) { group in
            for _ in 0..<concurrency {
                group.addTask { await loop(once: once, onOutcome: onOutcome) }
            }
            var total = Report()
            for await report in group {
                total.ran += report.ran
                total.completed += report.completed
                total.failed += report.failed
            }
            return total
        }
    }

    private func loop(once: Bool, onOutcome: (@Sendable (TaskOutcome) -> Void)?) async -> Report {
        var report = Report()
        while !Task.isCancelled {
            do {
                let next = try await operations.resumeNextDue()
                if let ended = failures.success() {
                    logger.notice("worker runs tasks again, after \(ended.failures) failed attempt(s) (\(ended.unreported) of them not logged)")
                }
                if let outcome = next {
                    report.ran += 1
                    if outcome.status == .completed { report.completed += 1 } else if outcome.status == .failed { report.failed += 1 }
                    onOutcome?(outcome)
                    continue
                }
                if once { break }
            } catch {
                // A stop cancels the call under way: the worker ends, it did not fail.
                if Task.isCancelled { break }
                if let logged = failures.failure() {
                    let tail = logged.tail(
                        first: "; while this goes on, at most one line every \(failures.interval), and one when it runs tasks again",
                        unreported: "failed attempt(s)")
                    logger.warning("worker could not run a task: \(error)\(tail)")
                }
                if once { break }
            }
            // Polls every `pollInterval`, or sooner when the store says work became due.
            await operations.store.waitForDueWork(upTo: pollInterval)
        }
        return report
    }
}
