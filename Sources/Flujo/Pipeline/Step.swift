import Foundation

/// A named async function from a Codable input to a Codable output.
///
/// Steps are registered by name, so a task persisted by one process can be
/// resumed by another that registers the same step.
public struct Step<Input: Codable & Sendable, Output: Codable & Sendable>: Sendable {
    /// The unique name the step is registered under.
    public let name: String
    private let body: @Sendable (Input, StepContext) async throws -> Output

    /// Creates a step.
    public init(_ name: String, _ body: @escaping @Sendable (Input, StepContext) async throws -> Output) {
        self.name = name
        self.body = body
    }

    /// The step with its types erased, as the runner and the registry hold it.
    public var erased: AnyStep {
        let body = self.body
        let name = self.name
        return AnyStep(name: name) { input, context in
            let typed: Input
            if let value = input.value as? Input {
                typed = value
            } else if Input.self == JSONValue.self, let value = JSONReader.read(input.json) as? Input {
                typed = value
            } else {
                do {
                    typed = try StepValue.decoder.decode(Input.self, from: Data(input.json.utf8))
                } catch {
                    throw StepInputError(stepName: name, expected: String(describing: Input.self), json: input.json, underlying: "\(error)")
                }
            }
            let output = try await body(typed, context)
            return try StepValue(output)
        }
    }
}

/// A step whose input and output travel as `StepValue`s.
public struct AnyStep: Sendable {
    /// The unique name the step is registered under.
    public let name: String
    let execute: @Sendable (StepValue, StepContext) async throws -> StepValue

    /// Creates an erased step from a body over `StepValue`s.
    public init(name: String, execute: @escaping @Sendable (StepValue, StepContext) async throws -> StepValue) {
        self.name = name
        self.execute = execute
    }
}

/// A value passed between steps: the Swift value (kept to avoid decoding when
/// the next step takes the same type) and its JSON text (what is persisted).
public struct StepValue: Sendable {
    /// The value as the step produced it.
    public let value: any Sendable
    /// The value as JSON text.
    public let json: String

    /// Encodes a value.
    public init<T: Encodable & Sendable>(_ value: T) throws {
        self.value = value
        self.json = try StepValue.plainJSON(value) ?? String(decoding: StepValue.encoder.encode(value), as: UTF8.self)
    }

    /// The JSON text of an integer, a boolean or a string that needs no escaping,
    /// written directly; exactly what `encoder` writes for them. Nil for anything else.
    static func plainJSON<T>(_ value: T) -> String? {
        switch value {
        case let integer as Int: return String(integer)
        case let flag as Bool: return flag ? "true" : "false"
        case let text as String:
            guard !text.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) else { return nil }
            return "\"" + text + "\""
        default: return nil
        }
    }

    /// A value known only as JSON (for example an input read back from the database).
    public init(json: String) {
        self.value = JSONValueBox(json: json)
        self.json = json
    }

    /// The encoder of every step value: sorted keys for stable text. Shared:
    /// JSONEncoder is safe to use from many threads once configured.
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static let decoder = JSONDecoder()
}

/// Marks a value that exists only as JSON text.
struct JSONValueBox: Sendable {
    let json: String
}

/// A step's input could not be decoded as the type the step takes.
public struct StepInputError: Error, Sendable, Hashable, CustomStringConvertible, CategorizedError {
    /// The step.
    public var stepName: String
    /// The Swift type the step takes.
    public var expected: String
    /// The input it was given.
    public var json: String
    /// The decoder's message.
    public var underlying: String

    public var category: ErrorCategory { .validation }

    public var description: String {
        let shown = json.count > 120 ? String(json.prefix(120)) + "..." : json
        return "step '\(stepName)' takes \(expected), but its input \(shown) does not decode as one: \(underlying)"
    }
}
