import Flujo
import FlujoSQLite
import FlujoTelemetry
import FlujoTestSupport
import FlujoTesting
import Foundation
import Testing

@Suite("Telemetry from settings")
struct TelemetryTests {
    @Test("every enabled flag is honoured: nothing is registered for what is switched off")
    func enabledFlags() async throws {
        let off = Telemetry(settings: FlujoSettings(), store: nil)
        #expect(off.console == nil && off.otlp == nil && off.events == nil && off.spans == nil)
        #expect(off.hooks.sinkNames.isEmpty)
        #expect(try await off.startMetricsServer() == nil, "no server while [telemetry.prometheus] is disabled")
        await off.shutdown()

        var settings = FlujoSettings()
        settings.telemetry.console.enabled = true
        settings.telemetry.prometheus.enabled = true
        settings.telemetry.prometheus.port = 0
        let lines = Lines()
        let store = InMemoryStateStore()
        let on = Telemetry(settings: settings, store: store, consoleWrite: lines.write)
        #expect(on.console != nil && on.events != nil && on.otlp == nil && on.spans != nil)
        #expect(Set(on.hooks.sinkNames) == ["console", "prometheus", "prometheus-tasks", "trace"])
        let runner = Runner(store: store, settings: settings, hooks: on.hooks)
        let receipt = Step<Int, Int>("receipt") { value, _ in value }
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(Step<Int, Int>("validate") { value, _ in value }), .background(receipt)]), input: 1)
        await runner.close()
        await on.shutdown()
        #expect(lines.all.contains { $0.contains("validate") })
        #expect(!lines.all.contains { $0.contains("[bg]") }, "the console's background policy (skip by default) is applied at its registration")
        #expect(try await store.spans(runID: result.runID).count == 5, "spans kept in the store, background ones included")
    }

    @Test("[telemetry.prometheus] host and port are where the server listens; shutdown stops it")
    func metricsServerFromSettings() async throws {
        var settings = FlujoSettings()
        settings.telemetry.prometheus.enabled = true
        settings.telemetry.prometheus.host = "127.0.0.1"
        settings.telemetry.prometheus.port = 0
        let store = try SQLiteStateStore(path: TestSupport.temporaryDirectory("flujo-telemetry").appendingPathComponent("s.db").path)
        let telemetry = Telemetry(settings: settings, store: store)
        let server = try #require(try await telemetry.startMetricsServer())
        #expect(server.host == "127.0.0.1" && server.port > 0)
        let port = server.port
        let scraped = try await TestSupport.run(URL(fileURLWithPath: "/usr/bin/env"), ["curl", "-sf", "http://127.0.0.1:\(port)/metrics"])
        #expect(scraped.status == 0 && scraped.stdout.contains("flujo_runs_by_status"))
        // A second server on the same port from the same settings fails clearly.
        var taken = settings
        taken.telemetry.prometheus.port = port
        await #expect(throws: (any Error).self) { try await Telemetry(settings: taken, store: store).startMetricsServer() }
        await telemetry.shutdown()
        #expect(telemetry.metricsServer == nil)
        let refused = try await TestSupport.run(URL(fileURLWithPath: "/usr/bin/env"), ["curl", "-sf", "-m", "5", "http://127.0.0.1:\(port)/metrics"])
        #expect(refused.status != 0, "the server is stopped")
    }
}
