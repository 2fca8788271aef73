import Synchronization

/// Builds spans from hook events and hands finished spans to processors.
///
/// One trace per foreground run: a root span `pipeline_run` and a child span
/// per step. A background execution gets its own `pipeline_run` span, a child
/// of its launch step's span in the parent's trace, with its step below it;
/// all of its spans, and the launch step's, carry `flujo.is_background = true`.
/// A resume starts a new trace whose root carries `flujo.task_id`.
/// Register it inline: it only updates a small table and never blocks.
public final class TraceRecorder: HookSink {
    public let name = "trace"
    private let destinations: [SpanDestination]

    private struct OpenRun {
        var traceID: [UInt8]
        var spanID: [UInt8]
        var parentSpanID: [UInt8]?
        var start: UInt64
        var attributes: [(key: String, value: SpanAttributeValue)]
        var isBackground: Bool
        var openStep: OpenStep?
    }

    private struct OpenStep {
        var spanID: [UInt8]
        var name: String
        var start: UInt64
        var attributes: [(key: String, value: SpanAttributeValue)]
        var isBackground: Bool
    }

    private struct State {
        var runs: [String: OpenRun] = [:]
        /// Launch step spans by task id, so a background execution can hang below its launch.
        var launches: [String: (traceID: [UInt8], spanID: [UInt8])] = [:]
    }

    private let state = Mutex(State())

    /// Creates a recorder feeding every span to each of `processors`.
    public convenience init(processors: [any SpanProcessor]) {
        self.init(destinations: processors.map { SpanDestination($0) })
    }

    /// Creates a recorder feeding each destination the spans its background policy admits.
    public init(destinations: [SpanDestination]) {
        self.destinations = destinations
    }

    public func handle(_ event: HookEvent) async throws {
        let finished = state.withLock { state in Self.apply(event, to: &state) }
        for span in finished {
            for destination in destinations where destination.background.admits(isBackground: span.isBackground) {
                destination.processor.onEnd(span)
            }
        }
    }

    /// Runs and launches still open (for tests: empty once every run has ended).
    public var openCounts: (runs: Int, launches: Int) {
        state.withLock { ($0.runs.count, $0.launches.count) }
    }

