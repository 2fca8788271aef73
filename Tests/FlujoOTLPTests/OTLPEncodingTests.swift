import Flujo
import FlujoOTLP
import FlujoTestSupport
import Foundation
import Testing

/// Decodes bytes with the reference `opentelemetry-proto` package and returns its JSON view.
func referenceDecode(_ bytes: [UInt8]) async throws -> [String: Any] {
    let python = try #require(TestSupport.python, "no Python with opentelemetry-proto: run `make test` (it creates .build/venv) or set FLUJO_TEST_PYTHON")
    let file = TestSupport.temporaryDirectory("flujo-otlp").appendingPathComponent("request.bin")
    try Data(bytes).write(to: file)
    let result = try await TestSupport.run(python, [TestSupport.supportScript("otlp_decode.py").path, "request", file.path])
    #expect(result.status == 0, "decoder failed: \(result.stderr)")
    let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
    return try #require(object)
}

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

@Suite("OTLP protobuf encoding against the reference decoder")
struct OTLPEncodingTests {
    let traceID: [UInt8] = Array(1...16)
    let rootID: [UInt8] = [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8]
    let childID: [UInt8] = [0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8]

    func sampleSpans() -> [OTLPSpan] {
        let root = OTLPSpan(
            traceID: traceID, spanID: rootID, name: "pipeline_run",
            startTimeUnixNano: 1_764_000_000_000_000_001, endTimeUnixNano: 1_764_000_000_500_000_000,
            attributes: [
                OTLPAttribute("flujo.run_id", .string("run-1")),
                OTLPAttribute("flujo.budget.initial_tokens", .int(10_000)),
                OTLPAttribute("flujo.budget.initial_cost_usd", .double(1.5)),
                OTLPAttribute("flujo.is_background", .bool(false)),
                OTLPAttribute("raw", .bytes([0, 255, 7])),
                OTLPAttribute("nested", .array([.string("a"), .int(-2), .keyValues([OTLPAttribute("deep", .array([.bool(true)]))])])),
            ],
            status: OTLPStatus(code: .ok))
        let child = OTLPSpan(
            traceID: traceID, spanID: childID, parentSpanID: rootID, name: "charge \"card\"\n",
            startTimeUnixNano: 1_764_000_000_100_000_000, endTimeUnixNano: 1_764_000_000_200_000_000,
            attributes: [OTLPAttribute("flujo.attempt_number", .int(2)), OTLPAttribute("unicode", .string("ünïcødé ✓")),
                         OTLPAttribute("from bad bytes", .string(String(decoding: [0x61, 0xFF, 0x22, 0x5C, 0x0A], as: UTF8.self)))],
            events: [OTLPEvent(timeUnixNano: 1_764_000_000_150_000_000, name: "flujo.retry", attributes: [OTLPAttribute("attempt", .int(1))])],
            links: [OTLPLink(traceID: Array(repeating: 9, count: 16), spanID: Array(repeating: 8, count: 8), attributes: [OTLPAttribute("why", .string("resumed"))])],
            status: OTLPStatus(code: .error, message: "card declined"))
        return [root, child]
    }

