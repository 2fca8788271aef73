import Foundation

/// Small, allocation-light helpers for writing JSON text by hand.
///
/// The runner writes metadata and summaries on its hot path; building the text
/// directly is several times cheaper than `JSONEncoder` for these flat shapes.
public enum JSONText {
    /// `value` as a JSON string literal, quotes included, escaped per RFC 8259.
    public static func quote(_ value: String) -> String {
        var out = ""
        out.reserveCapacity(value.utf8.count + 2)
        appendQuoted(value, to: &out)
        return out
    }

    /// Appends `value` as a JSON string literal to `out`: one copy when nothing
    /// needs escaping (most names, ids and messages). The caller reserves room.
    static func appendQuoted(_ value: String, to out: inout String) {
        var value = value
        let plain = value.withUTF8 { bytes in !bytes.contains { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C } }
        out += "\""
        if plain {
            out += value
        } else {
            for scalar in value.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case _ where scalar.value < 0x20:
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                default: out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    /// A JSON object of string values, keys sorted so the text is stable.
    public static func object(_ values: [String: String]) -> String {
        if values.isEmpty { return "{}" }
        var out = "{"
        out.reserveCapacity(values.reduce(2) { $0 + $1.key.utf8.count + $1.value.utf8.count + 6 })
        for (index, key) in values.keys.sorted().enumerated() {
            if index > 0 { out += "," }
            appendQuoted(key, to: &out)
            out += ":"
            appendQuoted(values[key]!, to: &out)
        }
        out += "}"
        return out
    }

    /// A JSON object from already-encoded members (each value must be valid JSON text).
    public static func object(members: [(String, String)]) -> String {
        "{" + members.map { quote($0.0) + ":" + $0.1 }.joined(separator: ",") + "}"
    }

    /// Reads a JSON object whose values are strings (others are rendered as JSON text).
    /// Returns an empty map for anything that is not an object.
    public static func parseStringObject(_ text: String) -> [String: String] {
        guard let data = text.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return [:] }
        var result: [String: String] = [:]
        for (key, value) in object {
            if let string = value as? String {
                result[key] = string
            } else if let encoded = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]) {
                result[key] = String(decoding: encoded, as: UTF8.self)
            }
        }
        return result
    }
}
