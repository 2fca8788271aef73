import Logging
import Synchronization

/// Builds spans from hook events and hands finished spans to processors.
///
/// Every span's place in its trace comes from the events (`RunStart.span`,
/// `StepStart.span`), decided by the engine before the span starts: a run's
/// root `pipeline_run` (a child of the caller's span when the run was given
/// one), a child span per step. A background execution's `pipeline_run` is a
/// child of its launch step's span; so is every later attempt of the task (a
/// resume, retry or recovery, in any process), linked to the attempt before
/// it (`flujo.link.kind`) and numbered (`flujo.attempt_number`). A failure
/// whose next attempt is already scheduled is not the final one: its spans
/// keep status unset and carry the error as an `exception` event; only the
/// final failure is status error. When recovery reports an attempt whose
/// process died (`TaskEnd.lostAttempt`), its `pipeline_run` span is ended then,
/// with an error naming the lost worker. Spans of a trace that is not sampled
/// are dropped. Register it inline: it only updates a small table and never blocks.
public final class TraceRecorder: HookSink {
    public let name = "trace"
    private let destinations: [SpanDestination]

    private struct OpenRun {
        var position: SpanPosition
        var start: UInt64
        var attributes: [(key: String, value: SpanAttributeValue)]
        var links: [TraceSpan.Link]
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

    private let runs = Mutex<[String: OpenRun]>([:])

    /// Creates a recorder feeding every span to each of `processors`.
    public convenience init(processors: [any SpanProcessor]) {
        self.init(destinations: processors.map { SpanDestination($0) })
    }

    /// Creates a recorder feeding each destination the spans its background policy admits.
    public init(destinations: [SpanDestination]) {
        self.destinations = destinations
    }

    public func handle(_ event: HookEvent) async throws {
        let finished = runs.withLock { runs in Self.apply(event, to: &runs) }
        for span in finished {
            for destination in destinations where destination.background.admits(isBackground: span.isBackground) {
                destination.processor.onEnd(span)
            }
        }
    }

    /// Runs still open (for tests: zero once every run has ended).
    public var openRunCount: Int {
        runs.withLock { $0.count }
    }

    /// The status, message and events of a span that ends failed, or not.
    private static func ending(
        failed: Bool, retryScheduled: Bool, message: String?, category: ErrorCategory?, at unixNano: UInt64
    ) -> (status: TraceSpan.Status, message: String?, event: TraceSpan.Event?) {
        guard failed else { return (.ok, nil, nil) }
        guard retryScheduled else { return (.error, message, nil) }
        // Not the final failure: the error is an event, the status stays unset.
        var attributes: [(key: String, value: SpanAttributeValue)] = [("exception.message", .string(message ?? ""))]
        if let category { attributes.append(("flujo.error.category", .string(category.rawValue))) }
        attributes.append(("flujo.retry_scheduled", .bool(true)))
        return (.unset, nil, TraceSpan.Event(unixNano: unixNano, name: "exception", attributes: attributes))
    }

