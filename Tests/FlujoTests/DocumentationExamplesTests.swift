// The code of README.md's quick start and of Docs/ImplementingAHookSink.md,
// kept here so the documentation cannot drift from the API: it must compile,
// and it runs.
import Flujo
import FlujoOTLP
import FlujoPrometheus
import FlujoSQLite
import FlujoTelemetry
import FlujoTestSupport
import FlujoTesting
import Foundation
import Synchronization
import Testing

struct QuickStartOrder: Codable, Sendable { var id: String; var amount: Double }
struct InvalidOrder: Error, CategorizedError { var category: ErrorCategory { .validation } }

struct SlackOnFailure: HookSink {
    let name = "slack"
    var interests: Set<HookEventKind> { [.onStepFailure, .taskFinished] }
    func handle(_ event: HookEvent) async throws {
        if case let .onStepFailure(end) = event.payload { _ = end.feedback }
    }
}

/// The guide's example sink.
final class FailureCounter: HookSink {
    let name = "failures"
    var interests: Set<HookEventKind> { [.onStepFailure, .taskFinished] }
    let counts = Mutex<[ErrorCategory: Int]>([:])

    func handle(_ event: HookEvent) async throws {
        switch event.payload {
        case let .onStepFailure(end):
            counts.withLock { $0[end.errorCategory ?? .unknown, default: 0] += 1 }
        case let .taskFinished(end) where end.status == .failed:
            print("task \(end.taskID) failed: \(end.errorMessage ?? "")")
        default:
            break
        }
    }
}

@Suite("Documentation examples")
struct DocumentationExamplesTests {
    @Test("the README quick start runs as written")
    func quickStart() async throws {
        let folder = TestSupport.temporaryDirectory("flujo-quickstart")
        let validate = Step<QuickStartOrder, QuickStartOrder>("validate") { order, _ in
            guard order.amount > 0 else { throw InvalidOrder() }
            return order
        }
        let charge = Step<QuickStartOrder, QuickStartOrder>("charge") { order, context in
            try context.reportUsage(costUSD: 0.002, tokens: 120)
            return order
        }
        let sendReceipt = Step<QuickStartOrder, String>("send_receipt") { order, _ in "sent \(order.id)" }
        let store = try SQLiteStateStore(path: folder.appendingPathComponent(".flujo/state.db").path)
        let runner = Runner(store: store, settings: try SettingsLoader.load(file: folder.appendingPathComponent("flujo.toml").path).settings)
        let pipeline = Pipeline(name: "orders", version: "1", steps: [
            .run(validate),
            .run(charge, retry: RetryPolicy(maxAttempts: 3)),
            .background(sendReceipt),
        ])
        let result = try await runner.run(pipeline, input: QuickStartOrder(id: "o-1", amount: 42))
        #expect(result.status == .completed)
        #expect(result.backgroundTaskIDs.count == 1)
        for task in try await runner.tasks.failed(hoursBack: 24) {
            _ = try await runner.tasks.resume(taskID: task.taskID)
        }
        _ = try await runner.tasks.retryFailed(maxRetries: 3)
        _ = try await runner.tasks.cleanupStaleTasks()
        await runner.close()

        // OTLP and Prometheus, as the README wires them (port 0 here, to run beside other tests).
        // No collector listens here: a short export deadline keeps shutdown quick.
        let settings = try SettingsLoader.load(file: folder.appendingPathComponent("flujo.toml").path, environment: [
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_BSP_EXPORT_TIMEOUT": "200", "OTEL_BSP_SCHEDULE_DELAY": "10",
        ]).settings
        var wired = settings
        wired.telemetry.prometheus.enabled = true
        wired.telemetry.prometheus.port = 0
        let telemetry = Telemetry(settings: wired, store: store, consoleWrite: { _ in })
        telemetry.hooks.register(SlackOnFailure(), delivery: .queued(capacity: 1000))
        let observed = Runner(store: store, settings: wired, hooks: telemetry.hooks)
        let server = try #require(try await telemetry.startMetricsServer())
        #expect(try await observed.run(pipeline, input: QuickStartOrder(id: "o-2", amount: 1)).status == .completed)
        #expect(server.port > 0 && telemetry.otlp != nil && telemetry.events != nil)
        await observed.close()
        await telemetry.shutdown()
    }

    @Test("the guide's FailureCounter counts failures by category")
    func guideSink() async throws {
        let counter = FailureCounter()
        let recording = RecordingSink()
        let hooks = HookBus()
        hooks.register(recording)
        hooks.register(counter)
        let runner = Runner(store: InMemoryStateStore(), hooks: hooks)
        let failing = Step<QuickStartOrder, QuickStartOrder>("validate") { _, _ in throw InvalidOrder() }
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(failing)]), input: QuickStartOrder(id: "o", amount: 0))
        #expect(recording.kinds(runID: result.runID) == [.preRun, .preStep, .onStepFailure, .postRun])
        #expect(counter.counts.withLock { $0 } == [.validation: 1])
        await runner.close()
    }
}
