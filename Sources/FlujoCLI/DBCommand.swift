import ArgumentParser
import Flujo
import FlujoSQLite
import Foundation

/// `flujo db ...`: the state database itself.
public struct DBCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "db", abstract: "Upgrade the state database.", subcommands: [Upgrade.self])

    public init() {}

    struct Upgrade: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bring the state database to the current schema version, keeping every row (read-only commands never do).")
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let loaded = try common.loadSettings()
            let path = loaded.settings.state.path
            guard FileManager.default.fileExists(atPath: path) else {
                throw CLIError(StateStoreError.missingDatabase(path: path).description)
            }
            let store = try common.openStore(loaded.settings, readOnly: false)
            Output.line("\(path): schema version \(store.schemaVersion) (current)")
        }
    }
}
