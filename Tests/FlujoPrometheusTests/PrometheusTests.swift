import Flujo
@testable import FlujoPrometheus
import FlujoSQLite
import FlujoTestSupport
import FlujoTesting
import Foundation
import Testing

struct Order: Codable, Sendable { var id: String }

/// Scrapes a running server with the reference parser and checks the text with promtool.
func scrape(_ server: MetricsServer, openMetrics: Bool = false) async throws -> [String: Any] {
    let python = try #require(TestSupport.python, "no Python with prometheus-client: run `make test`")
    let file = TestSupport.temporaryDirectory("flujo-prom").appendingPathComponent("metrics.txt")
    let output = try await TestSupport.run(
        python, [TestSupport.supportScript("prom_check.py").path, "http://127.0.0.1:\(server.port)", file.path] + (openMetrics ? ["openmetrics"] : []))
    #expect(output.status == 0, "\(output.stderr)")
    // `promtool check metrics` (2.42, Debian 12) reads only the Prometheus text format; an
    // OpenMetrics body is checked by prometheus-client's OpenMetrics parser, which is strict
    // about `# EOF`, counter names and exemplars.
    if !openMetrics {
        let promtool = try await TestSupport.run(URL(fileURLWithPath: "/usr/bin/promtool"), ["check", "metrics"], input: try Data(contentsOf: file))
        #expect(promtool.status == 0, "promtool: \(promtool.stdout) \(promtool.stderr)")
        #expect(promtool.stdout.isEmpty && promtool.stderr.isEmpty, "promtool reported: \(promtool.stdout) \(promtool.stderr)")
    }
    return try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any])
}

func samples(_ result: [String: Any], _ family: String) -> [[Any]] {
    ((result["families"] as? [String: Any])?[family] as? [String: Any])?["samples"] as? [[Any]] ?? []
}

func value(_ result: [String: Any], _ family: String, _ sample: String? = nil, _ labels: [String: String] = [:]) -> Double? {
    samples(result, family).first { ($0[0] as? String) == (sample ?? family) && ($0[1] as? [String: String] ?? [:]) == labels }?[2] as? Double
}

@Suite("Prometheus endpoint")
struct PrometheusTests {
    @Test("a scrape over TCP passes promtool and reads back with prometheus-client: state gauges, events, hook errors")
    func scrapeRealRuns() async throws {
        let store = try SQLiteStateStore(path: TestSupport.temporaryDirectory().appendingPathComponent("s.db").path)
        let hooks = HookBus()
        let events = EventMetrics()
        hooks.register(events, background: .skip)
        struct Broken: HookSink { let name = "bro\"ken\\sink\nx"; func handle(_ event: HookEvent) async throws { throw CancellationError() } }
        hooks.register(Broken(), delivery: .inline)
        let runner = Runner(store: store, hooks: hooks)
        let ok = Step<Order, Order>("validate \"quoted\" \\ back\nslash") { order, _ in order }
        let bad = Step<Order, Order>("charge") { _, _ in throw URLError(.timedOut) }
        let background = Step<Order, String>("receipt") { _, _ in "r" }
        _ = try await runner.run(Pipeline(name: "p", steps: [.run(ok), .background(background)]), input: Order(id: "1"))
        _ = try await runner.run(Pipeline(name: "p", steps: [.run(ok), .run(bad)]), input: Order(id: "2"))
        await runner.close()

        let collector = MetricsCollector(store: store, events: events, hooks: hooks)
        let server = try await MetricsServer.start(host: "127.0.0.1", port: 0, collector: collector)
        #expect(server.port > 0)
        let result = try await scrape(server)
        await server.stop()

        #expect(result["content_type"] as? String == "text/plain; version=0.0.4; charset=utf-8")
        #expect(result["other_path"] as? Int == 404)
        #expect(result["post"] as? Int == 405)
        #expect(value(result, "flujo_runs_by_status", nil, ["status": "completed"]) == 1)
        #expect(value(result, "flujo_runs_by_status", nil, ["status": "failed"]) == 1)
        #expect(value(result, "flujo_runs_by_status", nil, ["status": "paused"]) == 0)
        #expect(value(result, "flujo_background_tasks_by_status", nil, ["status": "completed"]) == 1)
        #expect(value(result, "flujo_runs", "flujo_runs_total") == 3)
        // Event-derived with background skipped: the launch step is flagged background, so only
        // the two foreground validations completed and one charge failed.
        #expect(value(result, "flujo_steps", "flujo_steps_total", ["status": "completed"]) == 2)
        #expect(value(result, "flujo_steps", "flujo_steps_total", ["status": "failed"]) == 1)
        #expect(value(result, "flujo_run_duration_seconds", "flujo_run_duration_seconds_count") == 2)
        #expect(value(result, "flujo_run_duration_seconds", "flujo_run_duration_seconds_bucket", ["le": "+Inf"]) == 2)
        // Label values with quotes, backslashes and newlines read back exactly.
        #expect(value(result, "flujo_step_duration_seconds", "flujo_step_duration_seconds_count", ["step": "validate \"quoted\" \\ back\nslash"]) == 2)
        #expect((value(result, "flujo_hook_errors", "flujo_hook_errors_total", ["sink": "bro\"ken\\sink\nx", "event": "post_run"]) ?? 0) >= 2)
    }

