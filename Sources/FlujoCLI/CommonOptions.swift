import ArgumentParser
import Flujo
import FlujoPostgres
import FlujoSQLite
import Foundation
import Synchronization

/// `--config` and `--db`, shared by every command.
public struct CommonOptions: ParsableArguments {
    /// `--config PATH`.
    @Option(name: .long, help: "Configuration file (default: ./flujo.toml when present).")
    public var config: String?

    /// `--db PATH` or a `postgres://` URI.
    @Option(name: .long, help: "State database: a SQLite file, or a postgres://user@host:port/database URI (default: [state] uri, .flujo/state.db).")
    public var db: String?

    public init() {}

    /// Why a state location cannot hold state past the command, or nil: the
    /// commands persist work, so an in-memory database would lose it.
    static func nonPersistentProblem(_ path: String) -> String? {
        let shown = TerminalText.escaped(path)
        if path.isEmpty { return "the state database path is empty. Pass a file path with --db (for example .flujo/state.db)." }
        if path == ":memory:" || path.hasPrefix("file:") || path.contains("mode=memory") {
            return "state location \(shown.debugDescription) cannot persist: an in-memory database (or a SQLite URI) vanishes with the command. Pass a file path with --db (for example .flujo/state.db)."
        }
        return nil
    }

    /// Settings from the file, the environment and `--db`; warnings go to standard error.
    public func loadSettings(printWarnings: Bool = true) throws -> LoadedSettings {
        let file = config ?? (FileManager.default.fileExists(atPath: "flujo.toml") ? "flujo.toml" : nil)
        let loaded: LoadedSettings
        do {
            loaded = try SettingsLoader.load(file: file, required: config != nil) { settings in
                if let db { settings.state.uri = db }
            }
        } catch {
            let problems = error.problems
            if problems.count == 1 { throw CLIError("bad configuration: \(error)") }
            throw CLIError("bad configuration, \(problems.count) problems:", details: problems.map(\.description))
        }
        // Every command says what it ignored; `config check` lists the warnings with the settings.
        if printWarnings {
            for warning in loaded.warnings { Output.error("warning: \(warning)") }
        }
        return loaded
    }

    /// Opens the state store `[state] uri` names: a SQLite file, or a
    /// PostgreSQL database for a `postgres://` URI. Read-only commands never
    /// create, migrate or write it.
    public func openStateStore(_ settings: FlujoSettings, readOnly: Bool) async throws -> any StateStore {
        let uri = settings.state.uri
        guard PostgresLocation.isPostgres(uri) else { return try openStore(settings, readOnly: readOnly) }
        do {
            return OpenedStores.keep(try await PostgresStateStore.open(try PostgresLocation(uri: uri), migrate: !readOnly))
        } catch {
            throw CLIError("\(error)")
        }
    }

    /// Refuses a PostgreSQL URI for a command that works on SQLite files only.
    static func refusePostgres(_ settings: FlujoSettings, _ command: String) throws {
        guard PostgresLocation.isPostgres(settings.state.uri) else { return }
        throw CLIError(
            "\(command) works on SQLite files; \(settings.state.shownLocation) is a PostgreSQL database, migrated when a command that writes opens it",
            exitCode: 2)
    }

    /// Opens the SQLite state database. Read-only commands open it read-only: they
    /// never create, migrate or write it.
    public func openStore(_ settings: FlujoSettings, readOnly: Bool) throws -> SQLiteStateStore {
        try Self.refusePostgres(settings, "this command")
        if let problem = Self.nonPersistentProblem(settings.state.path) { throw CLIError(problem, exitCode: 2) }
        do {
            return OpenedStores.keep(try SQLiteStateStore(settings: settings.state, readOnly: readOnly))
        } catch {
            throw CLIError("\(error)")
        }
    }
}

/// The stores a command opened, closed when it ends. Closing the last
/// connection to a SQLite file copies its write-ahead log into the file and
/// removes the log: after a command, the file alone holds every row, so a
/// copy of it is complete. A PostgreSQL store ends its sessions cleanly.
enum OpenedStores {
    private static let stores = Mutex<[any StateStore]>([])

