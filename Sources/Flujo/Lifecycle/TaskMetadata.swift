import Foundation

/// Builds and reads the `metadata` JSON of a background task.
enum TaskMetadata {
    static func json(taskID: String, parentRunID: String, stepName: String, inputJSON: String, errorCategory: ErrorCategory?) -> String {
        JSONText.object(members: [
            ("error_category", errorCategory.map { JSONText.quote($0.rawValue) } ?? "null"),
            ("input_data", inputJSON),
            ("parent_run_id", JSONText.quote(parentRunID)),
            ("step_name", JSONText.quote(stepName)),
            ("task_id", JSONText.quote(taskID)),
        ])
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
