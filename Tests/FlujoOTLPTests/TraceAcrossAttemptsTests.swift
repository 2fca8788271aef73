import Flujo
import FlujoOTLP
import FlujoSQLite
import FlujoTestSupport
import FlujoTesting
import Foundation
import InMemoryTracing
import Synchronization
import Testing
import Tracing
import W3CTraceContext

/// An application's tracer: swift-distributed-tracing's in-memory tracer with
/// W3C ids, propagating `traceparent` as swift-otel does.
struct W3CTestTracer: Tracer {
    let base = InMemoryTracer(idGenerator: .init(nextTraceID: { TraceID.random().description }, nextSpanID: { SpanID.random().description }))

    func startSpan<Instant: TracerInstant>(
        _ operationName: String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind, at instant: @autoclosure () -> Instant,
        function: String, file fileID: String, line: UInt
    ) -> InMemorySpan {
        base.startSpan(operationName, context: context(), ofKind: kind, at: instant(), function: function, file: fileID, line: line)
    }

    func forceFlush() {}

    func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject) where Inject.Carrier == Carrier {
        guard let span = context.inMemorySpanContext else { return }
        injector.inject("00-\(span.traceID)-\(span.spanID)-01", forKey: "traceparent", into: &carrier)
    }

    func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract) where Extract.Carrier == Carrier {
        guard let header = extractor.extract(key: "traceparent", from: carrier),
              let parsed = try? TraceContext(traceParentHeaderValue: header)
        else { return }
        context.inMemorySpanContext = InMemorySpanContext(traceID: parsed.traceID.description, spanID: parsed.spanID.description, parentSpanID: nil)
    }
}

/// Collects finished spans in memory.
final class CollectedSpans: SpanProcessor {
    private let spans = Mutex<[TraceSpan]>([])
    func onEnd(_ span: TraceSpan) { spans.withLock { $0.append(span) } }
    var all: [TraceSpan] { spans.withLock { $0 } }
}

@Suite("Trace context across the application and across attempts")
struct TraceAcrossAttemptsTests {
    @Test("an app-installed tracer (swift-distributed-tracing) sees Flujo's context: the run joins the request's span, and a call made in a step is a child of the step's span")
    func applicationTracer() async throws {
        let tracer = W3CTestTracer()
        let hooks = HookBus()
        let collected = CollectedSpans()
        hooks.register(TraceRecorder(processors: [collected]))
        let runner = Runner(store: InMemoryStateStore(), hooks: hooks)
        let seen = Mutex<(step: SpanPosition?, call: InMemorySpanContext?)>((nil, nil))
        let callOut = Step<Int, Int>("call_out") { value, context in
            // An instrumented client starts its span from ServiceContext.current.
            let call = tracer.startSpan("GET /inventory", context: ServiceContext.current ?? .topLevel)
            call.end()
            seen.withLock { $0 = (context.span, call.spanContext) }
            return value
        }
        let (request, result) = try await withTracer(tracer) {
            let request = tracer.startSpan("POST /orders")
            defer { request.end() }
            let result = try await ServiceContext.withValue(request.context) {
                try await runner.run(Pipeline(name: "orders", steps: [.run(callOut)]), input: 1)
            }
            return (request.spanContext, result)
        }
        #expect(result.status == .completed)
        await runner.close()
        let spans = collected.all
        let root = try #require(spans.first { $0.name == "pipeline_run" })
        #expect(TraceSpan.hex(root.traceID) == request.traceID, "the run is in the request's trace")
        #expect(root.parentSpanID.map(TraceSpan.hex) == request.spanID, "its root is a child of the request's span")
        let step = try #require(spans.first { $0.name == "call_out" })
        let (stepSpan, call) = seen.withLock { $0 }
        #expect(stepSpan?.spanIDBytes == step.spanID, "StepContext.span is the step's own span")
        #expect(stepSpan?.traceparent == "00-\(request.traceID)-\(TraceSpan.hex(step.spanID))-01")
        #expect(call?.traceID == request.traceID)
        #expect(call?.parentSpanID == TraceSpan.hex(step.spanID), "the call made in the step is a child of the step's span")
    }

