import ArgumentParser
import Flujo
import Foundation

/// `flujo prune`: deletes ended runs and tasks past keeping, with their steps and spans.
public struct PruneCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Delete completed, failed-for-good and cancelled runs and tasks past keeping ([state] keep_*_hours, or --older-than), with their steps and spans.")

    @OptionGroup var common: CommonOptions
    @Option(
        name: .customLong("older-than"), parsing: .unconditional,
        help: "Age past which every such run goes, instead of the [state] keep_*_hours settings: 90m, 36h, 7d, 2w, or a bare number of hours.")
    var olderThan: String?
    @Flag(name: .customLong("dry-run"), help: "Count what would be deleted; delete nothing.") var dryRun = false

    public init() {}

    public func validate() throws { _ = try olderThanHours() }

    /// `--older-than` in hours, checked: nil when not given.
    private func olderThanHours() throws -> Double? {
        guard let olderThan else { return nil }
        guard let hours = OptionRange.hours(fromAge: olderThan) else {
            throw ValidationError("--older-than must be an age such as 90m, 36h, 7d or 2w (a bare number counts hours); got '\(TerminalText.escaped(olderThan))'")
        }
        guard hours <= 1_000_000 else {
            // In the unit it was given in, not in hours the operator never typed.
            throw ValidationError("--older-than may be at most 1000000 hours (about 114 years); got '\(TerminalText.escaped(olderThan))'")
        }
        return hours
    }

    public func run() async throws {
        let operations = try await TasksCommand.operations(common, readOnly: dryRun)
        let settings = operations.settings.state
        let olderThanHours = try olderThanHours()
        if olderThanHours == nil && settings.keepCompletedHours == 0 && settings.keepFailedHours == 0 && settings.keepCancelledHours == 0 {
            throw CLIError("nothing is past keeping: set [state] keep_completed_hours, keep_failed_hours or keep_cancelled_hours, or pass --older-than AGE (for example 7d)", exitCode: 2)
        }
        let showProgress = Output.stderrIsTerminal && !dryRun
        let count = try await operations.prune(olderThanHours: olderThanHours, dryRun: dryRun) { done in
            if showProgress { Output.progress("\r\u{1B}[2Kdeleted \(done)") }
        }
        if showProgress { Output.progress("\r\u{1B}[2K") }
        Output.line(dryRun ? "would delete \(count) run(s) and task(s), with their steps and spans" : "deleted \(count) run(s) and task(s), with their steps and spans")
    }
}