    private static func apply(_ event: HookEvent, to runs: inout [String: OpenRun]) -> [TraceSpan] {
        switch event.payload {
        case let .preRun(start):
            let position = start.span ?? .root()
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
            if let taskID = event.taskID {
                attributes.append(("flujo.task_id", .string(taskID)))
                attributes.append(("flujo.attempt_number", .int(Int64(start.attempt))))
            }
            if event.isBackground { attributes.append(("flujo.is_background", .bool(true))) }
            var links: [TraceSpan.Link] = []
            if let link = start.link {
                attributes.append(("flujo.link.kind", .string(link.kind.rawValue)))
                attributes.append(("flujo.link.span_id", .string(link.previous.spanID.description)))
                links.append(TraceSpan.Link(traceID: link.previous.traceIDBytes, spanID: link.previous.spanIDBytes, attributes: [
                    ("flujo.link.kind", .string(link.kind.rawValue)),
                    ("flujo.attempt_number", .int(Int64(link.previousAttempt))),
                ]))
            }
            runs[event.runID] = OpenRun(
                position: position, start: event.unixNano, attributes: attributes, links: links,
                isBackground: event.isBackground, openStep: nil)
            return []

        case let .preStep(start):
            guard var run = runs[event.runID] else { return [] }
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
            let spanID = start.span?.spanIDBytes ?? run.position.child().spanIDBytes
            run.openStep = OpenStep(spanID: spanID, name: start.stepName, start: event.unixNano, attributes: attributes, isBackground: event.isBackground)
            runs[event.runID] = run
            return []

        case let .taskLaunched(launch):
            guard var run = runs[event.runID], var step = run.openStep else { return [] }
            step.attributes.append(("flujo.task_id", .string(launch.taskID)))
            run.openStep = step
            runs[event.runID] = run
            return []

        case let .postStep(end), let .onStepFailure(end), let .onPause(end):
            guard var run = runs[event.runID], var step = run.openStep else { return [] }
            run.openStep = nil
            runs[event.runID] = run
            guard run.position.sampled else { return [] }
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
            } else {
                let ended = ending(failed: !end.success, retryScheduled: end.retryScheduled, message: end.feedback, category: end.errorCategory, at: event.unixNano)
                (status, message) = (ended.status, ended.message)
                if let note = ended.event { events.append(note) }
                if !end.success || end.feedback != nil { step.attributes.append(("feedback", .string(end.feedback ?? ""))) }
            }
            if let category = end.errorCategory { step.attributes.append(("flujo.error.category", .string(category.rawValue))) }
            return [TraceSpan(
                traceID: run.position.traceIDBytes, spanID: step.spanID, parentSpanID: run.position.spanIDBytes, runID: event.runID,
                name: step.name, startUnixNano: step.start, endUnixNano: max(event.unixNano, step.start), attributes: step.attributes,
                events: events, status: status, statusMessage: message, isBackground: step.isBackground)]

        case let .postRun(end):
            guard var run = runs.removeValue(forKey: event.runID), run.position.sampled else { return [] }
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
            let ended = ending(failed: failed, retryScheduled: end.retryScheduled, message: end.errorMessage, category: end.errorCategory, at: event.unixNano)
            if let note = ended.event { events.append(note) }
            return [TraceSpan(
                traceID: run.position.traceIDBytes, spanID: run.position.spanIDBytes, parentSpanID: run.position.parentSpanIDBytes,
                runID: event.runID, name: "pipeline_run", startUnixNano: run.start, endUnixNano: max(event.unixNano, run.start),
                attributes: run.attributes, events: events,
                status: failed ? ended.status : (end.status == .completed ? .ok : .unset), statusMessage: ended.message,
                isBackground: run.isBackground, links: run.links)]

        case let .taskFinished(end):
            // An attempt whose process died: its root span is ended now, after the fact.
            guard let lost = end.lostAttempt, runs[end.taskRunID] == nil, lost.attempt.sampled else { return [] }
            let attributes: [(key: String, value: SpanAttributeValue)] = [
                ("flujo.run_id", .string(end.taskRunID)),
                ("flujo.pipeline.name", .string(event.pipelineName)),
                ("flujo.pipeline.version", .string(event.pipelineVersion)),
                ("flujo.task_id", .string(end.taskID)),
                ("flujo.attempt_number", .int(Int64(lost.attemptNumber))),
                ("flujo.step.name", .string(end.stepName)),
                ("flujo.status", .string(end.status.rawValue)),
                ("flujo.error.category", .string((end.errorCategory ?? .lostWorker).rawValue)),
                ("flujo.ended_by_recovery", .bool(true)),
            ]
            let start = lost.attemptStartUnixNano
            return [TraceSpan(
                traceID: lost.attempt.traceIDBytes, spanID: lost.attempt.spanIDBytes, parentSpanID: lost.launch.spanIDBytes,
                runID: end.taskRunID, name: "pipeline_run", startUnixNano: start, endUnixNano: max(event.unixNano, start),
                attributes: attributes, events: [], status: .error,
                statusMessage: end.errorMessage ?? "lost worker: the process running this attempt ended",
                isBackground: true)]
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
///
/// A span not kept is counted by why (`flujo_stored_spans_dropped_total{reason}`,
/// as a `CounterSource`): the queue was full, the run had reached
/// `maxSpansPerRun`, or the store refused the write (a full disk, say). The
/// first refused write of a streak is a warning, and so is the first write
/// after it.
public final class SpanPersister: SpanProcessor, CounterSource {
    private final class Pending: Sendable {
        let queue = Mutex<[SpanRecord]>([])

        func take() -> [SpanRecord] {
            queue.withLock { queue in
                defer { queue.removeAll(keepingCapacity: true) }
                return queue
            }
        }
    }

    /// Spans not kept, by reason.
    private final class Drops: Sendable {
        let queueFull = Atomic<Int>(0)
        let overRunLimit = Atomic<Int>(0)
        let writeFailed = Atomic<Int>(0)
    }

    private let pending = Pending()
    private let drops = Drops()
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
    public init(store: any StateStore, capacity: Int = 10_000, maxSpansPerRun: Int = 0, logger: Logger = Logger(label: "flujo.spans")) {
        self.capacity = capacity
        self.maxSpansPerRun = maxSpansPerRun
        let (signals, signal) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        self.signal = signal
        let pending = self.pending
        let drops = self.drops
        worker = Task {
            var failing = false
            func save(_ batch: [SpanRecord]) async {
                do {
                    try await store.saveSpans(batch)
                    if failing {
                        failing = false
                        logger.warning("spans are kept in the store again")
                    }
                } catch {
                    drops.writeFailed.add(batch.count, ordering: .relaxed)
                    if !failing {
                        failing = true
                        logger.warning("could not keep \(batch.count) span(s) in the store: \(error). Further spans not kept are counted in flujo_stored_spans_dropped_total{reason=\"write_failed\"}; a line follows when writes succeed again.")
                    }
                }
            }
            for await _ in signals {
                let batch = pending.take()
                if !batch.isEmpty { await save(batch) }
            }
            let rest = pending.take()
            if !rest.isEmpty { await save(rest) }
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
                drops.overRunLimit.add(1, ordering: .relaxed)
                return
            }
        }
        let accepted = pending.queue.withLock { queue -> Bool in
            guard queue.count < capacity else { return false }
            queue.append(span.record)
            return true
        }
        if accepted { signal.yield() } else { drops.queueFull.add(1, ordering: .relaxed) }
    }

    /// Spans not kept, for any reason: the queue was full, the run's limit was reached, or the store refused them.
    public var droppedCount: Int {
        drops.queueFull.load(ordering: .relaxed) + drops.overRunLimit.load(ordering: .relaxed) + drops.writeFailed.load(ordering: .relaxed)
    }

    public func counterSamples() -> [CounterSample] {
        let name = "flujo_stored_spans_dropped_total"
        let help = "Spans not kept in the state store, by reason: queue_full, run_limit (max_spans_per_run), write_failed."
        return [
            CounterSample(name: name, help: help, labels: ["reason": "queue_full"], value: Double(drops.queueFull.load(ordering: .relaxed))),
            CounterSample(name: name, help: help, labels: ["reason": "run_limit"], value: Double(drops.overRunLimit.load(ordering: .relaxed))),
            CounterSample(name: name, help: help, labels: ["reason": "write_failed"], value: Double(drops.writeFailed.load(ordering: .relaxed))),
        ]
    }

    /// Writes what is queued and stops.
    public func close() async {
        signal.finish()
        await worker.value
    }
}
