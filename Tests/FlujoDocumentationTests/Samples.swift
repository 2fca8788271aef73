// The code the README and the guides under Docs/ show. Every ```swift block
// of those files must appear here (or in Sources/) line for line: see
// DocumentationTests.swift. What can run here runs.
import ArgumentParser
import Flujo
import FlujoCLI
import FlujoLifecycle
import FlujoOTLP
import FlujoPrometheus
import FlujoSQLite
import FlujoSwiftMetrics
import FlujoTelemetry
import FlujoTesting
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

struct Order: Codable, Sendable { var id: String; var amount: Double }
struct InvalidOrder: Error, CategorizedError { var category: ErrorCategory { .validation } }

/// README: the quick start's steps and pipeline.
func orderPipeline() -> Pipeline {
    let validate = Step<Order, Order>("validate") { order, _ in
        guard order.amount > 0 else { throw InvalidOrder() }   // persisted with category "validation"
        return order
    }
    let charge = Step<Order, Order>("charge") { order, context in
        try context.reportUsage(costUSD: 0.002, tokens: 120)   // counted against the run's quota
        return order
    }
    let sendReceipt = Step<Order, String>("send_receipt") { order, _ in
        "sent \(order.id)"   // runs in the background; an error fails this task, never the run
    }
    let pipeline = Pipeline(name: "orders", version: "1", steps: [
        .run(validate),
        .run(charge, retry: RetryPolicy(maxAttempts: 3)),
        .background(sendReceipt),   // returns at once; the next step gets this step's input
    ])
    return pipeline
}

/// Stands for an application's HTTP client in the samples: records what it was given.
let posted = Mutex<[(url: String, headers: [String: String])]>([])
func post(_ order: Order, to url: String, headers: [String: String]) async throws {
    posted.withLock { $0.append((url, headers)) }
}

enum Samples {
    /// Observability: a step hands its own span to an outgoing call.
    static func notifyStep() -> Step<Order, Order> {
        let notify = Step<Order, Order>("notify") { order, context in
            var headers = ["content-type": "application/json", "traceparent": context.span.traceparent]
            if let state = context.span.tracestate { headers["tracestate"] = state }
            try await post(order, to: "https://hooks.example.com/orders", headers: headers)   // the callee joins below this step
            return order
        }
        return notify
    }

    /// README: run a pipeline with state in SQLite, configured by flujo.toml and the environment.
    static func quickStart() async throws {
        let pipeline = orderPipeline()
        let settings = try SettingsLoader.load(file: "flujo.toml").settings
        let store = try SQLiteStateStore(settings: settings.state)   // [state] uri, synchronous, busy_timeout_ms
        let runner = Runner(store: store, settings: settings)
        let result = try await runner.run(pipeline, input: Order(id: "o-1", amount: 42))
        print(result.status, result.backgroundTaskIDs)
        await runner.close()   // waits for background tasks, cancels (and persists) stragglers
    }

    /// Running pipelines: pause and abort.
    static let approve = Step<Order, Order>("approve") { order, context in
        if order.amount > 1000 { try context.pause("needs approval") }   // paused, resumable with new data
        if order.amount < 0 { try context.abort("negative amount") }     // failed, category control_flow
        return order
    }

    /// Running pipelines: a quota for the run.
    static func runWithQuota(_ runner: Runner, _ pipeline: Pipeline = orderPipeline()) async throws -> PipelineResult {
        let result = try await runner.run(
            pipeline, input: Order(id: "o-2", amount: 10),
            context: RunContext(["customer": .string("ada")]),
            quota: Quota(costUSD: 0.50, tokens: 20_000))
        return result
    }

    /// Running pipelines: maintenance in a process whose tasks run long.
    static func longRunning(_ store: any StateStore, _ settings: FlujoSettings, _ pipeline: Pipeline = orderPipeline()) async throws {
        let runner = Runner(store: store, settings: settings)
        runner.startMaintenance()   // heartbeats every heartbeat_interval_seconds, periodic stale cleanup
        _ = try await runner.run(pipeline, input: Order(id: "o-3", amount: 5))
        await runner.close()        // stops maintenance too
    }

    /// Operating tasks: a process that only resumes registers the steps it can run.
    static func resumeOnly(_ store: any StateStore, _ settings: FlujoSettings, _ pipeline: Pipeline = orderPipeline()) async throws -> RetryReport {
        let operations = TaskOperations(store: store, settings: settings, registry: StepRegistry(pipeline))
        for task in try await operations.failed(hoursBack: 24) {
            _ = try await operations.resume(taskID: task.taskID)   // or newData: .object([...])
        }
        let report = try await operations.retryFailed(maxRetries: 3)
        try await operations.cleanupStaleTasks()
        return report
    }