    @Test("without a tracer, steps still see their span, and nothing changes ServiceContext.current")
    func noTracer() async throws {
        let runner = Runner(store: InMemoryStateStore())
        let seen = Mutex<(SpanPosition?, Bool)>((nil, false))
        let step = Step<Int, Int>("look") { value, context in
            seen.withLock { $0 = (context.span, ServiceContext.current == nil) }
            return value
        }
        _ = try await runner.run(Pipeline(name: "p", steps: [.run(step)]), input: 1)
        await runner.close()
        let (span, noContext) = seen.withLock { $0 }
        #expect(span?.parentSpanID != nil && span?.sampled == true)
        #expect(noContext)
    }

    @Test("a task retried by a worker continues its launch's trace: attempt 2 is a child of the launch span, linked to attempt 1 (retry); only the final failure is ERROR (decoded by opentelemetry-proto)")
    func retriedTaskExported() async throws {
        let receiver = try await Receiver()
        let exporter = OTLPExporter(settings: otlpSettings(receiver.endpoint) { $0.scheduleDelayMs = 600_000 }, serviceName: "s")
        let store = try SQLiteStateStore(path: TestSupport.temporaryDirectory("flujo-attempts").appendingPathComponent("s.db").path)
        var settings = FlujoSettings()
        settings.backgroundTasks.maxRetries = 1
        settings.backgroundTasks.retryBaseDelayMs = 0
        let hooks = HookBus()
        let spans = SpanPipeline(hooks: hooks, store: store, exporters: [SpanDestination(exporter, background: .include)])
        let runner = Runner(store: store, settings: settings, hooks: hooks)
        let result = try await runner.run(Pipeline(name: "orders", steps: [.run(validate), .background(failing)]), input: Order(id: "o1"))
        let taskID = try #require(result.backgroundTaskIDs.first)
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, try await store.loadTask(taskID: taskID)?.status == .running { try await Task.sleep(for: .milliseconds(5)) }
        let retried = try #require(try await runner.tasks.resumeNextDue(), "the failure is due again at once")
        #expect(retried.status == .failed && retried.attempts == 2)
        #expect(try await runner.tasks.resumeNextDue() == nil, "two attempts in all: the second failure is final")
        await runner.close()
        await spans.close()
        #expect(exporter.forceFlush(timeout: .seconds(30)))
        let (_, decoded) = try await receiver.decoded()
        await receiver.stop()
        exporter.shutdown()

        #expect(Set(decoded.compactMap { $0["trace_id"] as? String }).count == 1, "one trace across both attempts")
        let launch = try #require(decoded.first { $0["name"] as? String == "charge" && attributes($0)["flujo.step.type"] as? String == "background" })
        let launchID = try #require(launch["span_id"] as? String)
        let attempts = decoded.filter { $0["name"] as? String == "pipeline_run" && $0["parent_span_id"] as? String == launchID }
        #expect(attempts.count == 2, "both attempts hang below the launch step")
        let first = try #require(attempts.first { attributes($0)["flujo.attempt_number"] as? Int == 1 })
        let second = try #require(attempts.first { attributes($0)["flujo.attempt_number"] as? Int == 2 })
        #expect(first["status_code"] as? Int == 0, "attempt 1 failed with a retry scheduled: status unset")
        #expect((first["events"] as? [String])?.contains("exception") == true)
        #expect(second["status_code"] as? Int == 2, "the final failure is ERROR")
        #expect(attributes(second)["flujo.link.kind"] as? String == "retry")
        let links = try #require(second["links"] as? [[String: Any]])
        #expect(links.count == 1)
        #expect(links.first?["span_id"] as? String == first["span_id"] as? String)
        #expect((links.first?["attributes"] as? [String: Any])?["flujo.link.kind"] as? String == "retry")
        #expect((links.first?["attributes"] as? [String: Any])?["flujo.attempt_number"] as? Int == 1)
        let firstID = try #require(first["span_id"] as? String)
        let firstStep = try #require(decoded.first { $0["name"] as? String == "charge" && $0["parent_span_id"] as? String == firstID })
        #expect(firstStep["status_code"] as? Int == 0 && (firstStep["events"] as? [String])?.contains("exception") == true)
        let secondID = try #require(second["span_id"] as? String)
        let secondStep = try #require(decoded.first { $0["name"] as? String == "charge" && $0["parent_span_id"] as? String == secondID })
        #expect(secondStep["status_code"] as? Int == 2)
    }