    private static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: count)
        repeat {
            for index in bytes.indices { bytes[index] = generator.next() }
        } while bytes.allSatisfy { $0 == 0 }
        return bytes
    }

    private static func apply(_ event: HookEvent, to state: inout State) -> [TraceSpan] {
        switch event.payload {
        case let .preRun(start):
            var traceID = randomBytes(16)
            var parent: [UInt8]?
            if event.isBackground, let taskID = event.taskID, let launch = state.launches.removeValue(forKey: taskID) {
                traceID = launch.traceID
                parent = launch.spanID
            } else if let caller = start.parent, caller.traceID.count == 16, caller.spanID.count == 8 {
                // The caller's trace: the run's root is a child of the caller's span.
                traceID = caller.traceID
                parent = caller.spanID
            }
            var attributes: [(key: String, value: SpanAttributeValue)] = [
                ("flujo.input", .string(start.inputSummary)),
                ("flujo.run_id", .string(event.runID)),
                ("flujo.pipeline.name", .string(event.pipelineName)),
                ("flujo.pipeline.version", .string(event.pipelineVersion)),
            ]
            if let budget = start.initialBudget {
                if let cost = budget.costUSD { attributes.append(("flujo.budget.initial_cost_usd", .double(cost))) }
                if let tokens = budget.tokens { attributes.append(("flujo.budget.initial_tokens", .int(Int64(tokens)))) }
            }
            if let parentRunID = event.parentRunID { attributes.append(("flujo.parent_run_id", .string(parentRunID))) }
            if let taskID = event.taskID { attributes.append(("flujo.task_id", .string(taskID))) }
            if event.isBackground { attributes.append(("flujo.is_background", .bool(true))) }
            state.runs[event.runID] = OpenRun(
                traceID: traceID, spanID: randomBytes(8), parentSpanID: parent, start: event.unixNano,
                attributes: attributes, isBackground: event.isBackground, openStep: nil)
            return []

        case let .preStep(start):
            guard var run = state.runs[event.runID] else { return [] }
            var attributes: [(key: String, value: SpanAttributeValue)] = [
                ("flujo.step.type", .string(start.mode.rawValue)),
                ("flujo.attempt_number", .int(Int64(start.attemptNumber))),
                ("flujo.run_id", .string(event.runID)),
            ]
            if let quota = start.quotaBefore {
                if let cost = quota.costUSD { attributes.append(("flujo.budget.quota_before_usd", .double(cost))) }
                if let tokens = quota.tokens { attributes.append(("flujo.budget.quota_before_tokens", .int(Int64(tokens)))) }
            }
            if event.isBackground { attributes.append(("flujo.is_background", .bool(true))) }
            if let taskID = event.taskID { attributes.append(("flujo.task_id", .string(taskID))) }
            run.openStep = OpenStep(spanID: randomBytes(8), name: start.stepName, start: event.unixNano, attributes: attributes, isBackground: event.isBackground)
            state.runs[event.runID] = run
            return []

        case let .taskLaunched(launch):
            guard var run = state.runs[event.runID], var step = run.openStep else { return [] }
            step.attributes.append(("flujo.task_id", .string(launch.taskID)))
            run.openStep = step
            state.runs[event.runID] = run
            state.launches[launch.taskID] = (run.traceID, step.spanID)
            return []

        case let .postStep(end), let .onStepFailure(end), let .onPause(end):
            guard var run = state.runs[event.runID], var step = run.openStep else { return [] }
            run.openStep = nil
            state.runs[event.runID] = run
            step.attributes += [
                ("success", .bool(end.success)),
                ("latency_s", .double(end.latencySeconds)),
                ("flujo.budget.actual_cost_usd", .double(end.usage.costUSD)),
                ("flujo.budget.actual_tokens", .int(Int64(end.usage.tokens))),
            ]
            var status = TraceSpan.Status.ok
            var message: String?
            var events = end.retries.map { retry in
                TraceSpan.Event(unixNano: retry.unixNano, name: "flujo.retry", attributes: [
                    ("flujo.attempt_number", .int(Int64(retry.attempt))),
                    ("flujo.error.category", .string(retry.category.rawValue)),
                    ("message", .string(retry.message)),
                ])
            }
            if case .onPause = event.payload {
                step.attributes.append(("flujo.status", .string("paused")))
                events.append(TraceSpan.Event(unixNano: event.unixNano, name: "flujo.paused", attributes: [("message", .string(end.feedback ?? ""))]))
                status = .unset
            } else if !end.success {
                status = .error
                message = end.feedback
                step.attributes.append(("feedback", .string(end.feedback ?? "")))
            } else if let feedback = end.feedback {
                step.attributes.append(("feedback", .string(feedback)))
            }
            if let category = end.errorCategory { step.attributes.append(("flujo.error.category", .string(category.rawValue))) }
            return [TraceSpan(
                traceID: run.traceID, spanID: step.spanID, parentSpanID: run.spanID, runID: event.runID, name: step.name,
                startUnixNano: step.start, endUnixNano: max(event.unixNano, step.start), attributes: step.attributes,
                events: events, status: status, statusMessage: message, isBackground: step.isBackground)]

        case let .postRun(end):
            guard var run = state.runs.removeValue(forKey: event.runID) else { return [] }
            run.attributes += [
                ("flujo.status", .string(end.status.rawValue)),
                ("flujo.budget.actual_cost_usd", .double(end.usage.costUSD)),
                ("flujo.budget.actual_tokens", .int(Int64(end.usage.tokens))),
            ]
            if let category = end.errorCategory { run.attributes.append(("flujo.error.category", .string(category.rawValue))) }
            var events: [TraceSpan.Event] = []
            if end.status == .paused {
                events.append(TraceSpan.Event(unixNano: event.unixNano, name: "flujo.paused", attributes: [("message", .string(end.errorMessage ?? ""))]))
            }
            let failed = end.status == .failed || end.status == .cancelled
            return [TraceSpan(
                traceID: run.traceID, spanID: run.spanID, parentSpanID: run.parentSpanID, runID: event.runID, name: "pipeline_run",
                startUnixNano: run.start, endUnixNano: max(event.unixNano, run.start), attributes: run.attributes, events: events,
                status: failed ? .error : (end.status == .completed ? .ok : .unset), statusMessage: failed ? end.errorMessage : nil,
                isBackground: run.isBackground)]

        case let .taskFinished(end):
            // A launch whose execution never started (refused for lack of budget) leaves nothing behind.
            state.launches.removeValue(forKey: end.taskID)
            return []
        }
    }
}

