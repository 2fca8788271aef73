import Flujo
import Synchronization

/// Metrics derived from hook events: run and step durations, step outcomes.
/// Which events reach it (background ones or not) is decided where it is
/// registered (`HookBus.register(_:delivery:strict:background:)`).
public final class EventMetrics: HookSink {
    public let name = "prometheus"
    public var interests: Set<HookEventKind> { [.postRun, .postStep, .onStepFailure, .onPause] }

    private let runDurations = Histogram()
    private let stepDurations = Mutex<[String: Histogram]>([:])
    private let stepOutcomes = Mutex<[String: UInt64]>([:])

    /// Creates the sink.
    public init() {}

    public func handle(_ event: HookEvent) async throws {
        switch event.payload {
        case let .postRun(end):
            runDurations.observe(end.durationSeconds)
        case let .postStep(end):
            record(end, status: "completed")
        case let .onStepFailure(end):
            record(end, status: "failed")
        case let .onPause(end):
            record(end, status: "paused")
        default:
            break
        }
    }

    private func record(_ end: HookEvent.StepEnd, status: String) {
        let histogram = stepDurations.withLock { histograms in
            if let existing = histograms[end.stepName] { return existing }
            let created = Histogram()
            histograms[end.stepName] = created
            return created
        }
        histogram.observe(end.latencySeconds)
        stepOutcomes.withLock { $0[status, default: 0] += 1 }
    }

    /// The families this sink maintains.
    func families() -> [MetricFamily] {
        let steps = stepDurations.withLock { $0 }
        var stepSamples: [MetricFamily.Sample] = []
        for name in steps.keys.sorted() {
            stepSamples += steps[name]!.samples(name: "flujo_step_duration_seconds", labels: [("step", name)])
        }
        let outcomes = stepOutcomes.withLock { $0 }
        return [
            MetricFamily(name: "flujo_run_duration_seconds", help: "Duration of finished runs, in seconds.", kind: .histogram,
                         samples: runDurations.samples(name: "flujo_run_duration_seconds", labels: [])),
            MetricFamily(name: "flujo_step_duration_seconds", help: "Duration of finished steps, in seconds, by step.", kind: .histogram, samples: stepSamples),
            MetricFamily(name: "flujo_steps_total", help: "Finished steps, by outcome.", kind: .counter,
                         samples: ["completed", "failed", "paused"].map { .init(name: "flujo_steps_total", labels: [("status", $0)], value: Double(outcomes[$0] ?? 0)) }),
        ]
    }
}