    @Test("OTEL_TRACES_SAMPLER: always_off records nothing; parent-based follows the caller's flag; the decision holds for a task's later attempts")
    func sampling() async throws {
        func spans(_ sampler: TraceSampler, trace: TraceContext? = nil, retry: Bool = false) async throws -> [TraceSpan] {
            var settings = FlujoSettings()
            settings.telemetry.sampler = sampler
            settings.backgroundTasks.maxRetries = 1
            settings.backgroundTasks.retryBaseDelayMs = 0
            let store = InMemoryStateStore()
            let hooks = HookBus()
            let collected = CollectedSpans()
            hooks.register(TraceRecorder(processors: [collected]))
            let runner = Runner(store: store, settings: settings, hooks: hooks)
            let result = try await runner.run(Pipeline(name: "p", steps: [.run(validate), .background(failing)]), input: Order(id: "o"), trace: trace)
            let taskID = try #require(result.backgroundTaskIDs.first)
            while try await store.loadTask(taskID: taskID)?.status == .running { try await Task.sleep(for: .milliseconds(2)) }
            if retry { _ = try await runner.tasks.resumeNextDue() }
            await runner.close()
            return collected.all
        }
        #expect(try await spans(.alwaysOn).count == 5)
        #expect(try await spans(.alwaysOff).isEmpty)
        #expect(try await spans(.alwaysOff, retry: true).isEmpty, "the retry of an unsampled trace stays unsampled")
        #expect(try await spans(.alwaysOn, retry: true).count == 7)
        let unsampled = try TraceContext(traceParentHeaderValue: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
        let sampled = try TraceContext(traceParentHeaderValue: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        #expect(try await spans(.parentBasedAlwaysOn, trace: unsampled).isEmpty)
        #expect(try await spans(.parentBased(root: .alwaysOff), trace: sampled).count == 5)
        #expect(try await spans(.parentBased(root: .alwaysOff)).isEmpty)

        // traceidratio decides from the trace id alone, so every process agrees; about the ratio is kept.
        let ids = (0..<4000).map { _ in TraceID.random() }
        let kept = ids.filter { TraceSampler.traceIDRatio(0.25).decide(traceID: $0, parentSampled: nil) }.count
        #expect((800...1200).contains(kept), "\(kept) of 4000 at 0.25")
        #expect(ids.allSatisfy { TraceSampler.traceIDRatio(0.25).decide(traceID: $0, parentSampled: nil) == TraceSampler.traceIDRatio(0.25).decide(traceID: $0, parentSampled: false) })

        let loaded = try SettingsLoader.load(environment: ["OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"])
        #expect(loaded.settings.telemetry.sampler == .parentBased(root: .traceIDRatio(0.1)))
        #expect(try SettingsLoader.load(environment: ["OTEL_TRACES_SAMPLER": "always_off"]).settings.telemetry.sampler == .alwaysOff)
        #expect(try SettingsLoader.load(environment: [:]).settings.telemetry.sampler == .parentBasedAlwaysOn)
        let bad = try SettingsLoader.load(environment: ["OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"])
        #expect(bad.settings.telemetry.sampler == .parentBasedAlwaysOn && bad.warnings.count == 1 && bad.warnings[0].contains("OTEL_TRACES_SAMPLER_ARG"))
        let unknown = try SettingsLoader.load(environment: ["OTEL_TRACES_SAMPLER": "jaeger_remote"])
        #expect(unknown.warnings.count == 1 && unknown.warnings[0].contains("jaeger_remote"))
    }

    @Test("SIGKILL mid-step, recovery and resume in another process: the stored and exported spans form one tree with no missing parent; each lost attempt is ended as an error, each new attempt linked to it (exported links decoded by opentelemetry-proto)")
    func traceAcrossACrash() async throws {
        let path = TestSupport.temporaryDirectory("flujo-crashtrace").appendingPathComponent("state.db").path
        // 20 tasks of 200 ms to 20 s: a kill finds most in flight.
        let process = try RunningProcess(TestSupport.executable("FlujoTestHelper"), ["fanout", path, "20", "200", "spans"])
        #expect(await process.waitForLine(timeout: 60) { $0 == "spans-saved" })
        let runID = String(try #require(process.linesSoFar.first { $0.hasPrefix("launched ") }).dropFirst("launched ".count))
        await process.kill()

        let store = try SQLiteStateStore(path: path)
        let receiver = try await Receiver()
        let exporter = OTLPExporter(settings: otlpSettings(receiver.endpoint) { $0.scheduleDelayMs = 600_000 }, serviceName: "s")
        let hooks = HookBus()
        let spans = SpanPipeline(hooks: hooks, store: store, exporters: [SpanDestination(exporter, background: .include)])
        let runner = Runner(store: store, hooks: hooks)
        try runner.registry.register(Step<Int, Int>("sleeper") { value, _ in value })
        let lost = try await runner.tasks.recoverOrphanedTasks()
        #expect(lost > 0, "the kill left tasks in flight")
        var resumed = 0
        while let outcome = try await runner.tasks.resumeNextDue() {
            #expect(outcome.status == .completed)
            resumed += 1
        }
        #expect(resumed == lost, "recovery makes every lost task due at once")
        await runner.close()
        await spans.close()
        #expect(exporter.forceFlush(timeout: .seconds(30)))
        let (_, exported) = try await receiver.decoded()
        await receiver.stop()
        exporter.shutdown()

        let stored = try await store.spans(runID: runID)
        // What the recovering process exported hangs below what the killed one stored.
        let storedIDs = Set(stored.map(\.spanID))
        #expect(exported.count == 3 * lost, "per lost task: its ended attempt, the new attempt and its step")
        #expect(exported.allSatisfy { storedIDs.contains($0["parent_span_id"] as? String ?? "") }, "no exported span lacks its parent")
        #expect(Set(exported.compactMap { $0["trace_id"] as? String }) == Set(stored.map(\.traceID)))
        for attempt in exported where attributes(attempt)["flujo.link.kind"] as? String == "recovery" {
            let links = attempt["links"] as? [[String: Any]] ?? []
            #expect(links.count == 1 && (links.first?["attributes"] as? [String: Any])?["flujo.link.kind"] as? String == "recovery")
            let linked = exported.first { $0["span_id"] as? String == links.first?["span_id"] as? String }
            #expect(linked?["status_code"] as? Int == 2 && attributes(linked ?? [:])["flujo.ended_by_recovery"] as? Bool == true)
        }
        let ids = Set(stored.map(\.spanID))
        #expect(Set(stored.map(\.traceID)).count == 1, "one trace, across the crash")
        #expect(stored.filter { $0.parentSpanID == nil }.count == 1, "one root")
        let orphans = stored.filter { span in span.parentSpanID.map { !ids.contains($0) } ?? false }
        #expect(orphans.isEmpty, "every parent is there: \(orphans.map(\.name))")
        let ended = stored.filter { $0.attributes["flujo.ended_by_recovery"] == "true" }
        #expect(ended.count == lost, "each lost attempt's span is ended")
        #expect(ended.allSatisfy { $0.status == "error" && $0.statusMessage?.contains("lost worker") == true && $0.attributes["flujo.attempt_number"] == "1" })
        let recoveries = stored.filter { $0.name == "pipeline_run" && $0.attributes["flujo.link.kind"] == "recovery" }
        #expect(recoveries.count == lost)
        let endedIDs = Set(ended.map(\.spanID))
        for attempt in recoveries {
            #expect(attempt.attributes["flujo.attempt_number"] == "2")
            #expect(endedIDs.contains(attempt.attributes["flujo.link.span_id"] ?? ""), "linked to the lost attempt")
            let lostAttempt = ended.first { $0.spanID == attempt.attributes["flujo.link.span_id"] }
            #expect(lostAttempt?.parentSpanID == attempt.parentSpanID, "both attempts are children of the launch step's span")
            #expect(stored.first { $0.spanID == attempt.parentSpanID }?.attributes["flujo.step.type"] == "background")
        }
    }
}
