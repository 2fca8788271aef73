import Foundation

/// A value as read from a file or the environment, before it is checked.
enum RawSetting: Sendable {
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case table([String: String])

    var shown: String {
        switch self {
        case let .bool(value): return String(value)
        case let .int(value): return String(value)
        case let .double(value): return String(value)
        case let .string(value): return value.debugDescription
        case let .table(value): return "{" + value.keys.sorted().joined(separator: ", ") + "}"
        }
    }
}

/// One setting: its dotted key, environment variables, expected form, and how
/// to apply and show it.
struct SettingKey: Sendable {
    let key: String
    /// Environment variables, most specific first.
    let environment: [String]
    /// The expected form, for error messages.
    let expected: String
    /// Hidden as `***` when shown.
    let secret: Bool
    /// OTEL_* variables: a bad value is a warning and the default stays (per the spec).
    let lenient: Bool
    /// Converts an environment string to a raw value of the right kind.
    let parseEnvironment: @Sendable (String) -> RawSetting?
    /// Applies a raw value; returns nil when it fits, or what is wrong.
    let apply: @Sendable (inout FlujoSettings, RawSetting) -> String?
    /// The effective value as text.
    let render: @Sendable (FlujoSettings) -> String

    var section: String { String(key[..<key.lastIndex(of: ".")!]) }
    var name: String { String(key[key.index(after: key.lastIndex(of: ".")!)...]) }

    static func bool(_ key: String, env: [String], _ path: WritableKeyPath<FlujoSettings, Bool> & Sendable, lenient: Bool = false) -> SettingKey {
        SettingKey(
            key: key, environment: env, expected: "true or false", secret: false, lenient: lenient,
            parseEnvironment: { text in
                switch text.lowercased() {
                case "true", "1", "yes", "on": return .bool(true)
                case "false", "0", "no", "off": return .bool(false)
                default: return nil
                }
            },
            apply: { settings, raw in
                guard case let .bool(value) = raw else { return "expected true or false, got \(raw.shown)" }
                settings[keyPath: path] = value
                return nil
            },
            render: { String($0[keyPath: path]) })
    }

    static func int(_ key: String, env: [String], _ path: WritableKeyPath<FlujoSettings, Int> & Sendable, range: ClosedRange<Int>, lenient: Bool = false) -> SettingKey {
        let expected = "a whole number from \(range.lowerBound) to \(range.upperBound)"
        return SettingKey(
            key: key, environment: env, expected: expected, secret: false, lenient: lenient,
            parseEnvironment: { Int($0.trimmingCharacters(in: .whitespaces)).map(RawSetting.int) },
            apply: { settings, raw in
                guard case let .int(value) = raw else { return "expected \(expected), got \(raw.shown)" }
                guard range.contains(value) else { return "expected \(expected), got \(value)" }
                settings[keyPath: path] = value
                return nil
            },
            render: { String($0[keyPath: path]) })
    }

    static func double(_ key: String, env: [String], _ path: WritableKeyPath<FlujoSettings, Double> & Sendable, range: ClosedRange<Double>, lenient: Bool = false) -> SettingKey {
        let expected = "a number from \(range.lowerBound.formattedBound) to \(range.upperBound.formattedBound)"
        return SettingKey(
            key: key, environment: env, expected: expected, secret: false, lenient: lenient,
            parseEnvironment: { Double($0.trimmingCharacters(in: .whitespaces)).map(RawSetting.double) },
            apply: { settings, raw in
                let value: Double
                switch raw {
                case let .double(number): value = number
                case let .int(number): value = Double(number)
                default: return "expected \(expected), got \(raw.shown)"
                }
                guard value.isFinite, range.contains(value) else { return "expected \(expected), got \(value)" }
                settings[keyPath: path] = value
                return nil
            },
            render: { String($0[keyPath: path]) })
    }

    /// A string key; `shown` renders its value when part of it is secret (a URI's password).
    static func string(
        _ key: String, env: [String], _ path: WritableKeyPath<FlujoSettings, String> & Sendable, secret: Bool = false, lenient: Bool = false,
        nonEmpty: Bool = true, shown: (@Sendable (String) -> String)? = nil
    ) -> SettingKey {
        SettingKey(
            key: key, environment: env, expected: "a string", secret: secret, lenient: lenient,
            parseEnvironment: { .string($0) },
            apply: { settings, raw in
                guard case let .string(value) = raw else { return "expected a string, got \(raw.shown)" }
                if nonEmpty && value.isEmpty { return "expected a non-empty string" }
                settings[keyPath: path] = value
                return nil
            },
            render: { shown?($0[keyPath: path]) ?? $0[keyPath: path] })
    }

