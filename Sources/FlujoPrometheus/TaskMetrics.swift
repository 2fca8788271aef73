import Flujo
import Synchronization

/// Counters of the background task lifecycle, from hook events: tasks
/// started, completed, failed (each attempt, and for good), retried, resumed,
/// recovered and cancelled, and a histogram of attempts per task.
///
/// Register it with `background: .include` (as `Telemetry` does): a task's
/// events are background events, and these counters count every task whatever
/// the policy of the duration histograms. Labels are bounded: an error
/// category, never an id.
public final class TaskMetrics: HookSink {
    public let name = "prometheus-tasks"
    public var interests: Set<HookEventKind> { [.preRun, .postRun, .taskFinished] }

    private struct State {
        var started: UInt64 = 0
        var completed: UInt64 = 0
        var cancelled: UInt64 = 0
        var retried: UInt64 = 0
        var resumed: UInt64 = 0
        var recovered: UInt64 = 0
        var failedAttempts: [String: UInt64] = [:]
        var failedForGood: [String: UInt64] = [:]
    }

    private let state = Mutex(State())
    private let attemptsPerTask = Histogram(name: "flujo_task_attempts", bounds: [1, 2, 3, 4, 5, 10, 20])
    private let endToEnd = Histogram(name: "flujo_task_end_to_end_seconds", bounds: [0.01, 0.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600])

    /// Creates the sink.
    public init() {}

    public func handle(_ event: HookEvent) async throws {
        guard let activity = TaskActivity(event) else { return }
        var ended: (attempts: Int, seconds: Double?)?
        state.withLock { state in
            switch activity {
            case .started: state.started += 1
            case .resumed: state.resumed += 1
            case .retried: state.retried += 1
            case .cancelled: state.cancelled += 1
            case let .completed(attempts, seconds):
                state.completed += 1
                ended = (attempts, seconds)
            case let .failed(category, final, attempts, seconds):
                state.failedAttempts[category.rawValue, default: 0] += 1
                if final {
                    state.failedForGood[category.rawValue, default: 0] += 1
                    ended = (attempts, seconds)
                }
            case let .recovered(category):
                // The attempt recovery ended is a failed attempt of its own category.
                state.recovered += 1
                state.failedAttempts[category.rawValue, default: 0] += 1
            }
        }
        if let ended {
            attemptsPerTask.observe(Double(ended.attempts))
            if let seconds = ended.seconds { endToEnd.observe(seconds) }
        }
    }

    /// The families this sink maintains.
    func families() -> [MetricFamily] {
        let now = state.withLock { $0 }
        func counter(_ name: String, _ help: String, _ value: UInt64) -> MetricFamily {
            MetricFamily(name: name, help: help, kind: .counter, samples: [.init(name: name, value: Double(value))])
        }
        func byCategory(_ name: String, _ help: String, _ values: [String: UInt64]) -> MetricFamily {
            MetricFamily(name: name, help: help, kind: .counter, samples: values.keys.sorted().map {
                .init(name: name, labels: [("category", $0)], value: Double(values[$0]!))
            })
        }
        return [
            counter("flujo_tasks_started_total", "Background tasks whose first execution started.", now.started),
            counter("flujo_tasks_completed_total", "Task executions that completed (a task completes once).", now.completed),
            byCategory("flujo_task_attempts_failed_total", "Task executions that failed, by error category, the final failure included.", now.failedAttempts),
            byCategory("flujo_tasks_failed_for_good_total", "Tasks whose failure is final (no next attempt scheduled), by error category.", now.failedForGood),
            counter("flujo_tasks_retried_total", "Task executions started as a retry (tasks retry, or a worker after the backoff or a recovery).", now.retried),
            counter("flujo_tasks_resumed_total", "Task executions started by a resume.", now.resumed),
            counter("flujo_tasks_recovered_total", "Running tasks found with their process gone and failed as lost_worker by recovery.", now.recovered),
            counter("flujo_tasks_cancelled_total", "Task executions cancelled (at shutdown, or by a signal).", now.cancelled),
            MetricFamily(name: "flujo_task_attempts", help: "Executions a task took until it completed or failed for good.", kind: .histogram,
                         sources: [attemptsPerTask]),
            MetricFamily(name: "flujo_task_end_to_end_seconds", help: "Time from a task's launch to its completion or final failure, across every attempt, in seconds.", kind: .histogram,
                         sources: [endToEnd]),
        ]
    }
}
