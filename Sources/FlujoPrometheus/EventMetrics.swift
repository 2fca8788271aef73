import Flujo
import Synchronization
import W3CTraceContext

/// Metrics derived from hook events: run and step durations, step outcomes,
/// cost and tokens by step. Which events reach it (background ones or not) is
/// decided where it is registered (`HookBus.register(_:delivery:strict:background:)`).
///
/// The step name is the only free-text label. At most `maxStepLabels`
/// distinct names get a series of their own; later ones share `step="other"`,
/// so a pipeline that names steps from data cannot grow a scrape without bound.
public final class EventMetrics: HookSink {
    public let name = "prometheus"
    public var interests: Set<HookEventKind> { [.postRun, .postStep, .onStepFailure, .onPause] }

    /// The label of the steps past `maxStepLabels`.
    public static let otherStep = MetricLabels.otherStep

    private struct PerStep {
        let label: String
        let duration: Histogram
        let cost: CounterSeries
        let tokens: CounterSeries

        init(label: String) {
            self.label = label
            duration = Histogram(name: "flujo_step_duration_seconds", labels: [("step", label)])
            cost = CounterSeries(name: "flujo_step_cost_usd_total", labels: [("step", label)])
            tokens = CounterSeries(name: "flujo_step_tokens_total", labels: [("step", label)])
        }
    }

    private let runDurations = Histogram(name: "flujo_run_duration_seconds")
    /// Each step's series, where to find them by name, and their order by name
    /// (kept as names arrive, so a scrape sorts nothing).
    private struct Steps {
        var entries: [PerStep] = []
        var byName: [String: Int] = [:]
        var sorted: [Int] = []

        /// The entry of `label`, made when it is new and there is room for it (else "other").
        mutating func entry(_ label: String, limit: Int) -> Int {
            if let found = byName[label] { return found }
            if entries.count >= limit && label != EventMetrics.otherStep { return entry(EventMetrics.otherStep, limit: .max) }
            let index = entries.count
            entries.append(PerStep(label: label))
            byName[label] = index
            var low = 0
            var high = sorted.count
            while low < high {
                let middle = (low + high) / 2
                if entries[sorted[middle]].label < label { low = middle + 1 } else { high = middle }
            }
            sorted.insert(index, at: low)
            return index
        }
    }
    private let steps = Mutex(Steps())
    private let stepOutcomes = Mutex<[String: UInt64]>([:])
    private let maxStepLabels: Int

    /// Creates the sink; `maxStepLabels` is `[telemetry.prometheus] max_step_labels`.
    public init(maxStepLabels: Int = 200) {
        self.maxStepLabels = max(1, maxStepLabels)
    }

    public func handle(_ event: HookEvent) async throws {
        switch event.payload {
        case let .postRun(end):
            runDurations.observe(end.durationSeconds, exemplar: Self.exemplar(end.span, event))
        case let .postStep(end):
            record(end, status: "completed", event)
        case let .onStepFailure(end):
            record(end, status: "failed", event)
        case let .onPause(end):
            record(end, status: "paused", event)
        default:
            break
        }
    }

    private func record(_ end: HookEvent.StepEnd, status: String, _ event: HookEvent) {
        let entry = steps.withLock { steps in steps.entries[steps.entry(end.stepName, limit: maxStepLabels)] }
        entry.cost.add(end.usage.costUSD)
        entry.tokens.add(Double(max(0, end.usage.tokens)))
        entry.duration.observe(end.latencySeconds, exemplar: Self.exemplar(end.span, event))
        stepOutcomes.withLock { $0[status, default: 0] += 1 }
    }

    /// A sampled span's ids, for the exemplar of its observation.
    private static func exemplar(_ span: SpanPosition?, _ event: HookEvent) -> (traceID: TraceID, spanID: SpanID, unixSeconds: Double)? {
        guard let span, span.sampled else { return nil }
        return (span.traceID, span.spanID, Double(event.unixNano) / 1e9)
    }

    /// The families this sink maintains.
    func families() -> [MetricFamily] {
        var durations: [any SampleSource] = []
        var cost: [any SampleSource] = []
        var tokens: [any SampleSource] = []
        steps.withLock { steps in
            durations.reserveCapacity(steps.entries.count)
            cost.reserveCapacity(steps.entries.count)
            tokens.reserveCapacity(steps.entries.count)
            for index in steps.sorted {
                durations.append(steps.entries[index].duration)
                cost.append(steps.entries[index].cost)
                tokens.append(steps.entries[index].tokens)
            }
        }
        let outcomes = stepOutcomes.withLock { $0 }
        return [
            MetricFamily(name: "flujo_step_cost_usd_total", help: "Cost reported by steps, in US dollars, by step.", kind: .counter, sources: cost),
            MetricFamily(name: "flujo_step_tokens_total", help: "Tokens reported by steps, by step.", kind: .counter, sources: tokens),
            MetricFamily(name: "flujo_run_duration_seconds", help: "Duration of finished runs, in seconds.", kind: .histogram,
                         sources: [runDurations]),
            MetricFamily(name: "flujo_step_duration_seconds", help: "Duration of finished steps, in seconds, by step.", kind: .histogram, sources: durations),
            MetricFamily(name: "flujo_steps_total", help: "Finished steps, by outcome.", kind: .counter,
                         samples: ["completed", "failed", "paused"].map { .init(name: "flujo_steps_total", labels: [("status", $0)], value: Double(outcomes[$0] ?? 0)) }),
        ]
    }
}
