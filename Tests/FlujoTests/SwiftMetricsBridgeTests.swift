import Flujo
import FlujoSwiftMetrics
import FlujoTesting
import Foundation
import MetricsTestKit
import Testing

@Suite("swift-metrics bridge")
struct SwiftMetricsBridgeTests {
    @Test("event metrics reach the application's swift-metrics backend under Flujo's names: steps, cost, tokens, task lifecycle, durations; step labels bounded")
    func bridge() async throws {
        let metrics = TestMetrics()
        var settings = FlujoSettings()
        settings.backgroundTasks.maxRetries = 1
        settings.backgroundTasks.retryBaseDelayMs = 0
        let store = InMemoryStateStore()
        let hooks = HookBus()
        hooks.register(SwiftMetricsSink(factory: metrics, maxStepLabels: 2), background: .include)
        let runner = Runner(store: store, settings: settings, hooks: hooks)
        let priced = Step<Int, Int>("priced") { value, context in
            try context.reportUsage(costUSD: 0.5, tokens: 40)
            return value
        }
        let flaky = Step<Int, Int>("flaky") { _, _ in throw URLError(.timedOut) }
        let third = Step<Int, Int>("third") { value, _ in value }
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(priced), .run(third), .background(flaky), .background(priced)]), input: 1)
        for id in result.backgroundTaskIDs {
            while try await store.loadTask(taskID: id)?.status == .running { try await Task.sleep(for: .milliseconds(2)) }
        }
        #expect(try await runner.tasks.resumeNextDue()?.status == .failed)
        await runner.close()

        #expect(try metrics.expectCounter("flujo_tasks_started_total").totalValue == 2)
        #expect(try metrics.expectCounter("flujo_tasks_completed_total").totalValue == 1)
        #expect(try metrics.expectCounter("flujo_tasks_retried_total").totalValue == 1)
        #expect(try metrics.expectCounter("flujo_task_attempts_failed_total", [("category", "timeout")]).totalValue == 2)
        #expect(try metrics.expectCounter("flujo_tasks_failed_for_good_total", [("category", "timeout")]).totalValue == 1)
        #expect(try metrics.expectRecorder("flujo_task_attempts").values.sorted() == [1, 2])
        #expect(try metrics.expectTimer("flujo_task_end_to_end_seconds").values.count == 2)
        #expect(try metrics.expectTimer("flujo_run_duration_seconds").values.count == 1, "the foreground run; task executions are counted as tasks")
        // The foreground step, the launch of the background one, and its execution.
        #expect(try metrics.expectTimer("flujo_step_duration_seconds", [("step", "priced")]).values.count == 3)
        #expect(try metrics.expectCounter("flujo_step_tokens_total", [("step", "priced")]).totalValue == 80)
        // swift-metrics accumulates floating-point counters and hands whole units to the backend: 0.5 + 0.5.
        #expect(try metrics.expectCounter("flujo_step_cost_usd_total", [("step", "priced")]).totalValue == 1)
        // Two step names have series of their own; the rest share "other".
        let stepLabels = Set(metrics.timers(label: "flujo_step_duration_seconds").flatMap { $0.dimensions.filter { $0.0 == "step" }.map(\.1) })
        #expect(stepLabels == ["priced", "third", "other"], "\(stepLabels)")
    }
}