    /// An OTLP endpoint: http or https only; shown with any user name and password as `***`.
    static func endpoint(_ key: String, env: [String], _ path: WritableKeyPath<FlujoSettings, String?> & Sendable, required: Bool) -> SettingKey {
        SettingKey(
            key: key, environment: env, expected: "an http:// or https:// URL", secret: false, lenient: true,
            parseEnvironment: { .string($0.trimmingCharacters(in: .whitespaces)) },
            apply: { settings, raw in
                guard case let .string(value) = raw else { return "expected an http:// or https:// URL, got \(raw.shown)" }
                if value.isEmpty {
                    if required { return "expected an http:// or https:// URL, got an empty string" }
                    settings[keyPath: path] = nil
                    return nil
                }
                if let problem = OTLPRules.endpointProblem(value) { return problem }
                settings[keyPath: path] = value
                return nil
            },
            render: { $0[keyPath: path].map(OTLPRules.redactedURL) ?? "(none)" })
    }

    static func optionalString(_ key: String, env: [String], _ path: WritableKeyPath<FlujoSettings, String?> & Sendable, lenient: Bool = false) -> SettingKey {
        SettingKey(
            key: key, environment: env, expected: "a string", secret: false, lenient: lenient,
            parseEnvironment: { .string($0) },
            apply: { settings, raw in
                guard case let .string(value) = raw else { return "expected a string, got \(raw.shown)" }
                settings[keyPath: path] = value.isEmpty ? nil : value
                return nil
            },
            render: { $0[keyPath: path] ?? "(none)" })
    }

    static func choice(_ key: String, env: [String], _ path: WritableKeyPath<FlujoSettings, String> & Sendable, _ choices: [String], lenient: Bool = false) -> SettingKey {
        let expected = "one of " + choices.map { "\"\($0)\"" }.joined(separator: ", ")
        return SettingKey(
            key: key, environment: env, expected: expected, secret: false, lenient: lenient,
            parseEnvironment: { .string($0.trimmingCharacters(in: .whitespaces).lowercased()) },
            apply: { settings, raw in
                guard case let .string(value) = raw, choices.contains(value) else { return "expected \(expected), got \(raw.shown)" }
                settings[keyPath: path] = value
                return nil
            },
            render: { $0[keyPath: path] })
    }

    static func policy(_ key: String, env: [String], _ path: WritableKeyPath<FlujoSettings, BackgroundPolicy?> & Sendable) -> SettingKey {
        let expected = "\"skip\" or \"include\""
        return SettingKey(
            key: key, environment: env, expected: expected, secret: false, lenient: false,
            parseEnvironment: { .string($0.trimmingCharacters(in: .whitespaces).lowercased()) },
            apply: { settings, raw in
                guard case let .string(value) = raw, let policy = BackgroundPolicy(rawValue: value) else {
                    return "expected \(expected), got \(raw.shown)"
                }
                settings[keyPath: path] = policy
                return nil
            },
            render: { $0[keyPath: path]?.rawValue ?? "(inherit)" })
    }

    static func table(
        _ key: String, env: [String], _ path: WritableKeyPath<FlujoSettings, [String: String]> & Sendable, secret: Bool,
        check: (@Sendable (String, String) -> String?)? = nil
    ) -> SettingKey {
        SettingKey(
            key: key, environment: env, expected: "a table of strings (or, in the environment, key=value pairs separated by commas)",
            secret: secret, lenient: true,
            parseEnvironment: { parseKeyValueList($0).map(RawSetting.table) },
            apply: { settings, raw in
                guard case let .table(values) = raw else { return "expected a table of strings, got \(raw.shown)" }
                if let check {
                    for name in values.keys.sorted() {
                        if let problem = check(name, values[name]!) { return problem }
                    }
                }
                settings[keyPath: path].merge(values) { _, new in new }
                return nil
            },
            render: { settings in
                let values = settings[keyPath: path]
                if values.isEmpty { return "(none)" }
                return values.keys.sorted().map { "\($0)=\(secret ? "***" : values[$0]!)" }.joined(separator: ",")
            })
    }
}

/// Parses the W3C-baggage-like form of OTEL_EXPORTER_OTLP_HEADERS and
/// OTEL_RESOURCE_ATTRIBUTES: `key=value` pairs separated by commas, values
/// percent-decoded. Nil when a pair has no `=` or an empty key.
func parseKeyValueList(_ text: String) -> [String: String]? {
    var result: [String: String] = [:]
    for pair in text.split(separator: ",", omittingEmptySubsequences: true) {
        guard let equals = pair.firstIndex(of: "=") else { return nil }
        let key = pair[..<equals].trimmingCharacters(in: .whitespaces)
        let value = pair[pair.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        guard !key.isEmpty else { return nil }
        result[key] = value.removingPercentEncoding ?? value
    }
    return result
}

extension Double {
    fileprivate var formattedBound: String {
        self == self.rounded() && abs(self) < 1e15 ? String(Int64(self)) : String(self)
    }
}

