import ArgumentParser
import Flujo
import Foundation

/// `flujo config check`: validates flujo.toml and the environment, prints the effective settings.
public struct ConfigCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "config", abstract: "Check the configuration.", subcommands: [Check.self])

    public init() {}

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate flujo.toml and the environment; print every effective setting and where it came from (secrets as ***).")
        @OptionGroup var common: CommonOptions

        func run() async throws {
            let loaded = try common.loadSettings(printWarnings: false)
            for warning in loaded.warnings { Output.error("warning: \(warning)") }
            Output.line(table(["key", "value", "source"], loaded.effective.map { [$0.key, $0.value, $0.source.description] }))
            Output.line()
            Output.line("configuration is valid" + (loaded.warnings.isEmpty ? "" : " (\(loaded.warnings.count) warning(s))"))
        }
    }
}
