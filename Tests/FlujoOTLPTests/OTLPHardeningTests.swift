import Flujo
import FlujoOTLP
import FlujoTestSupport
import Foundation
import Testing
import W3CTraceContext
import FlujoSQLite

/// Endpoints, headers and secrets as an attacker or an unlucky operator gives them.
@Suite("OTLP settings an attacker can give")
struct OTLPHardeningTests {
    static func load(toml: String? = nil, environment: [String: String]) throws -> LoadedSettings {
        guard let toml else { return try SettingsLoader.load(environment: environment) }
        let path = TestSupport.temporaryDirectory("flujo-otlp-settings").appendingPathComponent("flujo.toml").path
        try toml.write(toFile: path, atomically: true, encoding: .utf8)
        return try SettingsLoader.load(file: path, environment: environment)
    }

    @Test("only http and https endpoints: others are an error in the file and a warning in the environment", arguments: [
        "file:///etc/passwd", "gopher://127.0.0.1:70/x", "dict://127.0.0.1:11211/stat", "ftp://127.0.0.1/x", "not-a-url", "http://", "http://a\r\nb:1",
    ])
    func endpoints(endpoint: String) throws {
        #expect(throws: SettingsError.self) { try Self.load(toml: "[telemetry.otlp]\nendpoint = \(endpoint.debugDescription)\n", environment: [:]) }
        let loaded = try Self.load(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": endpoint])
        #expect(loaded.settings.telemetry.otlp.endpoint == "http://localhost:4318", "the default stays")
        #expect(loaded.warnings.count == 1 && loaded.warnings[0].hasPrefix("OTEL_EXPORTER_OTLP_ENDPOINT: "), "\(loaded.warnings)")
        #expect(OTLPRules.endpointProblem(endpoint) != nil)
        let traces = try Self.load(environment: ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint])
        #expect(traces.settings.telemetry.otlp.tracesEndpoint == nil && traces.warnings.count == 1)
    }

    @Test("good endpoints load; a password in one is never shown")
    func goodEndpoints() throws {
        for endpoint in ["http://collector:4318", "https://otel.example.com", "HTTPS://[::1]:4318/prefix"] {
            #expect(try Self.load(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": endpoint]).warnings.isEmpty, "\(endpoint)")
        }
        let loaded = try Self.load(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:pw-secret@collector:4318"])
        #expect(loaded.settings.telemetry.otlp.endpoint == "http://user:pw-secret@collector:4318", "sent as given")
        #expect(loaded.effective.allSatisfy { !$0.value.contains("pw-secret") })
        #expect(loaded.effective.contains { $0.value == "http://***@collector:4318" })
        #expect(OTLPRules.redactedURL("https://a:b@h/p@q") == "https://***@h/p@q")
        #expect(OTLPRules.redactedURL("http://h:1/x") == "http://h:1/x")
    }

    @Test("headers: CR, LF and other control characters, raw or percent-encoded, and bad names are refused; values never shown", arguments: [
        "x-a=ok\r\nInjected: 1", "x-a=ok%0D%0AInjected: 1", "x-a=a%00b", "bad name=v", "x:y=v", "authorization=Bearer SECRET,garbage",
    ])
    func headers(variable: String) throws {
        let loaded = try Self.load(environment: ["OTEL_EXPORTER_OTLP_HEADERS": variable])
        #expect(loaded.settings.telemetry.otlp.headers.isEmpty, "no header is kept from a refused value")
        #expect(loaded.warnings.count == 1, "\(loaded.warnings)")
        #expect(!loaded.warnings.joined().contains("Injected") && !loaded.warnings.joined().contains("SECRET"), "\(loaded.warnings)")
    }

    @Test("fuzzed header variables: whatever is kept is a token name and a value with no control character; no value is ever shown")
    func fuzzedHeaders() throws {
        var random = SeededRandomNumberGenerator(seed: 99)
        let pieces = ["a", "x-k", "=", ",", " ", "\r", "\n", "\r\n", "%0D", "%0a", "%00", "%", "%zz", "\u{0}", "\u{1B}[2J", "é", "=SEKRET", "\t", ":", ";", "Bearer"]
        for _ in 0..<2000 {
            let text = (0..<Int(random.next() % 12)).map { _ in pieces[Int(random.next() % UInt64(pieces.count))] }.joined()
            let loaded = try Self.load(environment: ["OTEL_EXPORTER_OTLP_HEADERS": text])
            for (name, value) in loaded.settings.telemetry.otlp.headers {
                #expect(OTLPRules.headerProblem(name: name, value: value) == nil, "\(text.debugDescription) kept \(name.debugDescription)")
            }
            #expect(!loaded.warnings.joined().contains("SEKRET"), "\(text.debugDescription): \(loaded.warnings)")
        }
    }

    @Test("a header with CR LF in flujo.toml is an error naming the header, not its value")
    func headerInFile() throws {
        #expect { try Self.load(toml: "[telemetry.otlp]\nheaders = { x-a = \"v\\r\\nInjected: SECRET\" }\n", environment: [:]) } throws: { error in
            let text = "\(error)"
            return text.contains("x-a") && text.contains("control characters") && !text.contains("SECRET")
        }
        let good = try Self.load(toml: "[telemetry.otlp]\nheaders = { authorization = \"Bearer abc\", x-tenant = \"t 1\" }\n", environment: [:])
        #expect(good.settings.telemetry.otlp.headers == ["authorization": "Bearer abc", "x-tenant": "t 1"])
    }

