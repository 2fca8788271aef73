import Flujo
import FlujoOTLP
import FlujoSQLite
import FlujoTestSupport
import FlujoTesting
import Foundation
import Logging
import Synchronization
import Testing

/// A real local OTLP/HTTP receiver (Python's http.server) answering a script of responses.
final class Receiver: Sendable {
    let folder: URL
    let port: Int
    private let process: RunningProcess

    init(script: String = "200", port requested: Int = 0) async throws {
        let python = try #require(TestSupport.python, "no Python with opentelemetry-proto: run `make test`")
        folder = TestSupport.temporaryDirectory("flujo-receiver")
        process = try RunningProcess(python, [TestSupport.supportScript("otlp_receiver.py").path, folder.path, script, String(requested)])
        let started = await process.waitForLine { Int($0) != nil }
        try #require(started, "the receiver did not start")
        self.port = Int(process.linesSoFar.first { Int($0) != nil }!)!
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    /// Requests received so far and their spans, decoded by opentelemetry-proto.
    func decoded() async throws -> (requests: [[String: Any]], spans: [[String: Any]]) {
        let python = try #require(TestSupport.python)
        let output = try await TestSupport.run(python, [TestSupport.supportScript("otlp_decode.py").path, "dir", folder.path])
        #expect(output.status == 0, "\(output.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any])
        return (object["requests"] as? [[String: Any]] ?? [], object["spans"] as? [[String: Any]] ?? [])
    }

    func stop() async { await process.kill() }
}

func otlpSettings(_ endpoint: String, _ change: (inout OTLPSettings) -> Void = { _ in }) -> OTLPSettings {
    var settings = OTLPSettings()
    settings.enabled = true
    settings.endpoint = endpoint
    settings.scheduleDelayMs = 50
    change(&settings)
    return settings
}

struct Order: Codable, Sendable { var id: String }

let validate = Step<Order, Order>("validate") { order, context in
    try context.reportUsage(costUSD: 0.5, tokens: 7)
    return order
}
let receipt = Step<Order, String>("send_receipt") { order, _ in "receipt \(order.id)" }
let failing = Step<Order, Order>("charge") { _, _ in throw URLError(.cannotConnectToHost) }

func run(_ steps: [PipelineStep], exporter: OTLPExporter, background: BackgroundPolicy = .skip, quota: Quota? = nil) async throws -> (PipelineResult, Runner) {
    let store = try SQLiteStateStore(path: TestSupport.temporaryDirectory().appendingPathComponent("s.db").path)
    let (runner, spans) = tracedRunner(store: store, exporter: exporter, background: background)
    let result = try await runner.run(Pipeline(name: "orders", version: "7", steps: steps), input: Order(id: "o1"), quota: quota)
    await runner.close()
    await spans.close()
    return (result, runner)
}

/// A runner whose spans are kept in `store` and exported as `background` admits.
func tracedRunner(store: SQLiteStateStore, exporter: OTLPExporter, background: BackgroundPolicy = .skip) -> (Runner, SpanPipeline) {
    let hooks = HookBus()
    let spans = SpanPipeline(hooks: hooks, store: store, exporters: [SpanDestination(exporter, background: background)])
    return (Runner(store: store, hooks: hooks), spans)
}

func attributes(_ span: [String: Any]) -> [String: Any] { span["attributes"] as? [String: Any] ?? [:] }

/// What one export round produced.
struct ExportRound {
    var requests: [[String: Any]]
    var spans: [[String: Any]]
    var exporter: OTLPExporter
    var flushed: Bool
}

/// Runs `steps` with an exporter pointed at a receiver answering `script`,
/// flushes, decodes what arrived, and stops both.
func exportRound(
    script: String = "200", background: BackgroundPolicy = .skip, steps: [PipelineStep] = [.run(validate)],
    flushTimeout: Duration = .seconds(30), _ change: (inout OTLPSettings) -> Void = { _ in }
) async throws -> ExportRound {
    let receiver = try await Receiver(script: script)
    // Only the flush exports, so every span of the run travels in one request.
    let exporter = OTLPExporter(settings: otlpSettings(receiver.endpoint) { settings in
        settings.scheduleDelayMs = 600_000
        change(&settings)
    }, serviceName: "s")
    _ = try await run(steps, exporter: exporter, background: background)
    let flushed = exporter.forceFlush(timeout: flushTimeout)
    let (requests, spans) = try await receiver.decoded()
    await receiver.stop()
    exporter.shutdown()
    return ExportRound(requests: requests, spans: spans, exporter: exporter, flushed: flushed)
}

/// Seconds between two received requests.
func gap(_ requests: [[String: Any]], _ first: Int, _ second: Int) -> Double {
    (requests[second]["time"] as! Double) - (requests[first]["time"] as! Double)
}

@Suite("OTLP exporter against a real receiver")
struct OTLPExporterTests {
    @Test("spans arrive as one trace: root pipeline_run, a child per step, background under its launch step, tagged")
    func spanTree() async throws {
        let receiver = try await Receiver()
        let exporter = OTLPExporter(settings: otlpSettings(receiver.endpoint), serviceName: "orders-service", serviceVersion: "1.2.3")
        let (result, _) = try await run([.run(validate), .background(receipt)], exporter: exporter, background: .include, quota: Quota(costUSD: 10, tokens: 1000))
        #expect(exporter.forceFlush(timeout: .seconds(10)))
        let (requests, spans) = try await receiver.decoded()
        await receiver.stop()
        exporter.shutdown()

        #expect(spans.count == 5, "root, validate, launch, background run, background step: \(spans.map { $0["name"] ?? "" })")
        #expect(Set(spans.map { $0["trace_id"] as! String }).count == 1, "one trace")
        #expect(spans.allSatisfy { ($0["trace_id"] as! String).count == 32 && ($0["span_id"] as! String).count == 16 })
        let roots = spans.filter { ($0["parent_span_id"] as! String).isEmpty }
        #expect(roots.count == 1)
        let root = try #require(roots.first)
        #expect(root["name"] as? String == "pipeline_run")
        #expect(attributes(root)["flujo.run_id"] as? String == result.runID)
        #expect(attributes(root)["flujo.pipeline.name"] as? String == "orders")
        #expect(attributes(root)["flujo.pipeline.version"] as? String == "7")
        #expect(attributes(root)["flujo.budget.initial_cost_usd"] as? Double == 10)
        #expect(attributes(root)["flujo.budget.initial_tokens"] as? Int == 1000)
        #expect(root["status_code"] as? Int == 1)

        let step = try #require(spans.first { $0["name"] as? String == "validate" })
        #expect(step["parent_span_id"] as? String == root["span_id"] as? String)
        #expect(attributes(step)["flujo.step.type"] as? String == "sync")
        #expect(attributes(step)["flujo.attempt_number"] as? Int == 1)
        #expect(attributes(step)["flujo.budget.actual_cost_usd"] as? Double == 0.5)
        #expect(attributes(step)["flujo.budget.actual_tokens"] as? Int == 7)
        #expect(attributes(step)["flujo.budget.quota_before_usd"] as? Double == 10)
        #expect(attributes(step)["success"] as? Bool == true)
        #expect(attributes(step)["flujo.is_background"] == nil)

        let launch = try #require(spans.first { $0["name"] as? String == "send_receipt" && $0["parent_span_id"] as? String == root["span_id"] as? String })
        #expect(attributes(launch)["flujo.is_background"] as? Bool == true)
        #expect(attributes(launch)["flujo.step.type"] as? String == "background")
        let taskID = try #require(result.backgroundTaskIDs.first)
        #expect(attributes(launch)["flujo.task_id"] as? String == taskID)
        let backgroundRun = try #require(spans.first { $0["name"] as? String == "pipeline_run" && $0["parent_span_id"] as? String == launch["span_id"] as? String })
        #expect(attributes(backgroundRun)["flujo.is_background"] as? Bool == true)
        #expect(attributes(backgroundRun)["flujo.parent_run_id"] as? String == result.runID)
        #expect(attributes(backgroundRun)["flujo.task_id"] as? String == taskID)
        let backgroundStep = try #require(spans.first { $0["parent_span_id"] as? String == backgroundRun["span_id"] as? String })
        #expect(attributes(backgroundStep)["flujo.is_background"] as? Bool == true)

        // Wall-clock nanoseconds.
        let now = UInt64(Date().timeIntervalSince1970 * 1e9)
        for span in spans {
            let start = try #require((span["start"] as? NSNumber)?.uint64Value)
            let end = try #require((span["end"] as? NSNumber)?.uint64Value)
            #expect(start <= end && now - start < 60_000_000_000)
        }

        let request = try #require(requests.first)
        let headers = try #require(request["headers"] as? [String: String])
        #expect(request["path"] as? String == "/v1/traces")
        #expect(headers["Content-Type"] == "application/x-protobuf")
        #expect(headers["User-Agent"]?.hasPrefix("flujo-swift-otlp-exporter/") == true)
        let resource = try #require((request["resources"] as? [[String: Any]])?.first)
        #expect(resource["service.name"] as? String == "orders-service")
        #expect(resource["service.version"] as? String == "1.2.3")
        #expect(resource["telemetry.sdk.language"] as? String == "swift")
    }

