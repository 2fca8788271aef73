/// Spans built from the events of one hook bus: kept in the state store (for
/// `flujo trace`, background spans included and tagged) and handed to exporters.
///
/// Wiring spans is an explicit choice: creating a runner never registers
/// anything on its bus. One recorder serves every destination, so stored and
/// exported spans share their ids.
///
/// ```swift
/// let spans = SpanPipeline(hooks: hooks, store: store, exporters: [SpanDestination(exporter, background: .skip)])
/// // ... run pipelines ...
/// await runner.close()
/// await spans.close()
/// ```
public final class SpanPipeline: Sendable {
    /// The sink that builds spans; registered inline on the bus.
    public let recorder: TraceRecorder
    /// What keeps spans in the store, when a store was given.
    public let persister: SpanPersister?

    /// Registers a recorder on `hooks` feeding `store` (every span) and `exporters`
    /// (each as its background policy admits).
    /// `maxSpansPerRun` caps the spans of one run kept in the store (0: no limit; exporters get every span).
    public init(hooks: HookBus, store: (any StateStore)?, exporters: [SpanDestination] = [], maxSpansPerRun: Int = 0) {
        persister = store.map { SpanPersister(store: $0, maxSpansPerRun: maxSpansPerRun) }
        let destinations = (persister.map { [SpanDestination($0)] } ?? []) + exporters
        recorder = TraceRecorder(destinations: destinations)
        hooks.register(recorder)
    }

    /// Writes the spans still queued for the store and stops persisting.
    public func close() async {
        await persister?.close()
    }
}
