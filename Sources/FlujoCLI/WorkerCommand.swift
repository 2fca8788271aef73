import ArgumentParser
import Flujo
import FlujoTelemetry
import Foundation

/// `flujo worker`: runs failed tasks whose next attempt has come, N at once.
public struct WorkerCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run failed tasks whose next attempt has come (retryable failures, with backoff kept in the store), N at once, until stopped.")

    @OptionGroup var common: CommonOptions
    @Option(parsing: .unconditional, help: "Tasks run at once.") var concurrency = 1
    @Flag(help: "Stop once no task is due, instead of waiting for more.") var once = false
    @Option(name: .customLong("poll-ms"), parsing: .unconditional, help: "How long to wait when no task is due, in milliseconds.") var pollMs = 1000

    public init() {}

    public func validate() throws {
        try OptionRange.check(concurrency, "--concurrency", 1...256)
        try OptionRange.check(pollMs, "--poll-ms", 10...600_000)
    }

    public func run() async throws {
        let (operations, telemetry) = try await TasksCommand.resumer(common)
        let worker = TaskWorker(operations: operations, concurrency: concurrency, pollInterval: .milliseconds(pollMs))
        let once = self.once
        let working = Task { await worker.run(once: once) }
        // Ctrl-C or SIGTERM: no new task is claimed; the running ones get the shutdown timeout; exit 130 or 143.
        let shutdown = Duration.seconds(operations.settings.backgroundTasks.shutdownTimeoutSeconds)
        Interrupt.stopGracefully { _ in
            await Interrupt.cancel(working, waitingAtMost: shutdown)
            await telemetry.shutdown()
        }
        if !once {
            Output.line("worker running: \(worker.concurrency) at once, polling every \(pollMs) ms (Ctrl-C or SIGTERM stops it)")
        }
        let report = await working.value
        await Interrupt.waitIfStopping()
        await telemetry.shutdown()
        Output.line("ran \(report.ran) task(s): \(report.completed) completed, \(report.failed) failed")
    }
}
