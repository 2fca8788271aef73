import ArgumentParser
import Flujo
import Foundation
import Logging

/// Runs a command tree built from the operator commands (and the
/// application's own), mapping outcomes to exit statuses: 0 success, 1 the
/// operation failed, 2 the command line was wrong. Errors are one line on
/// standard error. A command whose standard output cannot be written (a full
/// disk, a closed descriptor) exits 1 and says so.
public enum FlujoCLI {
    /// The operator commands, for an application's own root command.
    public static let operatorCommands: [any ParsableCommand.Type] = [
        TasksCommand.self, StatsCommand.self, MetricsCommand.self, TraceCommand.self, ConfigCommand.self, DBCommand.self, PruneCommand.self, WorkerCommand.self,
    ]

    /// Parses and runs `arguments` with `root`, the commands resuming steps of
    /// `registry`; returns the exit status.
    public static func main(
        root: any ParsableCommand.Type, registry: StepRegistry = StepRegistry(),
        arguments: [String] = Array(CommandLine.arguments.dropFirst())
    ) async -> Int32 {
        await CLIContext.$registry.withValue(registry) {
            await run(root: root, arguments: arguments)
        }
    }

    private static func run(root: any ParsableCommand.Type, arguments: [String]) async -> Int32 {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = ProcessInfo.processInfo.environment["FLUJO_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
            return handler
        }
        let status = await runCommand(root: root, arguments: arguments)
        await OpenedStores.closeAll()
        // What was printed is incomplete: say so, and fail, even if the work itself succeeded.
        if let failure = Output.failure {
            Output.error("error: \(failure); the output is incomplete")
            return status == 0 ? 1 : status
        }
        return status
    }

    /// The most detail lines an error prints.
    static let shownDetails = 50

    private static func runCommand(root: any ParsableCommand.Type, arguments: [String]) async -> Int32 {
        do {
            var command = try root.parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            return 0
        } catch let error as CLIError {
            Output.error("error: \(TerminalText.escaped(error.description))")
            // Each detail escaped on its own line: no value can start a line of its own.
            // At most `shownDetails` of them: a file of 60,000 mistakes is not 60,000 lines.
            for detail in error.details.prefix(shownDetails) { Output.error("  \(TerminalText.escaped(detail))") }
            if error.details.count > shownDetails { Output.error("  ... and \(error.details.count - shownDetails) more") }
            return error.exitCode
        } catch let error as ExitCode {
            return error.rawValue
        } catch {
            let code = root.exitCode(for: error)
            if code == .success {
                Output.line(root.fullMessage(for: error))
                return 0
            }
            if code == .validationFailure {
                // One line, like every other error; the usage is one --help away.
                let message = root.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
                Output.error("error: \(TerminalText.escaped(message)) (see --help)")
                return 2
            }
            Output.error("error: \(TerminalText.escaped("\(error)"))")
            return 1
        }
    }
}