    @Test("with the skip policy no background span reaches the exporter; the store keeps them all")
    func skipPolicy() async throws {
        let round = try await exportRound(steps: [.run(validate), .background(receipt)])
        #expect(round.spans.map { $0["name"] as! String }.sorted() == ["pipeline_run", "validate"])
        #expect(round.spans.allSatisfy { attributes($0)["flujo.is_background"] == nil })
        #expect(round.exporter.statistics.exported == 2)
    }

    @Test("a failed step is status ERROR with its message and category; a retry is an event")
    func failureAndRetryEvents() async throws {
        let round = try await exportRound(steps: [.run(failing, retry: RetryPolicy(maxAttempts: 2, baseDelay: .milliseconds(1)))])
        let step = try #require(round.spans.first { $0["name"] as? String == "charge" })
        #expect(step["status_code"] as? Int == 2)
        #expect((step["status_message"] as? String)?.isEmpty == false)
        #expect(attributes(step)["flujo.error.category"] as? String == "network")
        #expect(step["events"] as? [String] == ["flujo.retry"])
        let root = try #require(round.spans.first { $0["name"] as? String == "pipeline_run" })
        #expect(root["status_code"] as? Int == 2)
    }

    @Test("gzip: the body is gzip-compressed with Content-Encoding: gzip and decodes")
    func gzip() async throws {
        let round = try await exportRound { $0.compression = "gzip" }
        #expect(round.requests.first?["gzipped"] as? Bool == true)
        #expect((round.requests.first?["headers"] as? [String: String])?["Content-Encoding"] == "gzip")
        #expect(round.spans.count == 2)
    }