    @Test("the dashboard set over a real scrape (promtool, prometheus-client): task lifecycle counters, attempts per task, cost and tokens by step, oldest ages; step labels bounded")
    func dashboardSet() async throws {
        let store = try SQLiteStateStore(path: TestSupport.temporaryDirectory().appendingPathComponent("s.db").path)
        var settings = FlujoSettings()
        settings.backgroundTasks.maxRetries = 1
        settings.backgroundTasks.retryBaseDelayMs = 0
        let hooks = HookBus()
        let events = EventMetrics(maxStepLabels: 3)
        let tasks = TaskMetrics()
        hooks.register(events, background: .include)
        hooks.register(tasks, background: .include)
        let runner = Runner(store: store, settings: settings, hooks: hooks)
        let priced = Step<Order, Order>("priced") { order, context in
            try context.reportUsage(costUSD: 0.25, tokens: 100)
            return order
        }
        let flaky = Step<Order, Order>("flaky") { _, _ in throw URLError(.timedOut) }
        let invalid = Step<Order, Order>("invalid") { _, context in try context.abort("bad order") }
        let ok = Step<Order, String>("ok") { order, _ in order.id }
        let extra = Step<Order, Order>("extra") { order, _ in order }
        let result = try await runner.run(
            Pipeline(name: "p", steps: [.run(priced), .run(extra), .background(flaky), .background(ok), .background(priced)]), input: Order(id: "1"))
        for id in result.backgroundTaskIDs {
            while try await store.loadTask(taskID: id)?.status == .running { try await Task.sleep(for: .milliseconds(2)) }
        }
        // The flaky task: its first failure schedules a retry; the worker's retry fails for good.
        #expect(try await runner.tasks.resumeNextDue()?.status == .failed)
        _ = try await runner.run(Pipeline(name: "p", steps: [.background(invalid)]), input: Order(id: "2"))
        await runner.close()
        let paused = WorkflowState(
            runID: "r_bg_old", pipelineName: "p", status: .paused, updatedAt: Timestamp.now.adding(seconds: -3600),
            isBackgroundTask: true, parentRunID: "r", taskID: "old", stepName: "approve")
        try await store.save(paused)

        let server = try await MetricsServer.start(host: "127.0.0.1", port: 0, collector: MetricsCollector(store: store, events: events, tasks: tasks, hooks: hooks))
        let scraped = try await scrape(server)
        // The same families as OpenMetrics, asked for as Prometheus asks: exemplars on the duration buckets, `# EOF`.
        let open = try await scrape(server, openMetrics: true)
        await server.stop()
        #expect(open["content_type"] as? String == "application/openmetrics-text; version=1.0.0; charset=utf-8")
        #expect(scraped["content_type"] as? String == "text/plain; version=0.0.4; charset=utf-8", "Prometheus text stays the default")
        #expect(value(open, "flujo_tasks_started", "flujo_tasks_started_total") == 4, "a counter family is named without _total")
        let exemplars = samples(open, "flujo_step_duration_seconds").compactMap { $0.count > 3 ? $0[3] as? [Any] : nil }
        #expect(!exemplars.isEmpty, "duration buckets carry exemplars")
        for exemplar in exemplars {
            let labels = try #require(exemplar[0] as? [String: String])
            #expect(labels["trace_id"]?.count == 32 && labels["span_id"]?.count == 16)
        }
        let runExemplars = samples(open, "flujo_run_duration_seconds").compactMap { $0.count > 3 ? ($0[3] as? [Any])?[0] as? [String: String] : nil }
        #expect(runExemplars.contains { $0["trace_id"] != nil }, "the run histogram too")

        #expect(value(scraped, "flujo_tasks_started", "flujo_tasks_started_total") == 4)
        #expect(value(scraped, "flujo_tasks_completed", "flujo_tasks_completed_total") == 2)
        #expect(value(scraped, "flujo_task_attempts_failed", "flujo_task_attempts_failed_total", ["category": "timeout"]) == 2)
        #expect(value(scraped, "flujo_task_attempts_failed", "flujo_task_attempts_failed_total", ["category": "control_flow"]) == 1)
        #expect(value(scraped, "flujo_tasks_failed_for_good", "flujo_tasks_failed_for_good_total", ["category": "timeout"]) == 1, "the first failure was not final")
        #expect(value(scraped, "flujo_tasks_retried", "flujo_tasks_retried_total") == 1)
        #expect(value(scraped, "flujo_tasks_resumed", "flujo_tasks_resumed_total") == 0)
        #expect(value(scraped, "flujo_task_attempts", "flujo_task_attempts_count") == 4, "two completed, two failed for good")
        #expect(value(scraped, "flujo_task_attempts", "flujo_task_attempts_bucket", ["le": "1"]) == 3, "only the flaky task took two")
        #expect(value(scraped, "flujo_task_end_to_end_seconds", "flujo_task_end_to_end_seconds_count") == 4)
        #expect((value(scraped, "flujo_task_end_to_end_seconds", "flujo_task_end_to_end_seconds_bucket", ["le": "60"]) ?? 0) == 4)
        #expect(value(scraped, "flujo_step_cost_usd", "flujo_step_cost_usd_total", ["step": "priced"]) == 0.5)
        #expect(value(scraped, "flujo_step_tokens", "flujo_step_tokens_total", ["step": "priced"]) == 200)
        // Three step names have series of their own; later ones share "other".
        let stepLabels = Set(samples(scraped, "flujo_step_tokens").compactMap { ($0[1] as? [String: String])?["step"] })
        #expect(stepLabels.count == 4 && stepLabels.contains("other"), "\(stepLabels)")
        let pausedAge = try #require(value(scraped, "flujo_oldest_paused_task_age_seconds"))
        #expect(pausedAge >= 3600 && pausedAge < 3700)
        #expect((value(scraped, "flujo_oldest_failed_task_age_seconds") ?? -1) >= 0)
        #expect(value(scraped, "flujo_oldest_running_task_heartbeat_age_seconds") == 0, "nothing runs")
    }

