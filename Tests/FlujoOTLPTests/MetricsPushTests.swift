import Flujo
import FlujoOTLP
import FlujoPrometheus
import FlujoTelemetry
import FlujoTestSupport
import FlujoTesting
import Foundation
import Testing

/// Decodes what a receiver kept at /v1/metrics with opentelemetry-proto.
func decodedMetrics(_ receiver: Receiver) async throws -> (requests: [[String: Any]], metrics: [[String: Any]]) {
    let python = try #require(TestSupport.python)
    let output = try await TestSupport.run(python, [TestSupport.supportScript("otlp_decode.py").path, "metrics", receiver.folder.path])
    #expect(output.status == 0, "\(output.stderr)")
    let object = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any])
    return (object["requests"] as? [[String: Any]] ?? [], object["metrics"] as? [[String: Any]] ?? [])
}

@Suite("OTLP metrics push")
struct MetricsPushTests {
    /// Runs a pipeline with a completed and a failed task, its spans sampled.
    func work(_ runner: Runner, _ store: any StateStore) async throws {
        let ok = Step<Int, Int>("ok") { value, context in
            try context.reportUsage(costUSD: 0.25, tokens: 10)
            return value
        }
        let failing = Step<Int, Int>("failing") { _, _ in throw URLError(.timedOut) }
        let result = try await runner.run(Pipeline(name: "push", steps: [.run(ok), .background(ok), .background(failing)]), input: 1)
        for id in result.backgroundTaskIDs {
            while try await store.loadTask(taskID: id)?.status == .running { try await Task.sleep(for: .milliseconds(2)) }
        }
    }

    @Test("OTEL_METRICS_EXPORTER=otlp pushes the /metrics families to {endpoint}/v1/metrics at OTEL_METRIC_EXPORT_INTERVAL, gzip, cumulative, with exemplars, and once more at shutdown (decoded by opentelemetry-proto)")
    func pushFromEnvironment() async throws {
        let receiver = try await Receiver()
        let loaded = try SettingsLoader.load(environment: [
            "OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_METRIC_EXPORT_INTERVAL": "150",
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "x-tenant=acme",
            "FLUJO_PROMETHEUS_ENABLED": "true", "OTEL_TRACES_EXPORTER": "none",
        ])
        #expect(loaded.warnings.isEmpty, "\(loaded.warnings)")
        let settings = loaded.settings
        #expect(settings.telemetry.otlpMetrics.enabled && settings.telemetry.otlpMetrics.exportIntervalMs == 150)
        let store = InMemoryStateStore()
        let telemetry = Telemetry(settings: settings, store: store)
        let runner = Runner(store: store, settings: settings, hooks: telemetry.hooks)
        try await work(runner, store)
        try await Task.sleep(for: .milliseconds(500))   // a few intervals
        await runner.close()
        await telemetry.shutdown()
        let (requests, metrics) = try await decodedMetrics(receiver)
        await receiver.stop()

        #expect(requests.count >= 2, "pushed at each interval and at shutdown: \(requests.count)")
        #expect(requests.allSatisfy { $0["path"] as? String == "/v1/metrics" && $0["gzipped"] as? Bool == true })
        #expect(requests.allSatisfy { $0["roundtrip_identical"] as? Bool == true }, "nothing unknown to the reference decoder")
        #expect(requests.allSatisfy { (($0["headers"] as? [String: String]) ?? [:]).contains { $0.key.lowercased() == "x-tenant" && $0.value == "acme" } })
        #expect((requests.first?["resources"] as? [[String: Any]])?.first?["service.name"] as? String == "flujo")
        let last = requests.count - 1
        let final = metrics.filter { $0["request"] as? Int == last }
        func metric(_ name: String) -> [String: Any]? { final.first { $0["name"] as? String == name } }
        let started = try #require(metric("flujo_tasks_started"), "\(final.compactMap { $0["name"] })")
        #expect(started["kind"] as? String == "sum" && started["monotonic"] as? Bool == true && started["temporality"] as? Int == 2)
        #expect((started["points"] as? [[String: Any]])?.first?["value"] as? Double == 2)
        let failed = try #require(metric("flujo_task_attempts_failed"))
        #expect((failed["points"] as? [[String: Any]])?.contains { ($0["attributes"] as? [String: Any])?["category"] as? String == "timeout" && $0["value"] as? Double == 1 } == true)
        #expect(metric("flujo_background_tasks_by_status")?["kind"] as? String == "gauge")
        let steps = try #require(metric("flujo_step_duration_seconds"))
        #expect(steps["kind"] as? String == "histogram" && steps["unit"] as? String == "s")
        let points = try #require(steps["points"] as? [[String: Any]])
        for point in points {
            let buckets = try #require(point["bucket_counts"] as? [Int])
            let bounds = try #require(point["explicit_bounds"] as? [Double])
            #expect(buckets.count == bounds.count + 1 && buckets.reduce(0, +) == point["count"] as? Int)
        }
        let exemplars = points.flatMap { $0["exemplars"] as? [[String: Any]] ?? [] }
        #expect(!exemplars.isEmpty && exemplars.allSatisfy { ($0["trace_id"] as? String)?.count == 32 && ($0["span_id"] as? String)?.count == 16 })
        let starts = Set(requests.indices.compactMap { index in
            (metrics.first { $0["request"] as? Int == index && $0["name"] as? String == "flujo_tasks_started" }?["points"] as? [[String: Any]])?.first?["start"] as? Int
        })
        #expect(starts.count == 1, "cumulative points share their start")
    }