    @Test("a request decodes with opentelemetry-proto: resource, scope, tree, attributes, events, links, status")
    func requestDecodes() async throws {
        let origin = OTLPOrigin(resourceAttributes: [OTLPAttribute("service.name", .string("orders"))], scopeName: "flujo", scopeVersion: "0.1.0")
        let bytes = OTLPTraceEncoder.encodeExportRequest(origin: origin, spans: sampleSpans())
        let decoded = try await referenceDecode(bytes)
        #expect(decoded["roundtrip_identical"] as? Bool == true, "the reference re-encodes different bytes")
        let message = try #require(decoded["message"] as? [String: Any])
        let resourceSpans = try #require(message["resourceSpans"] as? [[String: Any]])
        #expect(resourceSpans.count == 1)
        let resource = try #require(resourceSpans[0]["resource"] as? [String: Any])
        let resourceAttributes = try #require(resource["attributes"] as? [[String: Any]])
        #expect(resourceAttributes.first?["key"] as? String == "service.name")
        #expect((resourceAttributes.first?["value"] as? [String: Any])?["stringValue"] as? String == "orders")
        let scopeSpans = try #require(resourceSpans[0]["scopeSpans"] as? [[String: Any]])
        #expect((scopeSpans[0]["scope"] as? [String: Any])?["version"] as? String == "0.1.0")
        let spans = try #require(scopeSpans[0]["spans"] as? [[String: Any]])
        #expect(spans.count == 2)

        // JSON mapping of bytes fields is base64.
        let root = spans[0], child = spans[1]
        #expect(root["traceId"] as? String == Data(traceID).base64EncodedString())
        #expect(root["spanId"] as? String == Data(rootID).base64EncodedString())
        #expect(root["parentSpanId"] == nil)
        #expect(child["parentSpanId"] as? String == Data(rootID).base64EncodedString())
        #expect(root["kind"] as? String == "SPAN_KIND_INTERNAL")
        #expect(root["startTimeUnixNano"] as? String == "1764000000000000001")
        #expect(child["name"] as? String == "charge \"card\"\n")

        let attributes = try #require(root["attributes"] as? [[String: Any]])
        func value(_ key: String) -> [String: Any]? {
            attributes.first { $0["key"] as? String == key }?["value"] as? [String: Any]
        }
        #expect(value("flujo.run_id")?["stringValue"] as? String == "run-1")
        #expect(value("flujo.budget.initial_tokens")?["intValue"] as? String == "10000")
        #expect(value("flujo.budget.initial_cost_usd")?["doubleValue"] as? Double == 1.5)
        #expect(value("flujo.is_background")?["boolValue"] as? Bool == false)
        #expect(value("raw")?["bytesValue"] as? String == Data([0, 255, 7]).base64EncodedString())
        let nested = try #require((value("nested")?["arrayValue"] as? [String: Any])?["values"] as? [[String: Any]])
        #expect(nested[0]["stringValue"] as? String == "a")
        #expect(nested[1]["intValue"] as? String == "-2")
        let kvlist = try #require((nested[2]["kvlistValue"] as? [String: Any])?["values"] as? [[String: Any]])
        #expect(kvlist[0]["key"] as? String == "deep")
        #expect(((kvlist[0]["value"] as? [String: Any])?["arrayValue"] as? [String: Any]) != nil)

        #expect((root["status"] as? [String: Any])?["code"] as? String == "STATUS_CODE_OK")
        let status = try #require(child["status"] as? [String: Any])
        #expect(status["code"] as? String == "STATUS_CODE_ERROR")
        #expect(status["message"] as? String == "card declined")
        let events = try #require(child["events"] as? [[String: Any]])
        #expect(events[0]["name"] as? String == "flujo.retry")
        #expect(events[0]["timeUnixNano"] as? String == "1764000000150000000")
        let links = try #require(child["links"] as? [[String: Any]])
        #expect(links[0]["spanId"] as? String == Data(Array(repeating: 8, count: 8)).base64EncodedString())
        #expect(((child["attributes"] as? [[String: Any]])?[1]["value"] as? [String: Any])?["stringValue"] as? String == "ünïcødé ✓")
        // Invalid UTF-8 never reaches the wire: Swift repaired it to U+FFFD, and quotes, backslashes and newlines pass as they are.
        #expect(((child["attributes"] as? [[String: Any]])?[2]["value"] as? [String: Any])?["stringValue"] as? String == "a\u{FFFD}\"\\\n")
    }

    @Test("a response written by opentelemetry-proto decodes: partial success read, empty body is none")
    func responseDecodes() async throws {
        let python = try #require(TestSupport.python)
        let file = TestSupport.temporaryDirectory("flujo-otlp").appendingPathComponent("response.bin")
        let result = try await TestSupport.run(python, [TestSupport.supportScript("otlp_decode.py").path, "response", file.path, "3", "spans too old"])
        #expect(result.status == 0, "\(result.stderr)")
        let body = [UInt8](try Data(contentsOf: file))
        #expect(try OTLPTraceEncoder.decodeExportResponse(body) == OTLPPartialSuccess(rejectedSpans: 3, errorMessage: "spans too old"))
        #expect(try OTLPTraceEncoder.decodeExportResponse([]) == nil)
        #expect(throws: OTLPDecodingError.self) { try OTLPTraceEncoder.decodeExportResponse([0xff, 0xff, 0xff]) }
    }

    @Test("our .proto files match opentelemetry-proto field for field")
    func schemaMatchesReference() async throws {
        let python = try #require(TestSupport.python)
        let descriptors = TestSupport.temporaryDirectory("flujo-proto").appendingPathComponent("ours.pb")
        let protoRoot = TestSupport.packageRoot.appendingPathComponent("proto")
        let files = try FileManager.default.subpathsOfDirectory(atPath: protoRoot.path).filter { $0.hasSuffix(".proto") }.sorted()
        let protoc = try await TestSupport.run(URL(fileURLWithPath: "/usr/bin/env"), ["protoc-c", "-I\(protoRoot.path)", "--include_imports", "--descriptor_set_out=\(descriptors.path)"] + files, currentDirectory: protoRoot)
        #expect(protoc.status == 0, "protoc-c failed: \(protoc.stderr)")
        let check = try await TestSupport.run(python, [TestSupport.supportScript("otlp_schema_check.py").path, descriptors.path])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains(" 0 differences"))
    }
}