    @Test("content negotiation: OpenMetrics only when accepted at least as much as text; text is the default")
    func negotiation() {
        #expect(OpenMetricsText.preferred(accept: "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"))
        #expect(OpenMetricsText.preferred(accept: "application/openmetrics-text"))
        #expect(!OpenMetricsText.preferred(accept: nil))
        #expect(!OpenMetricsText.preferred(accept: "*/*"))
        #expect(!OpenMetricsText.preferred(accept: "text/plain"))
        #expect(!OpenMetricsText.preferred(accept: "text/plain;q=1, application/openmetrics-text;q=0.5"))
        #expect(!OpenMetricsText.preferred(accept: "application/openmetrics-text;q=0"))
        let text = OpenMetricsText.render([MetricFamily(name: "flujo_x_total", help: "X.", kind: .counter, samples: [.init(name: "flujo_x_total", value: 2)])])
        #expect(text == "# TYPE flujo_x counter\n# HELP flujo_x X.\nflujo_x_total 2\n# EOF\n")
    }

    @Test("histograms are cumulative and +Inf equals _count")
    func histogramShape() async throws {
        let store = InMemoryStateStore()
        let events = EventMetrics()
        for latency in [0.0001, 0.003, 0.003, 0.2, 100] {
            try await events.handle(HookEvent(runID: "r", parentRunID: nil, taskID: nil, pipelineName: "p", pipelineVersion: "1", isBackground: false, unixNano: 0,
                payload: .postStep(.init(stepName: "s", stepIndex: 0, mode: .sync, success: true, attempts: 1, latencySeconds: latency, usage: Usage(), retries: []))))
        }
        let families = try await MetricsCollector(store: store, events: events).collect()
        let step = try #require(families.first { $0.name == "flujo_step_duration_seconds" })
        let buckets = step.samples.filter { $0.name.hasSuffix("_bucket") }.map(\.value)
        #expect(buckets == buckets.sorted(), "cumulative")
        #expect(buckets.last == 5)
        #expect(step.samples.first { $0.name.hasSuffix("_count") }?.value == 5)
        #expect(step.samples.first { $0.labels.contains { $0 == ("le", "0.005") } }?.value == 3)
    }