    @Test("settings made in code: a header that could inject a line is not sent; a non-HTTP endpoint is not fetched")
    func fromCode() async throws {
        let receiver = try await Receiver()
        let exporter = OTLPExporter(settings: otlpSettings(receiver.endpoint) { settings in
            settings.scheduleDelayMs = 600_000
            settings.headers = ["x-good": "yes", "x-bad": "v\r\nInjected: 1"]
        }, serviceName: "s")
        exporter.onEnd(TraceSpan(traceID: Array(repeating: 1, count: 16), spanID: Array(repeating: 2, count: 8), parentSpanID: nil, runID: "r", name: "n", startUnixNano: 1, endUnixNano: 2, attributes: [], events: [], status: .ok, statusMessage: nil, isBackground: false))
        #expect(exporter.forceFlush(timeout: .seconds(30)))
        exporter.shutdown()
        let (requests, _) = try await receiver.decoded()
        await receiver.stop()
        let headers = try #require(requests.first?["headers"] as? [String: String])
        #expect(headers["x-good"] == "yes")
        #expect(headers["x-bad"] == nil && headers["Injected"] == nil)

        var local = OTLPSettings()
        local.endpoint = "file:///etc/hostname"
        local.tracesEndpoint = "file:///etc/hostname"
        local.exportTimeoutMs = 500
        let fileExporter = OTLPExporter(settings: local, serviceName: "s")
        fileExporter.onEnd(TraceSpan(traceID: Array(repeating: 1, count: 16), spanID: Array(repeating: 3, count: 8), parentSpanID: nil, runID: "r", name: "n", startUnixNano: 1, endUnixNano: 2, attributes: [], events: [], status: .ok, statusMessage: nil, isBackground: false))
        fileExporter.forceFlush(timeout: .seconds(10))
        fileExporter.shutdown(timeout: .seconds(1))
        #expect(fileExporter.statistics.exported == 0 && fileExporter.statistics.failedExports == 1, "libcurl refuses the file: protocol")
    }
}

@Suite("Trace context in")
struct TraceContextInTests {
    static let traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @Test("a run given a W3C traceparent exports only spans of that trace, its root a child of the given span (decoded by opentelemetry-proto)")
    func exported() async throws {
        let receiver = try await Receiver()
        let exporter = OTLPExporter(settings: otlpSettings(receiver.endpoint) { $0.scheduleDelayMs = 600_000 }, serviceName: "s")
        let store = try SQLiteStateStore(path: TestSupport.temporaryDirectory("flujo-tracein").appendingPathComponent("s.db").path)
        let (runner, spans) = tracedRunner(store: store, exporter: exporter, background: .include)
        let context = try TraceContext(traceParentHeaderValue: Self.traceParent, traceStateHeaderValue: "vendor=abc")
        let result = try await runner.run(Pipeline(name: "orders", steps: [.run(validate), .background(receipt)]), input: Order(id: "o1"), trace: context)
        for id in result.backgroundTaskIDs {
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline, try await store.loadTask(taskID: id)?.status == .running { try await Task.sleep(for: .milliseconds(5)) }
        }
        await runner.close()
        await spans.close()
        #expect(exporter.forceFlush(timeout: .seconds(30)))
        let (_, decoded) = try await receiver.decoded()
        await receiver.stop()
        exporter.shutdown()
        #expect(decoded.count == 5)
        #expect(decoded.allSatisfy { $0["trace_id"] as? String == "4bf92f3577b34da6a3ce929d0e0e4736" }, "\(decoded.map { $0["trace_id"] ?? "?" })")
        let root = try #require(decoded.first { $0["name"] as? String == "pipeline_run" && ($0["parent_span_id"] as? String) == "00f067aa0ba902b7" })
        #expect(attributes(root)["flujo.run_id"] as? String == result.runID)
        let stored = try await store.spans(runID: result.runID)
        #expect(stored.count == 5 && stored.allSatisfy { $0.traceID == "4bf92f3577b34da6a3ce929d0e0e4736" })
    }

    @Test("TRACEPARENT in the environment is read as OTEL_PROPAGATORS allows; a malformed one is ignored with a warning")
    func environment() throws {
        let good = try SettingsLoader.load(environment: ["TRACEPARENT": Self.traceParent, "TRACESTATE": "k=v"])
        #expect(good.trace?.traceParentHeaderValue == Self.traceParent)
        #expect(good.trace?.traceStateHeaderValue == "k=v")
        #expect(good.warnings.isEmpty)
        #expect(try SettingsLoader.load(environment: ["TRACEPARENT": Self.traceParent, "OTEL_PROPAGATORS": "none"]).trace == nil, "OTEL_PROPAGATORS=none: nothing propagated")
        #expect(try SettingsLoader.load(environment: ["TRACEPARENT": Self.traceParent, "OTEL_PROPAGATORS": "baggage"]).trace == nil)
        #expect(try SettingsLoader.load(environment: ["TRACEPARENT": Self.traceParent, "OTEL_PROPAGATORS": "tracecontext,baggage"]).trace != nil)
        let b3 = try SettingsLoader.load(environment: ["TRACEPARENT": Self.traceParent, "OTEL_PROPAGATORS": "b3,tracecontext"])
        #expect(b3.trace != nil && b3.warnings == ["OTEL_PROPAGATORS: b3 not supported (only tracecontext, baggage and none); ignored"])
        for bad in ["garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"] {
            let loaded = try SettingsLoader.load(environment: ["TRACEPARENT": bad])
            #expect(loaded.trace == nil)
            #expect(loaded.warnings.count == 1 && loaded.warnings[0].hasPrefix("TRACEPARENT:"), "\(bad): \(loaded.warnings)")
        }
    }
}
