import Foundation

/// A JSON value: what run contexts hold and what `--data` parses into.
public enum JSONValue: Sendable, Hashable, Codable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case let .bool(value): try container.encode(value)
        case let .number(value): try container.encode(value)
        case let .string(value): try container.encode(value)
        case let .array(value): try container.encode(value)
        case let .object(value): try container.encode(value)
        }
    }

    /// Compact JSON text with sorted keys.
    public var jsonText: String {
        switch self {
        case .null: return "null"
        case let .bool(value): return value ? "true" : "false"
        case let .number(value):
            if value.isFinite, value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
            return value.isFinite ? "\(value)" : "null"
        case let .string(value): return JSONText.quote(value)
        case let .array(values): return "[" + values.map(\.jsonText).joined(separator: ",") + "]"
        case let .object(values):
            return "{" + values.keys.sorted().map { JSONText.quote($0) + ":" + values[$0]!.jsonText }.joined(separator: ",") + "}"
        }
    }

    public var description: String { jsonText }

    /// Parses JSON text; the error names the position of the first problem.
    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        if let value = JSONReader.read(text) { return value }
        let data = Data(text.utf8)
        do {
            // JSONSerialization reports where the text went wrong; the decoder does not.
            _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            var detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
            if let (escape, offset) = loneSurrogate(in: text) {
                detail = "lone UTF-16 surrogate \(escape) at character \(offset): a \\uD800-\\uDBFF escape must be followed by a \\uDC00-\\uDFFF one, and a \\uDC00-\\uDFFF escape must follow one"
            } else if detail.contains("end of file") || detail.contains("end of data") {
                detail = "unexpected end of input at character \(text.count)"
            }
            throw JSONParseError(text: text, detail: detail)
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw JSONParseError(text: text, detail: "\(error)")
        }
    }

    /// The first `\\u` escape of a UTF-16 surrogate that has no partner, and its character offset.
    static func loneSurrogate(in text: String) -> (escape: String, offset: Int)? {
        let characters = Array(text)
        func escape(at index: Int) -> UInt32? {
            guard index + 5 < characters.count, characters[index] == "\\", characters[index + 1] == "u" else { return nil }
            return UInt32(String(characters[(index + 2)...(index + 5)]), radix: 16)
        }
        var index = 0
        while index < characters.count {
            if characters[index] == "\\" {
                if let unit = escape(at: index) {
                    if (0xD800...0xDBFF).contains(unit) {
                        guard let next = escape(at: index + 6), (0xDC00...0xDFFF).contains(next) else { return (String(characters[index...(index + 5)]), index) }
                        index += 12
                        continue
                    }
                    if (0xDC00...0xDFFF).contains(unit) { return (String(characters[index...(index + 5)]), index) }
                }
                index += 2
                continue
            }
            index += 1
        }
        return nil
    }

    /// The character offset of the first unpaired surrogate escape in `text`, if any.
    public static func loneSurrogateOffset(_ text: String) -> Int? { loneSurrogate(in: text)?.offset }

    /// The value for `key` when this is an object.
    public subscript(key: String) -> JSONValue? {
        if case let .object(values) = self { return values[key] }
        return nil
    }
}

/// Text that is not valid JSON.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The text that failed.
    public var text: String
    /// The parser's account of where and why.
    public var detail: String

    public var description: String {
        let shown = text.count > 60 ? String(text.prefix(60)) + "..." : text
        return "invalid JSON \(shown.debugDescription): \(detail)"
    }
}
