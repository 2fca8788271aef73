import Flujo
import FlujoLifecycle
import FlujoSQLite
import FlujoTelemetry
import FlujoTestSupport
import FlujoTesting
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@Suite("Services in a ServiceGroup")
struct FlujoServicesTests {
    @Test("a graceful shutdown closes the engine (running tasks saved cancelled), stops the worker and the /metrics server, flushes telemetry")
    func gracefulShutdown() async throws {
        let path = TestSupport.temporaryDirectory("flujo-services").appendingPathComponent("state.db").path
        var settings = FlujoSettings()
        settings.state.uri = path
        settings.backgroundTasks.shutdownTimeoutSeconds = 0.2
        settings.telemetry.prometheus.enabled = true
        settings.telemetry.prometheus.port = 0
        let store = try SQLiteStateStore(settings: settings.state)
        let telemetry = Telemetry(settings: settings, store: store)
        let runner = Runner(store: store, settings: settings, hooks: telemetry.hooks)
        let worker = TaskWorker(operations: TaskOperations(store: store, settings: settings), concurrency: 2, pollInterval: .milliseconds(20))
        let group = ServiceGroup(
            services: [TelemetryService(telemetry: telemetry), EngineService(runner: runner), WorkerService(worker: worker)],
            gracefulShutdownSignals: [], logger: Logger(label: "test"))
        let running = Task { try await group.run() }

        let deadline = ContinuousClock.now + .seconds(30)
        while telemetry.metricsServer == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        let port = try #require(telemetry.metricsServer?.port)
        #expect(runner.isMaintenanceRunning)
        let forever = Step<Int, Int>("forever") { value, _ in try await Task.sleep(for: .seconds(3600)); return value }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(forever)]), input: 1)

        await group.triggerGracefulShutdown()
        try await running.value
        #expect(try await store.loadTask(taskID: result.backgroundTaskIDs[0])?.status == .cancelled)
        #expect(!runner.isMaintenanceRunning)
        await #expect(throws: RunnerError.closed) { try await runner.run(Pipeline(name: "p", steps: [.run(forever)]), input: 1) }
        #expect(telemetry.metricsServer == nil)
        let refused = try await TestSupport.run(URL(fileURLWithPath: "/usr/bin/env"), ["curl", "-sf", "-m", "5", "http://127.0.0.1:\(port)/metrics"])
        #expect(refused.status != 0, "the /metrics server is stopped")
        #expect(try await store.spans(runID: result.runID).isEmpty == false, "spans were written before telemetry stopped")
    }
}

@Suite("Flushing queued sinks")
struct FlushTests {
    final class Slow: HookSink {
        let name = "slow"
        let handled = Atomic<Int>(0)
        func handle(_ event: HookEvent) async throws {
            await Task.yield()
            handled.wrappingAdd(1, ordering: .relaxed)
        }
    }

    @Test("flush waits for queued sinks to handle what they hold, and leaves them running")
    func flush() async throws {
        let hooks = HookBus()
        let slow = Slow()
        let recording = RecordingSink()
        hooks.register(slow, delivery: .queued(capacity: 10_000))
        hooks.register(recording)
        let runner = Runner(store: InMemoryStateStore(), hooks: hooks)
        let step = Step<Int, Int>("s") { value, _ in value }
        _ = try await runner.run(Pipeline(name: "p", steps: Array(repeating: .run(step), count: 20)), input: 1)
        #expect(await hooks.flush(timeout: .seconds(120)))
        #expect(slow.handled.load(ordering: .relaxed) == recording.events.count)
        _ = try await runner.run(Pipeline(name: "p", steps: [.run(step)]), input: 1)
        #expect(await hooks.flush(timeout: .seconds(120)))
        #expect(slow.handled.load(ordering: .relaxed) == recording.events.count, "the sink still runs after a flush")
        await runner.close()
    }
}