    @Test("503 with Retry-After: 1, then 200: delivered once, after the wait, with the same body")
    func retryAfterSeconds() async throws {
        let round = try await exportRound(script: "503+ra1,200")
        #expect(round.flushed)
        #expect(round.requests.count == 2)
        #expect(gap(round.requests, 0, 1) >= 0.95, "waited \(gap(round.requests, 0, 1)) s")
        #expect(round.spans.count == 4, "the same two spans in both requests")
        let stats = round.exporter.statistics
        #expect(stats.exported == 2)
        #expect(stats.retries == 1)
        #expect(stats.failedExports == 0)
    }

    @Test("Retry-After as an HTTP date is honoured")
    func retryAfterDate() async throws {
        let round = try await exportRound(script: "429+radate,200")
        #expect(round.flushed)
        #expect(round.requests.count == 2)
        #expect(gap(round.requests, 0, 1) >= 0.9, "waited \(gap(round.requests, 0, 1)) s")
    }

    @Test("400 is not retried: one request, the batch counted as failed")
    func badRequest() async throws {
        let round = try await exportRound(script: "400")
        #expect(round.requests.count == 1)
        let stats = round.exporter.statistics
        #expect(stats.failedExports == 1)
        #expect(stats.droppedExportFailed == 2)
        #expect(stats.retries == 0)
    }