    @Test("delta temporality: each push carries the change since the one before")
    func delta() async throws {
        let receiver = try await Receiver()
        var settings = FlujoSettings()
        settings.telemetry.otlp.endpoint = receiver.endpoint
        settings.telemetry.otlpMetrics.temporality = "delta"
        let store = InMemoryStateStore()
        let hooks = HookBus()
        let tasks = TaskMetrics()
        hooks.register(tasks, background: .include)
        let exporter = OTLPMetricsExporter(settings: settings.telemetry.otlpMetrics.transport(from: settings.telemetry.otlp), serviceName: "s", delta: true)
        let push = MetricsPush(collector: MetricsCollector(store: store, tasks: tasks), exporter: exporter, settings: settings.telemetry.otlpMetrics)
        let runner = Runner(store: store, settings: settings, hooks: hooks)
        try await work(runner, store)
        await push.pushOnce()
        #expect(exporter.forceFlush(timeout: .seconds(30)))
        try await work(runner, store)
        try await work(runner, store)
        await push.pushOnce()
        #expect(exporter.forceFlush(timeout: .seconds(30)))
        await push.pushOnce()
        await runner.close()
        await push.shutdown(timeout: .seconds(30))
        let (requests, metrics) = try await decodedMetrics(receiver)
        await receiver.stop()
        #expect(requests.count == 4)
        let started = metrics.filter { $0["name"] as? String == "flujo_tasks_started" }.sorted { ($0["request"] as! Int) < ($1["request"] as! Int) }
        let values = started.compactMap { ($0["points"] as? [[String: Any]])?.first?["value"] as? Double }
        #expect(values == [2, 4, 0, 0], "\(values)")
        #expect(started.allSatisfy { $0["temporality"] as? Int == 1 })
        let windows = started.compactMap { ($0["points"] as? [[String: Any]])?.first }.map { ($0["start"] as? Int ?? 0, $0["time"] as? Int ?? 0) }
        #expect(zip(windows, windows.dropFirst()).allSatisfy { $0.1 == $1.0 }, "each delta starts where the one before ended")
        #expect(exporter.statistics.delivered == 4 && exporter.statistics.failed == 0)
    }

    @Test("OTLP metrics settings: what turns the push on and off, the metrics URL, inherited headers, temporality")
    func settings() throws {
        #expect(try !SettingsLoader.load(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"]).settings.telemetry.otlpMetrics.enabled,
                "a generic endpoint alone does not push metrics: Prometheus scrapes are the default")
        let on = try SettingsLoader.load(environment: ["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:4318/custom", "OTEL_EXPORTER_OTLP_HEADERS": "a=b"])
        #expect(on.settings.telemetry.otlpMetrics.enabled)
        let transport = on.settings.telemetry.otlpMetrics.transport(from: on.settings.telemetry.otlp)
        #expect(transport.tracesURL == "http://m:4318/custom", "a metrics endpoint is used as given")
        #expect(transport.headers == ["a": "b"], "headers fall back to the generic ones")
        let base = try SettingsLoader.load(environment: ["OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"]).settings.telemetry
        #expect(base.otlpMetrics.transport(from: base.otlp).tracesURL == "http://c:4318/v1/metrics")
        #expect(try !SettingsLoader.load(environment: ["OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:1"]).settings.telemetry.otlpMetrics.enabled)
        #expect(try !SettingsLoader.load(environment: ["OTEL_METRICS_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"]).settings.telemetry.otlpMetrics.enabled)
        let odd = try SettingsLoader.load(environment: ["OTEL_METRICS_EXPORTER": "otlp,logging"])
        #expect(odd.settings.telemetry.otlpMetrics.enabled && odd.warnings.count == 1 && odd.warnings[0].contains("logging"))
        #expect(try SettingsLoader.load(environment: ["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta"]).settings.telemetry.otlpMetrics.temporality == "delta")
        let bad = try SettingsLoader.load(environment: ["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "sideways", "OTEL_METRIC_EXPORT_INTERVAL": "-5"])
        #expect(bad.settings.telemetry.otlpMetrics.temporality == "cumulative" && bad.settings.telemetry.otlpMetrics.exportIntervalMs == 60_000)
        #expect(bad.warnings.count == 2, "\(bad.warnings)")
    }
}