    @Test("event metrics follow the background policy of their registration; state gauges do not")
    func backgroundPolicy() async throws {
        let backgroundEvent = HookEvent(runID: "r_bg_x", parentRunID: "r", taskID: "x", pipelineName: "p", pipelineVersion: "1", isBackground: true, unixNano: 0,
            payload: .postStep(.init(stepName: "bg", stepIndex: 0, mode: .sync, success: true, attempts: 1, latencySeconds: 0.1, usage: Usage(), retries: [])))
        let skip = EventMetrics()
        let include = EventMetrics()
        let hooks = HookBus()
        hooks.register(skip, background: .skip)
        hooks.register(include, background: .include)
        try await hooks.emit(backgroundEvent)
        let store = InMemoryStateStore()
        try await store.save(WorkflowState(runID: "r_bg_x", pipelineName: "p", status: .failed, isBackgroundTask: true, parentRunID: "r", taskID: "x"))
        let skipped = PrometheusText.render(try await MetricsCollector(store: store, events: skip).collect())
        let included = PrometheusText.render(try await MetricsCollector(store: store, events: include).collect())
        #expect(!skipped.contains("step=\"bg\""))
        #expect(included.contains("flujo_step_duration_seconds_count{step=\"bg\"} 1"))
        #expect(skipped.contains("flujo_background_tasks_by_status{status=\"failed\"} 1"))
        #expect(included.contains("flujo_background_tasks_by_status{status=\"failed\"} 1"))
    }

