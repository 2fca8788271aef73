import ArgumentParser
import Flujo
import Foundation

/// `flujo prune`: deletes ended runs and tasks past keeping, with their steps and spans.
public struct PruneCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Delete completed, failed-for-good and cancelled runs and tasks past keeping ([state] keep_*_hours, or --older-than), with their steps and spans.")

    @OptionGroup var common: CommonOptions
    @Option(name: .customLong("older-than"), help: "Age in hours past which every such run goes, instead of the [state] keep_*_hours settings.") var olderThan: Double?
    @Flag(name: .customLong("dry-run"), help: "Count what would be deleted; delete nothing.") var dryRun = false

    public init() {}

    public func validate() throws {
        if let olderThan { try OptionRange.check(olderThan, "--older-than", 0...1_000_000, unit: "hours") }
    }

    public func run() async throws {
        let operations = try await TasksCommand.operations(common, readOnly: dryRun)
        let settings = operations.settings.state
        if olderThan == nil && settings.keepCompletedHours == 0 && settings.keepFailedHours == 0 && settings.keepCancelledHours == 0 {
            throw CLIError("nothing is past keeping: set [state] keep_completed_hours, keep_failed_hours or keep_cancelled_hours, or pass --older-than HOURS", exitCode: 2)
        }
        let showProgress = Output.stderrIsTerminal && !dryRun
        let count = try await operations.prune(olderThanHours: olderThan, dryRun: dryRun) { done in
            if showProgress { FileHandle.standardError.write(Data("\r\u{1B}[2Kdeleted \(done)".utf8)) }
        }
        if showProgress { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) }
        Output.line(dryRun ? "would delete \(count) run(s) and task(s), with their steps and spans" : "deleted \(count) run(s) and task(s), with their steps and spans")
    }
}