/// A span processor and the background policy of what it receives.
public struct SpanDestination: Sendable {
    /// The receiver of finished spans.
    public var processor: any SpanProcessor
    /// Whether it receives the spans of background executions.
    public var background: BackgroundPolicy

    /// Creates a destination; by default it receives every span.
    public init(_ processor: any SpanProcessor, background: BackgroundPolicy = .include) {
        self.processor = processor
        self.background = background
    }
}

/// Persists finished spans to the state store in batches, off the emitting task.
public final class SpanPersister: SpanProcessor {
    private final class Pending: Sendable {
        let queue = Mutex<[SpanRecord]>([])

        func take() -> [SpanRecord] {
            queue.withLock { queue in
                defer { queue.removeAll(keepingCapacity: true) }
                return queue
            }
        }
    }

    private let pending = Pending()
    private let dropped = Atomic<Int>(0)
    private let capacity: Int
    private let maxSpansPerRun: Int
    /// Spans kept so far per open run, when `maxSpansPerRun` limits them.
    private let perRun = Mutex<[String: Int]>([:])
    private let signal: AsyncStream<Void>.Continuation
    private let worker: Task<Void, Never>

    /// Creates a persister writing to `store`; at most `capacity` spans wait
    /// (more are dropped and counted in `droppedCount`), and at most
    /// `maxSpansPerRun` spans of one run are kept (0: no limit); the run's root
    /// span is always kept, so its tree has its root.
    public init(store: any StateStore, capacity: Int = 10_000, maxSpansPerRun: Int = 0) {
        self.capacity = capacity
        self.maxSpansPerRun = maxSpansPerRun
        let (signals, signal) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        self.signal = signal
        let pending = self.pending
        worker = Task {
            for await _ in signals {
                let batch = pending.take()
                if !batch.isEmpty { try? await store.saveSpans(batch) }
            }
            let rest = pending.take()
            if !rest.isEmpty { try? await store.saveSpans(rest) }
        }
    }

    public func onEnd(_ span: TraceSpan) {
        if maxSpansPerRun > 0 {
            // A run's root ends last: it is kept whatever the count, and ends the count.
            let isRoot = span.name == "pipeline_run"
            let over = perRun.withLock { counts -> Bool in
                if isRoot {
                    counts[span.runID] = nil
                    return false
                }
                let count = counts[span.runID, default: 0] + 1
                counts[span.runID] = count
                return count > maxSpansPerRun - 1
            }
            if over {
                dropped.add(1, ordering: .relaxed)
                return
            }
        }
        let accepted = pending.queue.withLock { queue -> Bool in
            guard queue.count < capacity else { return false }
            queue.append(span.record)
            return true
        }
        if accepted { signal.yield() } else { dropped.add(1, ordering: .relaxed) }
    }

    /// Spans dropped because the queue was full.
    public var droppedCount: Int { dropped.load(ordering: .relaxed) }

    /// Writes what is queued and stops.
    public func close() async {
        signal.finish()
        await worker.value
    }
}
