import Flujo

/// Gathers every Flujo metric family for one scrape.
///
/// State-derived gauges (runs and background tasks by status, totals) come
/// from the store's maintained counters, so a scrape costs the same at any
/// table size, and are always exported whatever the background policy.
public final class MetricsCollector: Sendable {
    private let store: (any StateStore)?
    private let events: EventMetrics?
    private let tasks: TaskMetrics?
    private let hooks: HookBus?
    private let counterSources: [any CounterSource]

    /// Creates a collector.
    /// - Parameters:
    ///   - store: where state gauges come from; nil serves the other families only.
    ///   - events: event-derived metrics, when registered on the bus.
    ///   - tasks: task lifecycle counters, when registered on the bus.
    ///   - hooks: the bus whose sink errors and drops are exported.
    ///   - counterSources: other components' counters (the OTLP exporter's).
    public init(
        store: (any StateStore)?, events: EventMetrics? = nil, tasks: TaskMetrics? = nil, hooks: HookBus? = nil,
        counterSources: [any CounterSource] = []
    ) {
        self.store = store
        self.events = events
        self.tasks = tasks
        self.hooks = hooks
        self.counterSources = counterSources
    }

    /// Every family, for rendering.
    public func collect() async throws -> [MetricFamily] {
        var families: [MetricFamily] = []
        if let store {
            families += Self.stateFamilies(try await store.statusCounters(), now: .now)
        }
        if let events { families += events.families() }
        if let tasks { families += tasks.families() }
        if let hooks {
            let errors = hooks.errorCounts
            families.append(MetricFamily(
                name: "flujo_hook_errors_total", help: "Errors thrown by hook sinks, by sink and event.", kind: .counter,
                samples: errors.keys.sorted { ($0.sink, $0.event.rawValue) < ($1.sink, $1.event.rawValue) }.map {
                    .init(name: "flujo_hook_errors_total", labels: [("sink", $0.sink), ("event", $0.event.rawValue)], value: Double(errors[$0]!))
                }))
            let drops = hooks.droppedCounts
            families.append(MetricFamily(
                name: "flujo_hook_events_dropped_total", help: "Events dropped from full sink queues, by sink.", kind: .counter,
                samples: drops.keys.sorted().map { .init(name: "flujo_hook_events_dropped_total", labels: [("sink", $0)], value: Double(drops[$0]!)) }))
        }
        families += Self.families(of: counterSources.flatMap { $0.counterSamples() } + (hooks?.attachedCounterSamples ?? []))
        return families
    }

    /// Families of other components' samples; samples of one name and labels
    /// from several sources (two engines on one bus) are added up.
    static func families(of samples: [CounterSample]) -> [MetricFamily] {
        var byName: [String: (help: String, kind: CounterSample.Kind, values: [[String: String]: Double])] = [:]
        for sample in samples {
            byName[sample.name, default: (sample.help, sample.kind, [:])].values[sample.labels, default: 0] += sample.value
        }
        return byName.keys.sorted().map { name in
            let family = byName[name]!
            let samples = family.values.keys.sorted { $0.sorted(by: <).description < $1.sorted(by: <).description }.map { labels in
                MetricFamily.Sample(name: name, labels: labels.keys.sorted().map { ($0, labels[$0]!) }, value: family.values[labels]!)
            }
            return MetricFamily(name: name, help: family.help, kind: family.kind == .gauge ? .gauge : .counter, samples: samples)
        }
    }

    /// The gauges read from the store's maintained counters.
    static func stateFamilies(_ counters: StatusCounters, now: Timestamp) -> [MetricFamily] {
        func age(_ status: RunStatus) -> Double {
            guard let oldest = counters.oldestTaskUpdate[status] else { return 0 }
            return max(0, (Double(now.millisecondsSince1970) - Double(oldest.millisecondsSince1970)) / 1000)
        }
        return [
            MetricFamily(name: "flujo_oldest_failed_task_age_seconds", help: "Age of the oldest failed background task (since its last update), 0 when none.", kind: .gauge,
                         samples: [.init(name: "flujo_oldest_failed_task_age_seconds", value: age(.failed))]),
            MetricFamily(name: "flujo_oldest_paused_task_age_seconds", help: "Age of the oldest paused background task (since its last update), 0 when none.", kind: .gauge,
                         samples: [.init(name: "flujo_oldest_paused_task_age_seconds", value: age(.paused))]),
            MetricFamily(name: "flujo_oldest_running_task_heartbeat_age_seconds", help: "Age of the oldest heartbeat of a running background task, 0 when none.", kind: .gauge,
                         samples: [.init(name: "flujo_oldest_running_task_heartbeat_age_seconds", value: age(.running))]),
            MetricFamily(name: "flujo_runs_by_status", help: "Foreground runs in the state store, by status.", kind: .gauge,
                         samples: RunStatus.allCases.map { .init(name: "flujo_runs_by_status", labels: [("status", $0.rawValue)], value: Double(counters.runs[$0] ?? 0)) }),
            MetricFamily(name: "flujo_background_tasks_by_status", help: "Background tasks in the state store, by status.", kind: .gauge,
                         samples: RunStatus.allCases.map { .init(name: "flujo_background_tasks_by_status", labels: [("status", $0.rawValue)], value: Double(counters.backgroundTasks[$0] ?? 0)) }),
            MetricFamily(name: "flujo_runs_total", help: "Runs ever persisted, background tasks included.", kind: .counter,
                         samples: [.init(name: "flujo_runs_total", value: Double(counters.totalRuns + counters.prunedRuns))]),
            MetricFamily(name: "flujo_average_run_duration_seconds", help: "Mean duration of runs in the state store that recorded one, in seconds.", kind: .gauge,
                         samples: [.init(name: "flujo_average_run_duration_seconds", value: counters.durationCount > 0 ? counters.durationSumMs / Double(counters.durationCount) / 1000 : 0)]),
        ]
    }

    /// The text exposition of every family.
    public func render() async throws -> String {
        PrometheusText.render(try await collect())
    }

    /// The exposition a scrape asked for with its `Accept` header (OpenMetrics
    /// with exemplars, or Prometheus text, the default) and its Content-Type:
    /// for serving `/metrics` from an application's own HTTP server.
    public func exposition(accept: String?) async throws -> (contentType: String, body: String) {
        let families = try await collect()
        if OpenMetricsText.preferred(accept: accept) { return (OpenMetricsText.contentType, OpenMetricsText.render(families)) }
        return (PrometheusText.contentType, PrometheusText.render(families))
    }
}
