import ArgumentParser
import Flujo
import FlujoSQLite
import Foundation

/// `flujo db ...`: the state database itself.
public struct DBCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "db", abstract: "Check or upgrade the state database.", subcommands: [Check.self, Upgrade.self])

    public init() {}

    struct Upgrade: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bring the state database to the current schema version, keeping every row (read-only commands never do).")
        @OptionGroup var common: CommonOptions
        @Flag(name: .customLong("rebuild-counters"), help: "Also recount the maintained counters from the rows.") var rebuildCounters = false

        func run() async throws {
            let loaded = try common.loadSettings()
            try CommonOptions.refusePostgres(loaded.settings, "db upgrade")
            let path = loaded.settings.state.path
            guard FileManager.default.fileExists(atPath: path) else {
                throw CLIError(StateStoreError.missingDatabase(path: path).description)
            }
            let store = try common.openStore(loaded.settings, readOnly: false)
            if rebuildCounters {
                do { try store.rebuildCounters() } catch { throw CLIError("\(error)") }
                Output.line("\(path): counters rebuilt from the rows")
            }
            Output.line("\(path): schema version \(store.schemaVersion) (current)")
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the state database without changing it: integrity, schema, counters; say what to do about each problem.")
        @OptionGroup var common: CommonOptions
        @OptionGroup var output: JSONOption

        func run() async throws {
            let loaded = try common.loadSettings()
            try CommonOptions.refusePostgres(loaded.settings, "db check")
            let path = loaded.settings.state.path
            let report: DatabaseCheckReport
            do {
                report = try SQLiteStateStore.check(path: path)
            } catch {
                throw CLIError("\(error)")
            }
            if output.json {
                Output.line(jsonText([
                    "path": report.path, "schema_version": report.schemaVersion, "healthy": report.isHealthy,
                    "damage": report.damage, "foreign_objects": report.foreignObjects,
                    "counter_mismatches": report.counterMismatches, "counters_checked": report.countersNotChecked == nil,
                    "network_file_system": report.networkFileSystem.map { $0 as Any } ?? NSNull(),
                    "advice": report.advice,
                ] as [String: Any]))
            } else {
                Output.line("\(TerminalText.escaped(path)): schema version \(report.schemaVersion)")
                if report.damage.isEmpty {
                    Output.line("integrity  ok")
                } else {
                    // One problem a line: SQLite names a page or a table in each.
                    // SQLite's quick check stops at 20 problems.
                    Output.line("integrity  damaged; " + (report.damage.count >= 20 ? "the first 20 problems:" : "\(report.damage.count) problem(s):"))
                    for problem in report.damage { Output.line("  \(TerminalText.escaped(problem))") }
                }
                Output.line("schema     " + (report.foreignObjects.isEmpty ? "ok" : "not Flujo's: " + report.foreignObjects.map(TerminalText.escaped).joined(separator: ", ")))
                if let reason = report.countersNotChecked {
                    Output.line("counters   not checked: \(reason)")
                } else {
                    Output.line("counters   " + (report.counterMismatches.isEmpty ? "ok" : report.counterMismatches.joined(separator: "; ")))
                }
                Output.line("disk       " + (report.networkFileSystem.map { "network file system (\($0)): one host only" } ?? "local"))
                for line in report.advice { Output.line("to do: \(line)") }
            }
            if !report.isHealthy { throw ExitCode(1) }
        }
    }
}
