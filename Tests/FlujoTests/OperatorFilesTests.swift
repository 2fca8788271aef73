import Flujo
import FlujoSQLite
import FlujoTelemetry
import FlujoTestSupport
import Foundation
import Testing

/// The alerting rules and the Grafana dashboard shipped in `Docs/operations`.
@Suite("Operator files")
struct OperatorFilesTests {
    static let folder = TestSupport.packageRoot.appendingPathComponent("Docs/operations")
    static let promtool = URL(fileURLWithPath: "/usr/bin/promtool")

    /// Every metric and sample name a fully wired process serves on /metrics,
    /// read from a real scrape after real runs, tasks, a failure and a retry.
    static func servedNames() async throws -> Set<String> {
        let folder = TestSupport.temporaryDirectory("flujo-opsfiles")
        var settings = FlujoSettings()
        settings.telemetry.prometheus.enabled = true
        settings.telemetry.prometheus.port = 0
        settings.telemetry.otlp.enabled = true
        settings.telemetry.otlp.endpoint = "http://127.0.0.1:9"
        settings.telemetry.shutdownTimeoutSeconds = 0.5
        settings.backgroundTasks.retryBaseDelayMs = 0
        let store = try SQLiteStateStore(path: folder.appendingPathComponent("s.db").path)
        let telemetry = Telemetry(settings: settings, store: store)
        let runner = Runner(store: store, settings: settings, hooks: telemetry.hooks)
        let ok = Step<Int, Int>("ok") { value, context in
            try context.reportUsage(costUSD: 0.1, tokens: 5)
            return value
        }
        let failing = Step<Int, Int>("failing") { _, _ in throw URLError(.timedOut) }
        let result = try await runner.run(Pipeline(name: "ops", steps: [.run(ok), .background(ok), .background(failing)]), input: 1)
        for id in result.backgroundTaskIDs {
            while try await store.loadTask(taskID: id)?.status == .running { try await Task.sleep(for: .milliseconds(2)) }
        }
        _ = try await runner.tasks.resumeNextDue()
        let server = try #require(try await telemetry.startMetricsServer())
        let curl = try await TestSupport.run(URL(fileURLWithPath: "/usr/bin/curl"), ["-sf", "http://127.0.0.1:\(server.port)/metrics"])
        #expect(curl.status == 0, "\(curl.stderr)")
        await runner.close()
        await telemetry.shutdown()
        var names = Set<String>()
        for line in curl.stdout.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 4, fields[0] == "#", fields[1] == "TYPE" {
                let name = String(fields[2])
                names.insert(name)
                if fields[3] == "histogram" { names.formUnion([name + "_bucket", name + "_sum", name + "_count"]) }
            } else if !line.hasPrefix("#"), let name = fields.first?.split(separator: "{").first {
                names.insert(String(name))
            }
        }
        return names
    }

    /// The `flujo_*` names a text mentions.
    static func mentioned(in text: String) -> Set<String> {
        Set(text.matches(of: /flujo_[a-z0-9_]+/).map { String($0.output) })
    }

    @Test("the alerting rules pass promtool check rules and their unit tests (promtool test rules)")
    func alertRules() async throws {
        let check = try await TestSupport.run(Self.promtool, ["check", "rules", Self.folder.appendingPathComponent("flujo-alerts.yml").path])
        #expect(check.status == 0 && check.stdout.contains("SUCCESS: 5 rules found"), "\(check.stdout) \(check.stderr)")
        let test = try await TestSupport.run(Self.promtool, ["test", "rules", Self.folder.appendingPathComponent("flujo-alerts.test.yml").path])
        #expect(test.status == 0 && test.stdout.contains("SUCCESS"), "\(test.stdout) \(test.stderr)")
    }

    @Test("every metric the dashboard and the alerts query is one Flujo serves on /metrics")
    func everyQueryNamesAnExportedMetric() async throws {
        let served = try await Self.servedNames()
        #expect(served.contains("flujo_tasks_failed_for_good_total") && served.contains("flujo_step_duration_seconds_bucket"), "\(served.sorted())")
        let data = try Data(contentsOf: Self.folder.appendingPathComponent("flujo-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        let expressions = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        #expect(panels.count >= 12 && expressions.count >= panels.count)
        var queried = Set<String>()
        for expression in expressions {
            let names = Self.mentioned(in: expression)
            #expect(!names.isEmpty, "a query names no Flujo metric: \(expression)")
            queried.formUnion(names)
        }
        #expect(queried.subtracting(served).isEmpty, "queried but not served: \(queried.subtracting(served).sorted())")
        let rules = try String(contentsOf: Self.folder.appendingPathComponent("flujo-alerts.yml"), encoding: .utf8)
        let alerted = Self.mentioned(in: rules.split(separator: "\n").filter { $0.contains("expr:") }.joined(separator: "\n"))
        #expect(alerted.count == 5)
        #expect(alerted.subtracting(served).isEmpty, "alerted on but not served: \(alerted.subtracting(served).sorted())")
    }
}