    @Test("a partial success is counted and not retried")
    func partialSuccess() async throws {
        let round = try await exportRound(script: "200+partial")
        #expect(round.requests.count == 1)
        #expect(round.exporter.statistics.rejected == 1)
        #expect(round.exporter.statistics.exported == 1)
        #expect(round.exporter.counterSamples().contains { $0.name == "flujo_otlp_spans_dropped_total" && $0.labels["reason"] == "rejected" && $0.value == 1 })
    }

    @Test("a receiver's partial-success message is logged escaped and cut: no forged line, no terminal escape, no 100 KB line")
    func hostilePartialSuccess() async throws {
        let receiver = try await Receiver(script: "200+hostile")
        let logs = RecordingLogs()
        let exporter = OTLPExporter(settings: otlpSettings(receiver.endpoint) { $0.scheduleDelayMs = 600_000 }, serviceName: "s", logger: logs.logger)
        _ = try await run([.run(validate)], exporter: exporter)
        #expect(exporter.forceFlush(timeout: .seconds(30)))
        await receiver.stop()
        exporter.shutdown()
        #expect(exporter.statistics.rejected == 1)
        let line = try #require(logs.messages(at: .warning).first { $0.contains("OTLP receiver rejected 1 span(s)") })
        #expect(line.hasPrefix("OTLP receiver rejected 1 span(s): too old\\n2026-01-01 error FORGED\\u{1B}[2J"), "\(line.prefix(120))")
        #expect(!line.contains("\n") && !line.unicodeScalars.contains { $0.value == 0x1B })
        #expect(line.hasSuffix("… (99523 more characters)"), "\(line.suffix(60))")
        #expect(line.count < 700)
    }

    @Test("a receiver rejecting part of every export: every rejected span counted, one line for the streak, not one per export")
    func repeatedPartialSuccess() async throws {
        let receiver = try await Receiver(script: "200+partial")
        let logs = RecordingLogs()
        // One span an export: ten runs of two spans are twenty exports, each partly rejected.
        let exporter = OTLPExporter(
            settings: otlpSettings(receiver.endpoint) { $0.scheduleDelayMs = 600_000; $0.maxExportBatchSize = 1 }, serviceName: "s", logger: logs.logger)
        for _ in 0..<10 {
            _ = try await run([.run(validate)], exporter: exporter)
            #expect(exporter.forceFlush(timeout: .seconds(30)))
        }
        let (requests, _) = try await receiver.decoded()
        await receiver.stop()
        exporter.shutdown()
        #expect(requests.count == 20)
        #expect(exporter.statistics.rejected == 20, "every rejected span is counted")
        let lines = logs.messages(at: .warning).filter { $0.hasPrefix("OTLP receiver rejected") }
        #expect(lines == ["OTLP receiver rejected 1 span(s): span too old"], "\(lines)")
    }

    @Test("receiver down: runs finish, the queue stays bounded, every dropped span is counted")
    func receiverDown() async throws {
        // A port with nothing listening: connection refused on every try.
        let exporter = OTLPExporter(settings: otlpSettings("http://127.0.0.1:9") { settings in
            settings.maxQueueSize = 10
            settings.maxExportBatchSize = 5
            settings.exportTimeoutMs = 300
        }, serviceName: "s")
        let store = try SQLiteStateStore(path: TestSupport.temporaryDirectory().appendingPathComponent("s.db").path)
        let (runner, _) = tracedRunner(store: store, exporter: exporter)
        for _ in 0..<50 {
            let result = try await runner.run(Pipeline(name: "p", steps: [.run(validate)]), input: Order(id: "o"))
            #expect(result.status == .completed)
        }
        await runner.close()
        #expect(exporter.statistics.queued <= 10)
        exporter.forceFlush(timeout: .seconds(30))
        let stats = exporter.statistics
        #expect(stats.exported == 0)
        #expect(stats.droppedQueueFull + stats.droppedExportFailed == 100, "every one of the 100 spans is accounted for: \(stats)")
        #expect(stats.droppedQueueFull > 0)
        #expect(stats.failedExports > 0)
        exporter.shutdown()
    }

