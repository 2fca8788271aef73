import Foundation
import Testing

@testable import Flujo

@Suite("The fast JSON reader")
struct JSONReaderTests {
    /// What the Codable path makes of the text, the reference the reader must match.
    func decoded(_ text: String) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    @Test("valid texts read exactly as JSONDecoder decodes them")
    func validCorpus() {
        let texts = [
            "null", "true", "false", "0", "-0", "12", "-3.25", "1e3", "1E-2", "2.5e+10", "123456789012345678",
            "\"\"", "\"plain\"", "\"quote \\\" backslash \\\\ slash \\/\"", "\"\\b\\f\\n\\r\\t\"",
            "\"\\u00e9\\u4e2d\"", "\"\\ud83d\\ude00\"", "\"caf\u{e9} \u{1F600}\"", "\"\\u0000\"",
            "[]", "{}", " [ 1 , [ ] , { } , \"x\" ] ", "{\"ok\": true}", "{\"a\":{\"b\":[1,2,{\"c\":null}]},\"d\":-1.5}",
            "\t\r\n{ \"spaced\" :\n[ true ,false ] }\n",
        ]
        for text in texts {
            let read = JSONReader.read(text)
            #expect(read != nil, "not read: \(text)")
            #expect(read == decoded(text), "differs from JSONDecoder: \(text)")
        }
    }

    @Test("invalid or doubtful texts are left to JSONDecoder (nil), and parse still reports them")
    func invalidCorpus() {
        let invalid = [
            "", " ", "{", "}", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "-", "1e", "1e+", "+1", "NaN", "Infinity",
            "tru", "nul", "fals", "[1 2]", "{\"a\" 1}", "{a:1}", "1 2", "\"unterminated", "\"bad \\x escape\"",
            "\"\\u12\"", "\"\\u12G4\"", "\"lone \\ud800\"", "\"\\ud800\\u0041\"", "\"\\udc00\"", "\"raw \u{01} control\"",
            "[\"a\"]]", "1e999",
        ]
        for text in invalid {
            #expect(JSONReader.read(text) == nil, "read: \(text.debugDescription)")
        }
        for text in ["{", "01", "tru", "\"unterminated"] {
            #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
        }
        // A duplicate key is valid JSON the reader leaves to the decoder.
        #expect(JSONReader.read("{\"a\":1,\"a\":2}") == nil)
        #expect((try? JSONValue.parse("{\"a\":1,\"a\":2}")) != nil)
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        #expect(JSONReader.read(deep) == nil)
    }

    @Test("random values: jsonText read back equals the value and what JSONDecoder makes of it")
    func randomRoundTrip() {
        var generator = SystemRandomNumberGenerator()
        let alphabet: [Character] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{01}", "\u{1F}", "\u{e9}", "\u{4e2d}", "\u{1F600}", "\u{7F}"]
        func randomString() -> String {
            String((0..<Int.random(in: 0...8, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! })
        }
        func randomValue(depth: Int) -> JSONValue {
            switch Int.random(in: 0..<(depth > 3 ? 4 : 6), using: &generator) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &generator))
            case 2:
                let choices: [Double] = [0, -1, 42, 1e15, -2.5, 0.1, 3.14159, 1e-7, 123456.75, Double(Int.random(in: -1_000_000...1_000_000))]
                return .number(choices.randomElement(using: &generator)!)
            case 3: return .string(randomString())
            case 4: return .array((0..<Int.random(in: 0...4, using: &generator)).map { _ in randomValue(depth: depth + 1) })
            default:
                var members: [String: JSONValue] = [:]
                for _ in 0..<Int.random(in: 0...4, using: &generator) { members[randomString()] = randomValue(depth: depth + 1) }
                return .object(members)
            }
        }
        for _ in 0..<2_000 {
            let value = randomValue(depth: 0)
            let text = value.jsonText
            let read = JSONReader.read(text)
            #expect(read == value, "\(text)")
            #expect(read == decoded(text), "\(text)")
        }
    }

    @Test("a step taking JSONValue and a resumed context get the same values through the fast path")
    func hotPaths() async throws {
        let step = Step<JSONValue, JSONValue>("echo") { input, _ in input }.erased
        let context = StepContext(runID: "r", stepName: "echo", attempt: 1, isBackground: false, taskID: nil, span: .root(), context: RunContext(), ledger: nil, budget: nil)
        let output = try await step.execute(StepValue(json: "{\"b\": [1, \"\\u00e9\"], \"a\": null}"), context)
        #expect(output.json == "{\"a\":null,\"b\":[1,\"\u{e9}\"]}")
        await #expect(throws: StepInputError.self) {
            _ = try await Step<JSONValue, JSONValue>("echo") { input, _ in input }.erased.execute(StepValue(json: "{broken"), context)
        }
        #expect(RunContext(json: "{\"n\": 2, \"s\": \"x\"}") == RunContext(["n": .number(2), "s": .string("x")]))
        #expect(RunContext(json: "not json") == RunContext())
    }
}

@Suite("JSON text written by hand")
struct JSONTextTests {
    static let awkward = ["", "plain", "quote \" backslash \\ slash /", "lines\nand\ttabs\r", "\u{0}\u{1}\u{1f}", "café 中 😀", String(repeating: "long ", count: 40)]

    @Test("quoted strings read back as the same string, whatever they hold")
    func quoteRoundTrip() throws {
        for text in Self.awkward {
            let quoted = JSONText.quote(text)
            #expect(try JSONDecoder().decode(String.self, from: Data(quoted.utf8)) == text, "\(quoted)")
        }
        #expect(JSONText.quote("a\"b") == #""a\"b""#)
        #expect(JSONText.quote("\u{1}") == #""\u0001""#)
    }

    @Test("objects read back member for member, keys sorted; a task's metadata keeps its input as JSON")
    func objects() throws {
        let values = Dictionary(uniqueKeysWithValues: Self.awkward.enumerated().map { ("k\($0.offset) \($0.element)", $0.element) })
        let text = JSONText.object(values)
        #expect(try JSONDecoder().decode([String: String].self, from: Data(text.utf8)) == values)
        #expect(JSONText.object([:]) == "{}")
        #expect(JSONText.object(members: [("a\"", "1"), ("b", #"{"x":[true,null]}"#)]) == #"{"a\"":1,"b":{"x":[true,null]}}"#)
        #expect(JSONText.object(members: []) == "{}")
        for category in [ErrorCategory.network, nil] {
            let metadata = TaskMetadata.json(taskID: "bg_\"1", parentRunID: "run\n1", stepName: "send ☃", inputJSON: #"{"n":[1,2]}"#, errorCategory: category)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(metadata.utf8)) as? [String: Any])
            #expect(object["task_id"] as? String == "bg_\"1" && object["parent_run_id"] as? String == "run\n1" && object["step_name"] as? String == "send ☃")
            #expect((object["error_category"] as? String) == category?.rawValue)
            #expect(TaskMetadata.inputJSON(from: metadata) == #"{"n":[1,2]}"#)
            #expect(metadata.hasPrefix(#"{"error_category":"#))
        }
    }
}
