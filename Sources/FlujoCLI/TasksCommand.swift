import ArgumentParser
import Flujo
import FlujoTelemetry
import Foundation

/// `flujo tasks ...`: list, inspect, resume, retry and clean up background tasks.
public struct TasksCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tasks",
        abstract: "List, inspect, resume, retry and clean up background tasks.",
        subcommands: [List.self, Failed.self, Show.self, Resume.self, Retry.self, Cleanup.self])

    public init() {}

    /// The task operations over the configured store, with the application's
    /// steps; read-only for the commands that only read.
    static func operations(_ common: CommonOptions, readOnly: Bool) async throws -> TaskOperations {
        let loaded = try common.loadSettings()
        let store = try await common.openStateStore(loaded.settings, readOnly: readOnly)
        return TaskOperations(store: store, settings: loaded.settings, registry: CLIContext.registry)
    }

    /// The task operations of a command that resumes, with its spans kept in the store.
    static func resumer(_ common: CommonOptions) async throws -> (TaskOperations, Telemetry) {
        let loaded = try common.loadSettings()
        let store = try await common.openStateStore(loaded.settings, readOnly: false)
        let telemetry = Telemetry(settings: loaded.settings, store: store, consoleWrite: { Output.line($0) })
        return (TaskOperations(store: store, settings: loaded.settings, registry: CLIContext.registry, hooks: telemetry.hooks), telemetry)
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List background tasks, newest first.")
        @OptionGroup var common: CommonOptions
        @OptionGroup var output: JSONOption
        @Option(help: "Only tasks in this state: running, paused, completed, failed or cancelled.") var status: RunStatus?
        @Option(help: "Only tasks launched by this run.") var parent: String?
        @Option(parsing: .unconditional, help: "At most this many tasks.") var limit = 50

        func validate() throws {
            try OptionRange.check(limit, "--limit", 1...100_000)
        }

        func run() async throws {
            let operations = try await TasksCommand.operations(common, readOnly: true)
            let tasks = try await operations.list(BackgroundTaskQuery(parentRunID: parent, statuses: status.map { [$0] }, limit: limit))
            printTasks(tasks, json: output.json)
        }
    }

    struct Failed: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List failed background tasks of the last hours.")
        @OptionGroup var common: CommonOptions
        @OptionGroup var output: JSONOption
        @Option(help: "Only tasks launched by this run.") var parent: String?
        @Option(parsing: .unconditional, help: "How far back, in hours.") var hours = 24.0

        func validate() throws {
            try OptionRange.check(hours, "--hours", OptionRange.hours, unit: "hours")
        }

        func run() async throws {
            let operations = try await TasksCommand.operations(common, readOnly: true)
            printTasks(try await operations.failed(parentRunID: parent, hoursBack: hours), json: output.json)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one background task in full.")
        @OptionGroup var common: CommonOptions
        @OptionGroup var output: JSONOption
        @Argument(help: "The task id (bg_...).") var taskID: String

        func run() async throws {
            let operations = try await TasksCommand.operations(common, readOnly: true)
            let task: BackgroundTask
            let state: WorkflowState
            do {
                guard let found = try await operations.task(id: taskID), let row = try await operations.store.loadTask(taskID: taskID) else {
                    throw RunnerError.unknownTask(taskID, suggestions: try await operations.suggestions(for: taskID))
                }
                (task, state) = (found, row)
            } catch let error as RunnerError {
                throw CLIError(error.description)
            }
            let steps = try await operations.store.steps(runID: state.runID)
            if output.json {
                var object = taskJSON(task)
                object["input"] = task.inputJSON ?? NSNull()
                object["output"] = state.lastStepOutputJSON ?? NSNull()
                object["cost_usd"] = task.costUSD
                object["tokens"] = task.tokens
                object["pipeline_name"] = task.pipelineName
                object["resumed_from"] = state.resumedFrom ?? NSNull()
                Output.line(jsonText(object))
                return
            }
            let fields: [(String, String)] = [
                ("task_id", task.taskID), ("run_id", task.runID), ("parent_run_id", task.parentRunID ?? "-"),
                ("pipeline", task.pipelineName), ("step_name", task.stepName ?? "-"),
                ("status", statusText(task)),
                ("attempts", String(task.attempts)), ("error_category", task.errorCategory?.rawValue ?? "-"),
                ("error", task.error ?? "-"), ("input", task.inputJSON ?? "-"), ("output", state.lastStepOutputJSON ?? "-"),
                ("cost_usd", String(format: "%.4f", task.costUSD)), ("tokens", String(task.tokens)),
                ("created_at", task.createdAt.iso8601), ("updated_at", task.updatedAt.iso8601),
                ("resumed_from", state.resumedFrom ?? "-"),
            ]
            let width = fields.map(\.0.count).max() ?? 0
            for (name, value) in fields { Output.line(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + TerminalText.escaped(value)) }
            if !steps.isEmpty {
                Output.line()
                Output.line(table(["#", "step", "ok", "attempts", "latency", "finished_at", "feedback"], steps.enumerated().map { index, step in
                    [String(index + 1), step.stepName, step.success ? "yes" : "no", String(step.attempts),
                     String(format: "%.1f ms", step.latencySeconds * 1000), step.finishedAt.iso8601, cut(step.feedback)]
                }))
            }
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a failed, paused or cancelled task again, now, in the foreground.")
        @OptionGroup var common: CommonOptions
        @Argument(help: "The task id (bg_...).") var taskID: String
        @Option(help: "New input as JSON, instead of the persisted one.") var data: String?

        func run() async throws {
            var newData: JSONValue?
            if let data {
                do {
                    newData = try JSONValue.parse(data)
                } catch {
                    throw CLIError("--data is not valid JSON: \(error.detail)", exitCode: 2)
                }
            }
            let (operations, telemetry) = try await TasksCommand.resumer(common)
            let outcome: TaskOutcome
            do {
                outcome = try await operations.resume(taskID: taskID, newData: newData)
            } catch let error as RunnerError {
                await telemetry.shutdown()
                throw CLIError(error.description)
            }
            await telemetry.shutdown()
            switch outcome.status {
            case .completed:
                Output.line("\(TerminalText.escaped(taskID)) completed (attempt \(outcome.attempts))" + (outcome.outputJSON.map { ": \(cut($0, 200))" } ?? ""))
            case .paused:
                Output.line("\(TerminalText.escaped(taskID)) paused again (attempt \(outcome.attempts)): \(TerminalText.escaped(outcome.errorMessage ?? ""))")
            default:
                throw CLIError("\(taskID) \(outcome.status.rawValue) again (attempt \(outcome.attempts)): \(outcome.errorCategory.map { "\($0.rawValue): " } ?? "")\(outcome.errorMessage ?? "")")
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Retry failed tasks with backoff; report each.")
        @OptionGroup var common: CommonOptions
        @Option(help: "Only tasks launched by this run.") var parent: String?
        @Option(name: .customLong("max-retries"), parsing: .unconditional, help: "Tries per task (default: [background_tasks] max_retries).") var maxRetries: Int?
        @Option(parsing: .unconditional, help: "Tasks retried at once.") var concurrency = 1

        func validate() throws {
            if let maxRetries { try OptionRange.check(maxRetries, "--max-retries", 1...1000) }
            try OptionRange.check(concurrency, "--concurrency", 1...256)
        }

        func run() async throws {
            let (operations, telemetry) = try await TasksCommand.resumer(common)
            let showProgress = Output.stderrIsTerminal
            let report: RetryReport
            let (parent, maxRetries, concurrency) = (self.parent, self.maxRetries, self.concurrency)
            let retrying = Task {
                try await operations.retryFailed(parentRunID: parent, maxRetries: maxRetries, concurrency: concurrency) { done, total, entry in
                    if showProgress {
                        Output.progress("\r\u{1B}[2K[\(done)/\(total)] \(entry.taskID) \(entry.status.rawValue)")
                    }
                }
            }
            // Ctrl-C or SIGTERM: no further task; the one running sees the cancellation and is saved
            // as cancelled (resumable) within the shutdown timeout; then exit 130 or 143.
            let shutdown = Duration.seconds(operations.settings.backgroundTasks.shutdownTimeoutSeconds)
            Interrupt.stopGracefully { _ in
                await Interrupt.cancel(retrying, waitingAtMost: shutdown)
                await telemetry.shutdown()
            }
            do {
                report = try await retrying.value
                await Interrupt.waitIfStopping()
            } catch let error as RunnerError {
                await telemetry.shutdown()
                throw CLIError(error.description)
            }
            await telemetry.shutdown()
            if showProgress && !report.entries.isEmpty { Output.progress("\r\u{1B}[2K") }
            if report.entries.isEmpty {
                Output.line("no failed tasks to retry")
                return
            }
            Output.line(table(["task_id", "status", "retries", "error"], report.entries.map {
                [$0.taskID, $0.status.rawValue, String($0.retries), $0.status == .completed ? "-" : cut($0.error)]
            }))
            Output.line("\(report.succeeded) of \(report.entries.count) task(s) completed")
            if report.failed > 0 { throw ExitCode(1) }
        }
    }

    struct Cleanup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Fail running tasks whose process has ended (at once), and tasks of unknown process whose heartbeat stopped long ago.")
        @OptionGroup var common: CommonOptions
        @Option(name: .customLong("stale-hours"), parsing: .unconditional, help: "Heartbeat age that counts as dead, in hours (fractions allowed; default: [background_tasks] stale_task_timeout_hours).") var staleHours: Double?

        func validate() throws {
            if let staleHours { try OptionRange.check(staleHours, "--stale-hours", OptionRange.hours, unit: "hours") }
        }

        func run() async throws {
            let operations = try await TasksCommand.operations(common, readOnly: false)
            let orphaned = try await operations.recoverOrphanedTasks()
            Output.line("failed \(orphaned) running task(s) whose process has ended (lost worker; resumable)")
            let runs = try await operations.recoverOrphanedRuns()
            if runs > 0 { Output.line("failed \(runs) running run(s) whose process has ended (lost worker)") }
            let count = try await operations.cleanupStaleTasks(staleHours: staleHours)
            let hours = staleHours ?? operations.settings.backgroundTasks.staleTaskTimeoutHours
            Output.line("marked \(count) stale task(s) failed (no heartbeat for more than \(hours) h)")
        }
    }
}

extension RunStatus: ExpressibleByArgument {}

/// A task's stored status, marked when a resume of it is running now.
func statusText(_ task: BackgroundTask) -> String {
    task.status.rawValue + (task.isBeingResumed ? " (resuming)" : "")
}

func printTasks(_ tasks: [BackgroundTask], json: Bool) {
    if json {
        Output.line(jsonText(tasks.map(taskJSON)))
        return
    }
    if tasks.isEmpty {
        Output.line("no background tasks")
        return
    }
    Output.line(table(["task_id", "step", "status", "attempts", "updated_at", "error"], tasks.map { task in
        [task.taskID, task.stepName ?? "-", statusText(task), String(task.attempts), task.updatedAt.iso8601,
         task.error.map { (task.errorCategory.map { "\($0.rawValue): " } ?? "") + cut($0, 50) } ?? "-"]
    }))
}
