import Flujo
import FlujoOTLP
import FlujoTestSupport
import Foundation
import Testing

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
        var settings = OTLPSettings()
        settings.enabled = true
        settings.endpoint = receiver.endpoint
        settings.scheduleDelayMs = 600_000
        settings.headers = ["x-good": "yes", "x-bad": "v\r\nInjected: 1"]
        let exporter = OTLPExporter(settings: settings, serviceName: "s")
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
