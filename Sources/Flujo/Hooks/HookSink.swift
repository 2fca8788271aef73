/// Receives hook events. The whole extension point: implement `handle`.
///
/// Declare `interests` to receive only some kinds. Errors thrown by `handle`
/// are logged and counted and never fail the run, unless the sink is
/// registered as strict; throwing `PipelineAbortSignal` stops the run gracefully.
public protocol HookSink: Sendable {
    /// A short name used in logs and in `flujo_hook_errors_total{sink=...}`.
    var name: String { get }
    /// The event kinds the sink wants; all by default.
    var interests: Set<HookEventKind> { get }
    /// Handles one event. Inline sinks run on the emitting task: keep them fast.
    func handle(_ event: HookEvent) async throws
}

extension HookSink {
    public var interests: Set<HookEventKind> { Set(HookEventKind.allCases) }
}

/// How a sink receives events.
public enum HookDelivery: Sendable, Hashable {
    /// Called on the emitting task, in order, before the runner goes on.
    case inline
    /// Called from the sink's own task through a bounded queue; when the queue
    /// is full the newest event is dropped and counted.
    case queued(capacity: Int)
}

/// Whether an exporter includes background executions.
public enum BackgroundPolicy: String, Sendable, Hashable, Codable, CaseIterable {
    /// Leave background events out (the default, to reduce noise).
    case skip
    /// Include them, tagged `flujo.is_background = true`.
    case include

    /// Whether an event or span of a background execution (or not) passes.
    /// The one place the policy is decided: the hook bus asks it for each
    /// sink, the span pipeline for each span processor.
    @inline(__always)
    public func admits(isBackground: Bool) -> Bool {
        self == .include || !isBackground
    }
}