    @Test("a receiver that never answers: the run returns while the export is still in flight")
    func runsDoNotWait() async throws {
        let receiver = try await Receiver(script: "slow600000")
        let exporter = OTLPExporter(settings: otlpSettings(receiver.endpoint) { settings in
            settings.exportTimeoutMs = 120_000
            settings.timeoutMs = 120_000
            settings.scheduleDelayMs = 1
        }, serviceName: "s")
        let (result, _) = try await run([.run(validate)], exporter: exporter)
        #expect(result.status == .completed)
        // Wait until the request has reached the receiver, then look: nothing exported, nothing failed.
        let deadline = ContinuousClock.now + .seconds(30)
        while try await receiver.decoded().requests.isEmpty && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let stats = exporter.statistics
        #expect(stats.exported == 0 && stats.failedExports == 0, "the export is still in flight after the run returned: \(stats)")
        await receiver.stop()
    }

    @Test("a slow receiver past the export timeout: the export fails and is counted")
    func slowReceiver() async throws {
        let round = try await exportRound(script: "slow1500", flushTimeout: .seconds(10)) { settings in
            settings.exportTimeoutMs = 300
            settings.timeoutMs = 300
        }
        #expect(round.exporter.statistics.failedExports >= 1)
        #expect(round.exporter.statistics.exported == 0)
        #expect(round.exporter.statistics.droppedExportFailed == 2)
    }

    @Test("collector down, then back: runs go on, drops are counted and bounded, export resumes")
    func collectorDownThenBack() async throws {
        // Reserve a free port, then leave it closed: the collector is down.
        let probe = try await Receiver()
        let port = probe.port
        await probe.stop()
        let logs = RecordingLogs()
        let exporter = OTLPExporter(settings: otlpSettings("http://flujo:secretpw@127.0.0.1:\(port)") { settings in
            settings.maxQueueSize = 8
            settings.maxExportBatchSize = 4
            settings.exportTimeoutMs = 200
            settings.headers = ["authorization": "Bearer SECRET-TOKEN"]
        }, serviceName: "s", logger: logs.logger)
        let store = try SQLiteStateStore(path: TestSupport.temporaryDirectory().appendingPathComponent("s.db").path)
        let (runner, _) = tracedRunner(store: store, exporter: exporter)
        for _ in 0..<20 {
            #expect(try await runner.run(Pipeline(name: "p", steps: [.run(validate)]), input: Order(id: "o")).status == .completed)
            #expect(exporter.statistics.queued <= 8, "memory stays bounded by the queue size")
        }
        exporter.forceFlush(timeout: .seconds(30))
        let down = exporter.statistics
        #expect(down.exported == 0)
        #expect(down.droppedQueueFull + down.droppedExportFailed == 40, "every span is accounted for: \(down)")
        #expect(down.failedExports > 1)
        let failing = logs.messages(at: .warning).filter { $0.contains("is failing") }
        #expect(failing.count == 1, "one warning for the whole failure streak: \(logs.messages(at: .warning))")
        #expect(failing.first?.contains("http://***@127.0.0.1") == true)
        // The collector comes back on the same port.
        let back = try await Receiver(script: "200", port: port)
        for _ in 0..<3 {
            _ = try await runner.run(Pipeline(name: "p", steps: [.run(validate)]), input: Order(id: "o"))
        }
        #expect(exporter.forceFlush(timeout: .seconds(30)))
        #expect(exporter.statistics.exported == 6, "export resumed: \(exporter.statistics)")
        #expect(try await back.decoded().spans.count == 6)
        #expect(logs.messages(at: .warning).filter { $0.contains("recovered after") }.count == 1)
        let leaks = logs.all.filter { $0.contains("secretpw") || $0.contains("SECRET-TOKEN") }
        #expect(leaks.isEmpty, "no password or header value in any log line, at any level: \(leaks)")
        await back.stop()
        await runner.close()
        exporter.shutdown()
    }

    @Test("a storm of 503 and 429 with Retry-After is honoured: delivered once, after the waits")
    func retryStorm() async throws {
        let round = try await exportRound(script: "503+ra1,429+ra1,503+ra1,200")
        #expect(round.flushed)
        #expect(round.requests.count == 4)
        #expect((0..<3).allSatisfy { gap(round.requests, $0, $0 + 1) >= 0.95 }, "each Retry-After was waited")
        #expect(round.exporter.statistics.exported == 2)
        #expect(round.exporter.statistics.retries == 3)
    }
}