    @Test("families are sorted and contiguous with HELP and TYPE; HELP and label values escaped")
    func textFormat() {
        let text = PrometheusText.render([
            MetricFamily(name: "b_total", help: "two\nlines \\ here", kind: .counter, samples: [.init(name: "b_total", labels: [("l", "a\"b\\c\nd")], value: 1.5)]),
            MetricFamily(name: "a", help: "first", kind: .gauge, samples: [.init(name: "a", value: 2), .init(name: "a", labels: [("x", "y")], value: .infinity)]),
        ])
        #expect(text == """
            # HELP a first
            # TYPE a gauge
            a 2
            a{x="y"} +Inf
            # HELP b_total two\\nlines \\\\ here
            # TYPE b_total counter
            b_total{l="a\\"b\\\\c\\nd"} 1.5

            """)
        #expect(PrometheusText.escapeLabelValue("a\"b\\c\nd") == #"a\"b\\c\nd"#)
        #expect(PrometheusText.escapeHelp("a\"b\\c\nd") == #"a"b\\c\nd"#)
        #expect(PrometheusText.escapeHelp("plain ☃") == "plain ☃")
    }

    @Test("values are written as the format writes them: integers without a fraction, at every length and sign")
    func valueFormat() {
        let values: [Double] = [0, -0.0, 7, 9, 10, 99, 100, 101, 123_456_789, -42, -1, 999_999_999_999_999, 1e15, -1e15, 0.25, -2.5, 1e-7, .nan, -.infinity]
        let text = PrometheusText.render([
            MetricFamily(name: "v", help: "values", kind: .gauge, samples: values.map { .init(name: "v", value: $0) }),
        ])
        let written = text.split(separator: "\n").filter { $0.hasPrefix("v ") }.map { String($0.dropFirst(2)) }
        #expect(written == values.map { PrometheusText.format($0) })
        #expect(PrometheusText.render([]) == "")
        #expect(OpenMetricsText.render([]) == "# EOF\n")
        #expect(written.prefix(12) == ["0", "0", "7", "9", "10", "99", "100", "101", "123456789", "-42", "-1", "999999999999999"])
        #expect(Array(written.suffix(7)) == ["1000000000000000.0", "-1000000000000000.0", "0.25", "-2.5", "1e-07", "NaN", "-Inf"], "\(written)")
        // The longest digits a Double has, written as `description` writes them.
        let long: [Double] = [0.1 + 0.2, -2.2250738585072014e-308, .greatestFiniteMagnitude, -.leastNonzeroMagnitude, 123.456, 1e300]
        let longText = PrometheusText.render([MetricFamily(name: "w", help: "long", kind: .gauge, samples: long.map { .init(name: "w", value: $0) })])
        #expect(longText.split(separator: "\n").filter { $0.hasPrefix("w ") }.map { String($0.dropFirst(2)) } == long.map { "\($0)" })
    }

    @Test("a taken port is a clear error; concurrent scrapes all succeed")
    func portTakenAndConcurrency() async throws {
        let store = InMemoryStateStore()
        let collector = MetricsCollector(store: store)
        let first = try await MetricsServer.start(port: 0, collector: collector)
        await #expect(throws: MetricsServerError.addressInUse(host: "127.0.0.1", port: first.port)) {
            _ = try await MetricsServer.start(port: first.port, collector: collector)
        }
        #expect(MetricsServerError.addressInUse(host: "127.0.0.1", port: 1).description.contains("already in use"))
        let statuses = try await withThrowingTaskGroup(of: Int32.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await TestSupport.run(URL(fileURLWithPath: "/usr/bin/env"), ["curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:\(first.port)/metrics"]).status
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses == Array(repeating: 0, count: 8))
        await first.stop()
    }
}

/// Counters a component exports, as the OTLP exporter does.
struct FixedCounters: CounterSource {
    func counterSamples() -> [CounterSample] {
        [
            CounterSample(name: "flujo_otlp_spans_dropped_total", help: "Spans not exported, by reason.", labels: ["reason": "queue_full"], value: 3),
            CounterSample(name: "flujo_otlp_spans_dropped_total", help: "Spans not exported, by reason.", labels: ["reason": "export_failed"], value: 4),
            CounterSample(name: "flujo_otlp_spans_exported_total", help: "Spans the OTLP receiver accepted.", value: 10),
        ]
    }
}

@Suite("Prometheus: other sources and odd text")
struct PrometheusSourcesTests {
    @Test("the exporter's counters appear as one family per name, with their labels")
    func counterSources() async throws {
        let families = try await MetricsCollector(store: InMemoryStateStore(), counterSources: [FixedCounters()]).collect()
        let dropped = try #require(families.first { $0.name == "flujo_otlp_spans_dropped_total" })
        #expect(dropped.kind == .counter)
        #expect(dropped.samples.count == 2)
        let text = PrometheusText.render(families)
        #expect(text.contains("flujo_otlp_spans_dropped_total{reason=\"export_failed\"} 4\n"))
        #expect(text.contains("flujo_otlp_spans_exported_total 10\n"))
    }

    @Test("a label value from invalid UTF-8 bytes is rendered as valid text that the reference parser reads")
    func invalidUTF8() async throws {
        let name = String(decoding: [0x66, 0xFF, 0xFE, 0x22, 0x5C, 0x0A, 0x78], as: UTF8.self)
        let events = EventMetrics()
        try await events.handle(HookEvent(runID: "r", parentRunID: nil, taskID: nil, pipelineName: "p", pipelineVersion: "1", isBackground: false, unixNano: 0,
            payload: .postStep(.init(stepName: name, stepIndex: 0, mode: .sync, success: true, attempts: 1, latencySeconds: 0.01, usage: Usage(), retries: []))))
        let server = try await MetricsServer.start(port: 0, collector: MetricsCollector(store: InMemoryStateStore(), events: events))
        let result = try await scrape(server)
        await server.stop()
        #expect(value(result, "flujo_step_duration_seconds", "flujo_step_duration_seconds_count", ["step": name]) == 1)
        #expect(name.contains("\u{FFFD}"))
    }
}

@Suite("The /metrics server under slow and idle clients")
struct MetricsServerLimitsTests {
    static func clients(_ server: MetricsServer, count: Int, mode: String) async throws -> (closed: Int, longest: Double) {
        let python = try #require(TestSupport.python, "no Python: run `make test`")
        let output = try await TestSupport.run(python, [TestSupport.supportScript("slow_clients.py").path, "127.0.0.1", String(server.port), String(count), mode])
        #expect(output.status == 0, "\(output.stderr)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any])
        return ((result["closed"] as? Int) ?? 0, (result["longest_seconds"] as? Double) ?? 99)
    }

    @Test("unfinished requests and idle keep-alives are closed after their timeouts; past the cap, connections are closed at once and counted")
    func limits() async throws {
        let store = InMemoryStateStore()
        let limits = MetricsServer.Limits(requestTimeout: .milliseconds(400), idleTimeout: .milliseconds(400), maxConnections: 30)
        let server = try await MetricsServer.start(host: "127.0.0.1", port: 0, collector: MetricsCollector(store: store), limits: limits)
        let slowloris = try await Self.clients(server, count: 20, mode: "partial")
        #expect(slowloris.closed == 20, "all closed by the server within the client's 30 s wait: \(slowloris)")
        let idle = try await Self.clients(server, count: 10, mode: "idle")
        #expect(idle.closed == 10, "\(idle)")
        // 45 silent clients against a cap of 30: 15 are closed at once, the rest after the request timeout.
        let crowd = try await Self.clients(server, count: 45, mode: "silent")
        #expect(crowd.closed == 45, "\(crowd)")
        let result = try await scrape(server)
        #expect(value(result, "flujo_metrics_connections_closed", "flujo_metrics_connections_closed_total", ["reason": "over_limit"]) ?? 0 >= 15)
        #expect(value(result, "flujo_metrics_connections_closed", "flujo_metrics_connections_closed_total", ["reason": "timeout"]) ?? 0 >= 30)
        await server.stop()
    }

    @Test("IPv6 addresses are printed in brackets; loopback is told apart from addresses others can reach")
    func addresses() async throws {
        #expect(MetricsServer.authority(host: "::1", port: 9464) == "[::1]:9464")
        #expect(MetricsServer.authority(host: "127.0.0.1", port: 1) == "127.0.0.1:1")
        #expect(MetricsServer.isLoopback("127.0.0.1") && MetricsServer.isLoopback("::1") && MetricsServer.isLoopback("localhost"))
        #expect(!MetricsServer.isLoopback("0.0.0.0") && !MetricsServer.isLoopback("::"))
        let server = try await MetricsServer.start(host: "::1", port: 0, collector: MetricsCollector(store: InMemoryStateStore()))
        #expect(server.url == "http://[::1]:\(server.port)/metrics")
        await server.stop()
    }
}