    static func keep<Store: StateStore>(_ store: Store) -> Store {
        stores.withLock { $0.append(store) }
        return store
    }

    /// Closes every store opened so far; later use of them fails.
    static func closeAll() async {
        for store in stores.withLock({ opened in defer { opened.removeAll() }; return opened }) {
            if let sqlite = store as? SQLiteStateStore {
                sqlite.close()
            } else if let postgres = store as? PostgresStateStore {
                await postgres.close()
            }
        }
    }
}

/// Ranges of numbers given on the command line, checked before any work starts.
public enum OptionRange {
    /// Hours back or hours of heartbeat age: as `[background_tasks] stale_task_timeout_hours` allows.
    public static let hours: ClosedRange<Double> = 0.0001...100_000

    /// Refuses a number outside `range` (or not finite) with a one-line error naming the option.
    public static func check(_ value: Double, _ option: String, _ range: ClosedRange<Double>, unit: String) throws {
        guard value.isFinite, range.contains(value) else {
            throw ValidationError("\(option) must be a number of \(unit) from \(format(range.lowerBound)) to \(format(range.upperBound)); got \(value)")
        }
    }

    /// Refuses a whole number outside `range` with a one-line error naming the option.
    public static func check(_ value: Int, _ option: String, _ range: ClosedRange<Int>) throws {
        guard range.contains(value) else {
            throw ValidationError("\(option) must be a whole number from \(range.lowerBound) to \(range.upperBound); got \(value)")
        }
    }

    /// Hours from an age given on the command line: a number with a unit, `s`,
    /// `m`, `h`, `d` or `w` (`90m`, `36h`, `7d`, `2w`), or a bare number of hours.
    /// Nil when `text` is none of these.
    public static func hours(fromAge text: String) -> Double? {
        let units: [Character: Double] = ["s": 1.0 / 3600, "m": 1.0 / 60, "h": 1, "d": 24, "w": 168]
        var digits = Substring(text)
        var scale = 1.0
        if let last = digits.last, let unit = units[last] {
            digits = digits.dropLast()
            scale = unit
        }
        // Digits and at most one point only: no sign, exponent, "inf" or "nan".
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              digits.filter({ $0 == "." }).count <= 1, let number = Double(digits)
        else { return nil }
        return number * scale
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}

/// `--json`.
struct JSONOption: ParsableArguments {
    @Flag(name: .long, help: "Print JSON for scripts instead of a table.")
    var json = false
}

/// Renders rows as an aligned table.
/// Cells have their control characters escaped: no stored text can act on the terminal.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let rows = rows.map { $0.map(TerminalText.escaped) }
    var widths = header.map(\.count)
    for row in rows {
        for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) }
    }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { index, cell in
            index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
    return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

/// Stable JSON text of a value made of dictionaries, arrays, strings, numbers, booleans and NSNull.
func jsonText(_ value: Any) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])) ?? Data("null".utf8)
    return String(decoding: data, as: UTF8.self)
}

/// The stable JSON object of a task.
func taskJSON(_ task: BackgroundTask) -> [String: Any] {
    [
        "task_id": task.taskID,
        "run_id": task.runID,
        "parent_run_id": task.parentRunID ?? NSNull(),
        "step_name": task.stepName ?? NSNull(),
        "status": task.status.rawValue,
        "being_resumed": task.isBeingResumed,
        "error": task.error ?? NSNull(),
        "error_category": task.errorCategory?.rawValue ?? NSNull(),
        "attempts": task.attempts,
        "created_at": task.createdAt.iso8601,
        "updated_at": task.updatedAt.iso8601,
    ]
}

/// One line, cut to `limit` characters.
func cut(_ text: String?, _ limit: Int = 60) -> String {
    guard let text else { return "-" }
    let flat = TerminalText.escaped(text)
    return flat.count <= limit ? flat : String(flat.prefix(limit - 1)) + "…"
}
