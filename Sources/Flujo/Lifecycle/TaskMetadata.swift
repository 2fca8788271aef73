import Foundation

/// Builds and reads the `metadata` JSON of a background task.
enum TaskMetadata {
    static func json(taskID: String, parentRunID: String, stepName: String, inputJSON: String, errorCategory: ErrorCategory?) -> String {
        // Members in key order, written into one string.
        var out = "{\"error_category\":"
        out.reserveCapacity(96 + taskID.utf8.count + parentRunID.utf8.count + stepName.utf8.count + inputJSON.utf8.count)
        if let errorCategory { JSONText.appendQuoted(errorCategory.rawValue, to: &out) } else { out += "null" }
        out += ",\"input_data\":"
        out += inputJSON
        out += ",\"parent_run_id\":"
        JSONText.appendQuoted(parentRunID, to: &out)
        out += ",\"step_name\":"
        JSONText.appendQuoted(stepName, to: &out)
        out += ",\"task_id\":"
        JSONText.appendQuoted(taskID, to: &out)
        out += "}"
        return out
    }

    /// The `input_data` member as JSON text.
    static func inputJSON(from metadata: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(metadata.utf8)) as? [String: Any],
              let input = object["input_data"], !(input is NSNull)
        else { return nil }
        guard let data = try? JSONSerialization.data(withJSONObject: input, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
