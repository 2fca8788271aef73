import CoreMetrics
import Flujo
import Synchronization

/// Sends Flujo's event metrics to the swift-metrics backend the application
/// bootstrapped (`MetricsSystem.bootstrap`: swift-prometheus, swift-otel's
/// metrics, StatsD...), under the same names and labels as Flujo's own
/// Prometheus families, so one dashboard serves either path.
///
/// Register it on the runner's bus; with `background: .include` it counts
/// every task (a task's events are background events):
///
/// ```swift
/// hooks.register(SwiftMetricsSink(), background: .include)
/// ```
///
/// Counters: `flujo_steps_total{status}`, `flujo_step_cost_usd_total{step}`,
/// `flujo_step_tokens_total{step}` and the task lifecycle counters
/// (`flujo_tasks_started_total`, `flujo_tasks_completed_total`,
/// `flujo_task_attempts_failed_total{category}`,
/// `flujo_tasks_failed_for_good_total{category}`, `flujo_tasks_retried_total`,
/// `flujo_tasks_resumed_total`, `flujo_tasks_recovered_total`,
/// `flujo_tasks_cancelled_total`). Timers: `flujo_run_duration_seconds`,
/// `flujo_step_duration_seconds{step}`, `flujo_task_end_to_end_seconds`.
/// Recorder: `flujo_task_attempts`. The step label is bounded by
/// `maxStepLabels`, as in `EventMetrics`.
public final class SwiftMetricsSink: HookSink {
    public let name = "swift-metrics"
    public var interests: Set<HookEventKind> { [.preRun, .postRun, .postStep, .onStepFailure, .onPause, .taskFinished] }

    private struct Key: Hashable {
        let kind: ObjectIdentifier
        let label: String
        let dimensions: [String]
    }

    private let factory: any MetricsFactory
    private let maxStepLabels: Int
    private let steps = Mutex<Set<String>>([])
    /// Every metric made so far, by kind, label and dimensions: each is made once.
    private let made = Mutex<[Key: AnyObject]>([:])

    /// Creates the sink on `factory` (the bootstrapped `MetricsSystem.factory` by default).
    public init(factory: any MetricsFactory = MetricsSystem.factory, maxStepLabels: Int = 200) {
        self.factory = factory
        self.maxStepLabels = max(1, maxStepLabels)
    }

    public func handle(_ event: HookEvent) async throws {
        switch event.payload {
        case let .postRun(end) where event.taskID == nil:
            timer("flujo_run_duration_seconds").recordNanoseconds(Self.nanoseconds(end.durationSeconds))
        case let .postStep(end): step(end, status: "completed")
        case let .onStepFailure(end): step(end, status: "failed")
        case let .onPause(end): step(end, status: "paused")
        default: break
        }
        guard let activity = TaskActivity(event) else { return }
        switch activity {
        case .started: counter("flujo_tasks_started_total").increment()
        case .resumed: counter("flujo_tasks_resumed_total").increment()
        case .retried: counter("flujo_tasks_retried_total").increment()
        case .cancelled: counter("flujo_tasks_cancelled_total").increment()
        case let .completed(attempts, seconds):
            counter("flujo_tasks_completed_total").increment()
            ended(attempts: attempts, seconds: seconds)
        case let .failed(category, final, attempts, seconds):
            counter("flujo_task_attempts_failed_total", [("category", category.rawValue)]).increment()
            if final {
                counter("flujo_tasks_failed_for_good_total", [("category", category.rawValue)]).increment()
                ended(attempts: attempts, seconds: seconds)
            }
        case let .recovered(category):
            counter("flujo_tasks_recovered_total").increment()
            counter("flujo_task_attempts_failed_total", [("category", category.rawValue)]).increment()
        }
    }

    private func ended(attempts: Int, seconds: Double?) {
        recorder("flujo_task_attempts").record(attempts)
        if let seconds { timer("flujo_task_end_to_end_seconds").recordNanoseconds(Self.nanoseconds(seconds)) }
    }

    private func step(_ end: HookEvent.StepEnd, status: String) {
        let label = steps.withLock { names -> String in
            if names.contains(end.stepName) { return end.stepName }
            guard names.count < maxStepLabels else { return MetricLabels.otherStep }
            names.insert(end.stepName)
            return end.stepName
        }
        timer("flujo_step_duration_seconds", [("step", label)]).recordNanoseconds(Self.nanoseconds(end.latencySeconds))
        counter("flujo_steps_total", [("status", status)]).increment()
        if end.usage.costUSD > 0 { floatingCounter("flujo_step_cost_usd_total", [("step", label)]).increment(by: end.usage.costUSD) }
        if end.usage.tokens > 0 { counter("flujo_step_tokens_total", [("step", label)]).increment(by: end.usage.tokens) }
    }

    private static func nanoseconds(_ seconds: Double) -> Int64 {
        guard seconds.isFinite, seconds > 0 else { return 0 }
        return seconds >= 9e9 ? Int64.max : Int64(seconds * 1e9)
    }

    /// The metric of this kind, label and dimensions, made on first use.
    private func metric<Metric: AnyObject>(
        _ label: String, _ dimensions: [(String, String)], make: (String, [(String, String)], any MetricsFactory) -> Metric
    ) -> Metric {
        made.withLock { made in
            let key = Key(kind: ObjectIdentifier(Metric.self), label: label, dimensions: dimensions.flatMap { [$0.0, $0.1] })
            if let existing = made[key] as? Metric { return existing }
            let created = make(label, dimensions, factory)
            made[key] = created
            return created
        }
    }

    private func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Counter {
        metric(label, dimensions) { Counter(label: $0, dimensions: $1, factory: $2) }
    }

    private func floatingCounter(_ label: String, _ dimensions: [(String, String)]) -> FloatingPointCounter {
        metric(label, dimensions) { FloatingPointCounter(label: $0, dimensions: $1, factory: $2) }
    }

    private func timer(_ label: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Timer {
        metric(label, dimensions) { CoreMetrics.Timer(label: $0, dimensions: $1, factory: $2) }
    }

    private func recorder(_ label: String) -> Recorder {
        metric(label, []) { Recorder(label: $0, dimensions: $1, aggregate: true, factory: $2) }
    }
}