    /// Running pipelines: Flujo's parts in an application's ServiceGroup.
    static func service(_ settings: FlujoSettings) async throws {
        let store = try SQLiteStateStore(settings: settings.state)
        let telemetry = Telemetry(settings: settings, store: store)
        let runner = Runner(store: store, settings: settings, hooks: telemetry.hooks)
        let worker = TaskWorker(operations: runner.tasks, concurrency: 4)
        let group = ServiceGroup(
            services: [TelemetryService(telemetry: telemetry), EngineService(runner: runner), WorkerService(worker: worker)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "orders"))
        try await group.run()   // SIGTERM: the worker stops claiming, the engine closes, then telemetry flushes
        store.close()             // the last connection folds SQLite's log into the file
    }

    /// Operating tasks: a worker in a process of its own.
    static func worker(_ store: any StateStore, _ settings: FlujoSettings, _ pipeline: Pipeline = orderPipeline()) async -> TaskWorker.Report {
        let worker = TaskWorker(operations: TaskOperations(store: store, settings: settings, registry: StepRegistry(pipeline)), concurrency: 8)
        let report = await worker.run(once: true)   // without `once`, until its task is cancelled
        print(report.ran, report.completed, report.failed)
        return report
    }

    /// Operating tasks: the same operations over a runner's store, steps and bus.
    static func fromRunner(_ runner: Runner) async throws {
        let paused = try await runner.tasks.list(BackgroundTaskQuery(statuses: [.paused]))
        for task in paused {
            _ = try await runner.tasks.resume(taskID: task.taskID, newData: .object(["id": .string("o-2"), "amount": .number(900)]))
        }
        print(try await runner.tasks.stats().backgroundStatusCounts)
    }

    /// Observability: telemetry from settings, one shutdown.
    static func telemetry(_ store: SQLiteStateStore, _ settings: FlujoSettings, _ pipeline: Pipeline = orderPipeline()) async throws {
        let telemetry = Telemetry(settings: settings, store: store)   // console, OTLP, Prometheus as [telemetry] says
        let runner = Runner(store: store, settings: settings, hooks: telemetry.hooks)
        try await telemetry.startMetricsServer()   // when [telemetry.prometheus] enabled, on its host and port
        _ = try await runner.run(pipeline, input: Order(id: "o-4", amount: 1))
        await runner.close()
        await telemetry.shutdown()   // stops /metrics, writes queued spans, flushes OTLP
    }

    /// Observability: the same parts wired by hand.
    static func wiredByHand(_ store: SQLiteStateStore, _ settings: FlujoSettings, _ pipeline: Pipeline = orderPipeline()) async throws {
        let hooks = HookBus()
        let exporter = OTLPExporter(settings: settings)   // POSTs {endpoint}/v1/traces
        let spans = SpanPipeline(hooks: hooks, store: store, exporters: [SpanDestination(exporter, background: .skip)])
        let events = EventMetrics()
        hooks.register(events, background: .skip)
        hooks.register(ConsoleTracer(settings: settings), background: .include)
        let runner = Runner(store: store, settings: settings, hooks: hooks)
        let server = try await MetricsServer.start(host: "127.0.0.1", port: 9464,
            collector: MetricsCollector(store: store, events: events, hooks: hooks, counterSources: [exporter]))
        _ = try await runner.run(pipeline, input: Order(id: "o-5", amount: 1))
        await runner.close(); await spans.close(); exporter.shutdown(); await server.stop()
    }

    /// Operating tasks: the operator commands in an application's own tool.
    struct OrdersTool: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "orders-admin", subcommands: FlujoCLI.operatorCommands)

        static func main() async {
            Foundation.exit(await FlujoCLI.main(root: OrdersTool.self, registry: StepRegistry(orderPipeline())))
        }
    }
}

/// Implementing a hook sink: a sink that posts failures somewhere.
struct SlackOnFailure: HookSink {
    let name = "slack"
    var interests: Set<HookEventKind> { [.onStepFailure, .taskFinished] }
    func handle(_ event: HookEvent) async throws {
        if case let .onStepFailure(end) = event.payload { _ = end.feedback }   // post it
    }
}

enum SinkSamples {
    /// Implementing a hook sink: delivery and background policy.
    static func register(_ hooks: HookBus) {
        hooks.register(FailureCounter())                                  // inline: called on the emitting task, in order
        hooks.register(SlackOnFailure(), delivery: .queued(capacity: 1000))  // own task, bounded queue
        hooks.register(FailureCounter(), strict: true)                    // its errors fail the run
        hooks.register(SlackOnFailure(), background: .skip)              // never sees background executions
    }

    /// Observability: the swift-metrics bridge.
    static func swiftMetrics(_ hooks: HookBus) {
        hooks.register(SwiftMetricsSink(), background: .include)
    }

    /// Implementing a hook sink: test it.
    static func testIt(_ pipeline: Pipeline = orderPipeline()) async throws {
        let recording = RecordingSink()
        let hooks = HookBus()
        hooks.register(recording)
        hooks.register(FailureCounter())
        let runner = Runner(store: InMemoryStateStore(), hooks: hooks)
        let result = try await runner.run(pipeline, input: Order(id: "o", amount: 0))
        #expect(recording.kinds(runID: result.runID) == [.preRun, .preStep, .onStepFailure, .postRun])
        await runner.close()
    }
}
