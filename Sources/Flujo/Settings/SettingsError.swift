/// Where a setting's value came from.
public enum SettingSource: Sendable, Hashable, CustomStringConvertible {
    /// Nobody set it.
    case defaultValue
    /// A configuration file, at a line.
    case file(path: String, line: Int?)
    /// An environment variable.
    case environment(String)
    /// Code (`SettingsLoader.load(overrides:)`).
    case code

    public var description: String {
        switch self {
        case .defaultValue: return "default"
        case let .file(path, line): return line.map { "\(path):\($0)" } ?? path
        case let .environment(name): return "env \(name)"
        case .code: return "code"
        }
    }
}

/// A configuration file or variable Flujo cannot use; the message names the
/// file, line and key, what was found and the expected form.
public struct SettingsError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file, or the environment variable, the bad value came from.
    public var origin: String
    /// The line in the file, when known.
    public var line: Int?
    /// The dotted key, e.g. `background_tasks.max_cost_per_task`.
    public var key: String
    /// What was wrong and the expected form.
    public var message: String
    /// The problems found after this one in the same load, in order: every
    /// problem of a file and of the environment is reported at once.
    public var more: [SettingsError]

    /// Creates an error.
    public init(origin: String, line: Int? = nil, key: String, message: String) {
        self.origin = origin
        self.line = line
        self.key = key
        self.message = message
        self.more = []
    }

    /// The first problem carrying the others in `more`; nil when there are none.
    init?(combining problems: [SettingsError]) {
        guard var first = problems.first else { return nil }
        first.more = Array(problems.dropFirst())
        self = first
    }

    /// This problem and those in `more`, each alone.
    public var problems: [SettingsError] {
        var head = self
        head.more = []
        return [head] + more
    }

    /// One line per problem.
    public var description: String {
        problems.map(\.place).joined(separator: "\n")
    }

    private var place: String {
        let place = line.map { "\(origin):\($0)" } ?? origin
        return key.isEmpty ? "\(place): \(message)" : "\(place): \(key): \(message)"
    }
}
