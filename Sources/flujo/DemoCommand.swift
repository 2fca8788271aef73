import ArgumentParser
import Flujo
import FlujoCLI
import FlujoPrometheus
import FlujoTelemetry
import Foundation

/// `flujo demo`: an order pipeline with background tasks, some failing or
/// pausing on purpose, against the local state file.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a sample order pipeline: validate, charge, then background tasks (receipt, analytics, fraud review, partners).")

    @OptionGroup var common: CommonOptions
    @Option(parsing: .unconditional, help: "Extra background tasks (sync_partner_1 ... N), at most \(DemoSteps.maxExtraTasks).") var background = 2
    @Option(parsing: .unconditional, help: "How many background tasks fail on their first attempt with a transient network error.") var fail = 1
    @Option(parsing: .unconditional, help: "How many background tasks pause for approval (resume with --data '{\"approved\": true}').") var pause = 1
    @Option(name: .customLong("task-ms"), parsing: .unconditional, help: "How long each background task works, in milliseconds.") var taskMs = 0
    @Option(parsing: .unconditional, help: "Seed for a repeatable choice of failing and pausing tasks.") var seed: UInt64?
    @Option(name: .customLong("metrics-port"), parsing: .unconditional, help: "Serve /metrics on this port until Ctrl-C (0 picks a free port).") var metricsPort: Int?

    func validate() throws {
        try OptionRange.check(background, "--background", 0...DemoSteps.maxExtraTasks)
        // Each alone first, so their sum cannot overflow.
        try OptionRange.check(fail, "--fail", 0...(background + 3))
        try OptionRange.check(pause, "--pause", 0...(background + 3))
        guard fail + pause <= background + 3 else {
            throw ValidationError("--fail \(fail) and --pause \(pause) need \(fail + pause) background tasks, but the demo has \(background + 3) (3 + --background)")
        }
        try OptionRange.check(taskMs, "--task-ms", 0...3_600_000)
        if let metricsPort { try OptionRange.check(metricsPort, "--metrics-port", 0...65_535) }
    }

    func run() async throws {
        let loaded = try common.loadSettings()
        var settings = loaded.settings
        // The demo prints its trace, background work included, unless the configuration says otherwise.
        if loaded.sources["telemetry.console.enabled"] == nil { settings.telemetry.console.enabled = true }
        if loaded.sources["telemetry.console.background"] == nil && loaded.sources["telemetry.background"] == nil {
            settings.telemetry.console.background = .include
        }
        if let metricsPort {
            settings.telemetry.prometheus.enabled = true
            settings.telemetry.prometheus.port = metricsPort
        }
        let store = try await common.openStateStore(settings, readOnly: false)
        // Console lines through `Output`: if standard output fails, the run goes on and the command exits 1.
        let telemetry = Telemetry(settings: settings, store: store, consoleWrite: { Output.line($0) })
        let runner = Runner(store: store, settings: settings, registry: CLIContext.registry, hooks: telemetry.hooks)
        runner.startMaintenance()
        // Ctrl-C or SIGTERM: no new run; wait up to the shutdown timeout, persist what still runs as
        // cancelled (resumable), flush telemetry within a bound, exit 130 or 143.
        let shutdown = Duration.seconds(settings.backgroundTasks.shutdownTimeoutSeconds)
        Interrupt.stopGracefully { _ in
            await runner.close(timeout: shutdown)
            await telemetry.shutdown()
        }

        var random = SeededRandomNumberGenerator(seed: seed ?? UInt64.random(in: 0...UInt64.max))
        let taskNames = ["send_receipt", "update_analytics", "fraud_review"] + (0..<background).map { "sync_partner_\($0 + 1)" }
        // Fraud review is the first to wait for approval; the rest are drawn.
        var candidates = taskNames.filter { $0 != "fraud_review" }.shuffled(using: &random)
        if taskNames.contains("fraud_review") { candidates.insert("fraud_review", at: 0) }
        let paused = Array(candidates.prefix(pause))
        let failing = Array(candidates.dropFirst(pause).shuffled(using: &random).prefix(fail))

        let steps: [PipelineStep] = [.run(DemoSteps.validate), .run(DemoSteps.charge)]
            + [.background(DemoSteps.sendReceipt), .background(DemoSteps.updateAnalytics), .background(DemoSteps.fraudReview)]
            + (0..<background).map { .background(DemoSteps.syncPartner($0 + 1)) }
        let order = DemoOrder(orderID: "order-\(1000 + random.next() % 9000)", customer: "ada@example.com", amountUSD: 42.5)
        let context = RunContext([
            "demo.fail": .array(failing.map(JSONValue.string)),
            "demo.pause": .array(paused.map(JSONValue.string)),
            "demo.work_ms": .number(Double(taskMs)),
            "demo.order_id": .string(order.orderID),
        ])

        let server: MetricsServer?
        do {
            server = try await telemetry.startMetricsServer()
        } catch {
            throw CLIError("\(error)")
        }

        // TRACEPARENT (and TRACESTATE) in the environment: the run joins the caller's trace.
        let result = try await runner.run(Pipeline(name: "order_processing", version: "1", steps: steps), input: order, context: context, trace: loaded.trace)
        if taskMs >= 1000 {
            Output.line("waiting for \(result.backgroundTaskIDs.count) background task(s) of \(taskMs) ms each (Ctrl-C or kill to leave them for stale cleanup)...")
        }
        let closed = await runner.close(timeout: .milliseconds(taskMs + 10_000))
        await Interrupt.waitIfStopping()

        let tasks = try await store.listBackgroundTasks(BackgroundTaskQuery(parentRunID: result.runID, limit: 10_000))
        printSummary(result, tasks: tasks, databasePath: settings.state.shownLocation)
        if let server {
            Output.line("serving metrics on \(server.url) (Ctrl-C to stop)")
            _ = await Interrupt.wait()
        }
        await telemetry.shutdown()
        if !closed.isComplete {
            let first = closed.unpersisted[0]
            throw CLIError("could not persist the outcome of \(closed.unpersisted.count) background task(s) (first: \(first.taskID) \(first.status.rawValue): \(first.error)). They stay running until this process ends; then `flujo tasks cleanup` fails them as lost workers and `flujo tasks retry` runs them again.")
        }
        if result.status != .completed { throw ExitCode(1) }
    }

    private func printSummary(_ result: PipelineResult, tasks: [WorkflowState], databasePath: String) {
        var counts: [RunStatus: Int] = [:]
        for task in tasks { counts[task.status, default: 0] += 1 }
        let byStatus = RunStatus.allCases.compactMap { status in counts[status].map { "\($0) \(status.rawValue)" } }.joined(separator: ", ")
        // A password given in a URI is never printed: the hints name the URI without it.
        let db = common.db.map { _ in " --db \(databasePath)" } ?? (common.config.map { " --config \($0)" } ?? "")
        Output.line()
        Output.line("run        \(result.runID) \(result.status.rawValue) in \(String(format: "%.1f", result.durationSeconds * 1000)) ms")
        Output.line("steps      \(result.steps.map(\.name).joined(separator: ", "))")
        Output.line("background \(tasks.count) task(s): \(byStatus.isEmpty ? "none" : byStatus)")
        Output.line("state      \(databasePath)")
        Output.line()
        Output.line("Try next:")
        Output.line("  flujo tasks list --parent \(result.runID)\(db)")
        if let pausedTask = tasks.first(where: { $0.status == .paused }), let id = pausedTask.taskID {
            Output.line("  flujo tasks resume \(id) --data '{\"approved\": true}'\(db)")
        }
        if counts[.failed, default: 0] > 0 {
            Output.line("  flujo tasks retry --parent \(result.runID)\(db)")
            Output.line("  flujo worker --once\(db)   # or run the ones due for a retry, as a worker does")
        }
        Output.line("  flujo trace \(result.runID)\(db)")
        Output.line("  flujo stats\(db)")
        Output.line("  flujo metrics\(db)")
    }
}
