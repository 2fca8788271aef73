import Flujo
@testable import FlujoPrometheus
@testable import FlujoSQLite
import FlujoTestSupport
import Foundation
import Synchronization
import Testing

@Suite("Refused outcomes on /metrics")
struct OutcomeMetricsTests {
    @Test("outcomes a full store refuses show as flujo_task_outcomes_refused_total and the flujo_task_outcomes_unwritten gauge, one series for every engine on the bus, back to 0 once written")
    func refusedOutcomes() async throws {
        let store = try SQLiteStateStore(path: TestSupport.temporaryDirectory("flujo-refused").appendingPathComponent("s.db").path)
        let hooks = HookBus()
        let runner = Runner(store: store, hooks: hooks)
        // A second engine on the same bus: its counters add to the runner's, in the same series.
        let operations = TaskOperations(store: store, hooks: hooks)
        let gate = Gate()
        let slow = Step<Int, String>("slow") { _, _ in await gate.wait(); return String(repeating: "z", count: 3000) }
        _ = try await runner.run(Pipeline(name: "p", steps: Array(repeating: .background(slow), count: 5)), input: 1)
        // The file may not grow: every outcome needs pages it cannot have.
        try store.setMaxPageCountForTesting(1)
        gate.open()
        func sample(_ name: String) -> Double {
            hooks.attachedCounterSamples.filter { $0.name == name }.reduce(0) { $0 + $1.value }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, sample("flujo_task_outcomes_unwritten") < 5 { try await Task.sleep(for: .milliseconds(10)) }

        let collector = MetricsCollector(store: nil, hooks: hooks)
        let server = try await MetricsServer.start(host: "127.0.0.1", port: 0, collector: collector)
        let full = try await scrape(server)
        #expect(value(full, "flujo_task_outcomes_refused", "flujo_task_outcomes_refused_total") == 5)
        #expect(value(full, "flujo_task_outcomes_unwritten") == 5)
        let families = try await collector.collect()
        #expect(families.filter { $0.name == "flujo_task_outcomes_unwritten" }.map(\.kind) == [.gauge])
        #expect(families.first { $0.name == "flujo_task_outcomes_unwritten" }?.samples.count == 1, "two engines, one series")

        // Space comes back: the kept outcomes are written, the gauge returns to 0, the counter stays.
        try store.setMaxPageCountForTesting(1_000_000)
        let written = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < written, sample("flujo_task_outcomes_unwritten") > 0 { try await Task.sleep(for: .milliseconds(20)) }
        let after = try await scrape(server)
        #expect(value(after, "flujo_task_outcomes_unwritten") == 0)
        #expect(value(after, "flujo_task_outcomes_refused", "flujo_task_outcomes_refused_total") == 5)
        await server.stop()
        #expect(await runner.close().isComplete)
        _ = operations
    }
}
