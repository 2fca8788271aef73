import Foundation

/// The user context of a run: named JSON values that steps read and change.
///
/// A value type: a background task gets its own copy at launch, so nothing it
/// changes can reach the parent run.
public struct RunContext: Sendable, Hashable, Codable {
    /// The values, by name.
    public var values: [String: JSONValue]

    /// Creates a context.
    public init(_ values: [String: JSONValue] = [:]) {
        self.values = values
    }

    /// Reads or writes one value.
    public subscript(key: String) -> JSONValue? {
        get { values[key] }
        set { values[key] = newValue }
    }

    /// Reads a context back from its JSON text; empty when the text is not a JSON object.
    init(json: String) {
        if case let .object(values)? = JSONReader.read(json) {
            self.init(values)
        } else {
            self = (try? JSONDecoder().decode(RunContext.self, from: Data(json.utf8))) ?? RunContext()
        }
    }

    /// The context as compact JSON text.
    public var jsonText: String { JSONValue.object(values).jsonText }

    /// Decodes a plain JSON object, as `jsonText` writes it.
    public init(from decoder: any Decoder) throws {
        values = try decoder.singleValueContainer().decode([String: JSONValue].self)
    }

    /// Encodes a plain JSON object.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(values)
    }
}
