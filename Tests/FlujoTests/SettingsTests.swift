@testable import Flujo
import FlujoTestSupport
import FlujoTesting
import Foundation
import Testing

/// Writes a flujo.toml and loads it with an empty environment.
func settings(_ toml: String, environment: [String: String] = [:]) throws -> FlujoSettings {
    let file = TestSupport.temporaryDirectory("flujo-settings").appendingPathComponent("flujo.toml")
    try Data(toml.utf8).write(to: file)
    return try SettingsLoader.load(file: file.path, environment: environment).settings
}

func loadError(_ toml: String, environment: [String: String] = [:]) -> SettingsError? {
    let file = TestSupport.temporaryDirectory("flujo-settings").appendingPathComponent("flujo.toml")
    try? Data(toml.utf8).write(to: file)
    do {
        _ = try SettingsLoader.load(file: file.path, environment: environment)
        return nil
    } catch {
        return error
    }
}

@Suite("Settings loader")
struct SettingsLoaderTests {
    @Test("every key of the seed's [background_tasks] section is read (defect 1)")
    func seedSection() throws {
        let loaded = try settings("""
            [background_tasks]
            enable_state_tracking = false
            enable_resumability = false
            enable_quota = false
            max_cost_per_task = 2.5
            max_tokens_per_task = 777
            stale_task_timeout_hours = 12
            """)
        let background = loaded.backgroundTasks
        #expect(!background.enableStateTracking && !background.enableResumability && !background.enableQuota)
        #expect(background.maxCostPerTask == 2.5)
        #expect(background.maxTokensPerTask == 777)
        #expect(background.staleTaskTimeoutHours == 12, "an integer is accepted where a number is expected")
    }

    @Test("precedence: file, then environment, then code; sources recorded")
    func precedence() throws {
        let file = TestSupport.temporaryDirectory("flujo-settings").appendingPathComponent("flujo.toml")
        try Data("[state]\nbusy_timeout_ms = 100\nsynchronous = \"full\"\n[telemetry]\nbackground = \"include\"\n".utf8).write(to: file)
        let loaded = try SettingsLoader.load(file: file.path, environment: ["FLUJO_STATE_BUSY_TIMEOUT_MS": "200", "FLUJO_TELEMETRY_BACKGROUND": "skip"]) { settings in
            settings.state.synchronous = "off"
        }
        #expect(loaded.settings.state.busyTimeoutMs == 200)
        #expect(loaded.settings.state.synchronous == "off")
        #expect(loaded.settings.telemetry.background == .skip)
        #expect(loaded.sources["state.busy_timeout_ms"] == .environment("FLUJO_STATE_BUSY_TIMEOUT_MS"))
        #expect(loaded.sources["state.synchronous"] == .code)
        #expect(loaded.sources["state.uri"] == nil)
        #expect(loaded.effective.first { $0.key == "state.busy_timeout_ms" }?.value == "200")
    }

    @Test("unknown keys, wrong types and out-of-range values name the file, line, key and expected form")
    func errors() throws {
        let unknown = try #require(loadError("[background_tasks]\nenable_quota = true\nmax_cost_per_tsk = 1.0\n"))
        #expect(unknown.line == 3)
        #expect(unknown.key == "background_tasks.max_cost_per_tsk")
        #expect(unknown.description.contains("flujo.toml:3"))
        #expect(unknown.description.contains("max_cost_per_task"), "the message lists the known keys")

        let wrongType = try #require(loadError("[background_tasks]\nmax_tokens_per_task = \"many\"\n"))
        #expect(wrongType.line == 2)
        #expect(wrongType.message.contains("whole number"))

        let range = try #require(loadError("[telemetry.prometheus]\nport = 70000\n"))
        #expect(range.key == "telemetry.prometheus.port")
        #expect(range.message.contains("0 to 65535"))

        let section = try #require(loadError("[backgroundtasks]\nenable_quota = true\n"))
        #expect(section.message.contains("unknown section"))

        let syntax = try #require(loadError("[state\nuri = 1\n"))
        #expect(syntax.line == 1)
        #expect(syntax.message.contains("not valid TOML"))

        let choice = try #require(loadError("[telemetry]\nbackground = \"sometimes\"\n"))
        #expect(choice.message.contains("\"skip\", \"include\""))

        let environment = try #require(loadError("", environment: ["FLUJO_BACKGROUND_MAX_RETRIES": "lots"]))
        #expect(environment.origin == "environment variable FLUJO_BACKGROUND_MAX_RETRIES")

        #expect(throws: SettingsError.self) { try SettingsLoader.load(file: "/nonexistent/flujo.toml", required: true, environment: [:]) }
        #expect(try SettingsLoader.load(file: "/nonexistent/flujo.toml", environment: [:]).settings == FlujoSettings())
    }

    @Test("every problem of the file and the environment is reported at once, in the file's order, then the environment's")
    func everyProblem() throws {
        let text = """
            [state]
            keep_completed_hours = "x"
            busy_timeout_ms = 100
            [background_tasks]
            bogus = 1
            max_tokens_per_task = -3
            [nope]
            a = 1
            """
        let error = try #require(loadError(text, environment: ["FLUJO_BACKGROUND_MAX_RETRIES": "lots"]))
        let problems = error.problems
        #expect(problems.map(\.key) == ["state.keep_completed_hours", "background_tasks.bogus", "background_tasks.max_tokens_per_task", "nope", "background_tasks.max_retries"])
        #expect(problems.map(\.line) == [2, 5, 6, 7, nil])
        #expect(problems.allSatisfy { $0.more.isEmpty })
        #expect(error.key == "state.keep_completed_hours" && error.more.count == 4, "the first problem carries the others")
        let lines = error.description.split(separator: "\n")
        #expect(lines.count == 5)
        #expect(lines.first?.contains("flujo.toml:2: state.keep_completed_hours:") == true)
        #expect(lines.last?.hasPrefix("environment variable FLUJO_BACKGROUND_MAX_RETRIES:") == true)

        let one = try #require(loadError("[state]\nbusy_timeout_ms = \"soon\"\n"))
        #expect(one.problems.count == 1 && !one.description.contains("\n"), "a lone problem stays one line")
    }

    @Test("the effective settings show a state URI's password as ***, from the file or the environment; the settings keep it")
    func uriPasswordMasked() throws {
        let file = TestSupport.temporaryDirectory("flujo-settings").appendingPathComponent("flujo.toml")
        try Data("[state]\nuri = \"postgres://app:s3cret@db.internal:5432/flujo\"\n".utf8).write(to: file)
        let loaded = try SettingsLoader.load(file: file.path, environment: [:])
        #expect(loaded.settings.state.uri == "postgres://app:s3cret@db.internal:5432/flujo", "the password still reaches the store")
        #expect(loaded.effective.first { $0.key == "state.uri" }?.value == "postgres://***@db.internal:5432/flujo")
        let fromEnvironment = try SettingsLoader.load(environment: ["FLUJO_STATE_URI": "postgres://app:p%40ss@h/db"])
        #expect(fromEnvironment.effective.first { $0.key == "state.uri" }?.value == "postgres://***@h/db")
        for (uri, shown) in [
            ("/srv/a@b:c/state.db", "/srv/a@b:c/state.db"), (".flujo/state.db", ".flujo/state.db"), ("postgres://h/db", "postgres://h/db"),
        ] {
            let listed = try SettingsLoader.load(environment: ["FLUJO_STATE_URI": uri])
            #expect(listed.effective.first { $0.key == "state.uri" }?.value == shown, "nothing to hide in \(uri)")
        }
    }

    @Test("OTEL_* variables per the exporter spec: endpoint turns export on, bad values warn and keep the default")
    func otelEnvironment() throws {
        let loaded = try SettingsLoader.load(environment: [
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=secret%20value,tenant=a",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2500",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "9000",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "brotli",
            "OTEL_BSP_MAX_QUEUE_SIZE": "-1",
            "OTEL_SERVICE_NAME": "orders",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=payments",
        ])
        let otlp = loaded.settings.telemetry.otlp
        #expect(otlp.enabled)
        #expect(otlp.tracesURL == "http://collector:4318/v1/traces")
        #expect(otlp.headers == ["api-key": "secret value", "tenant": "a"])
        #expect(otlp.timeoutMs == 2500, "the traces-specific variable wins")
        #expect(otlp.compression == "none")
        #expect(otlp.maxQueueSize == 2048)
        #expect(loaded.warnings.count == 2)
        #expect(loaded.settings.telemetry.serviceName == "orders")
        #expect(otlp.resourceAttributes["team"] == "payments")
        #expect(loaded.effective.first { $0.key == "telemetry.otlp.headers" }?.value == "api-key=***,tenant=***")
        #expect(try SettingsLoader.load(environment: ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/x", "OTEL_SDK_DISABLED": "true"]).settings.telemetry.otlp.enabled == false)
        #expect(try SettingsLoader.load(environment: ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/x"]).settings.telemetry.otlp.tracesURL == "http://c/x")
        #expect(try SettingsLoader.load(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_TRACES_EXPORTER": "none"]).settings.telemetry.otlp.enabled == false)
    }

    @Test("per-exporter background policies inherit [telemetry] background unless set")
    func policies() throws {
        let loaded = try settings("[telemetry]\nbackground = \"include\"\n[telemetry.console]\nbackground = \"skip\"\n")
        #expect(loaded.consoleBackground == .skip)
        #expect(loaded.otlpBackground == .include)
        #expect(loaded.prometheusBackground == .include)
        #expect(try settings("", environment: ["FLUJO_TELEMETRY_BACKGROUND": "include"]).otlpBackground == .include)
    }
}

/// One test per [background_tasks] key, each through a flujo.toml, showing the value takes effect.
@Suite("[background_tasks] values take effect")
struct BackgroundSettingsEffectTests {
    let service = FlakyService()
    let spend = Step<Order, String>("spend") { _, context in
        try context.reportUsage(costUSD: 0.2, tokens: 100)
        return "spent"
    }

    @Test("enable_state_tracking = false: background tasks are not persisted")
    func stateTracking() async throws {
        let (runner, sink, _) = try makeRunner(settings: try settings("[background_tasks]\nenable_state_tracking = false\n"))
        let good = Step<Order, String>("good") { _, _ in "ok" }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(good)]), input: Order(id: "o", amount: 1))
        #expect(await sink.waitUntil { $0.contains { $0.kind == .taskFinished } })
        #expect(try await runner.store.loadTask(taskID: result.backgroundTaskIDs[0]) == nil)
        await runner.close()
    }

    @Test("enable_resumability = false: resume is refused")
    func resumability() async throws {
        let (runner, _, _) = try makeRunner(settings: try settings("[background_tasks]\nenable_resumability = false\n"))
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(service.step)]), input: Order(id: "o", amount: 1))
        _ = try await waitForTask(runner, result.backgroundTaskIDs[0])
        await #expect(throws: RunnerError.resumabilityDisabled) { try await runner.tasks.resume(taskID: result.backgroundTaskIDs[0]) }
        await runner.close()
    }

    @Test("enable_quota = false: no budget is enforced")
    func quota() async throws {
        let (runner, _, _) = try makeRunner(settings: try settings("[background_tasks]\nenable_quota = false\nmax_cost_per_task = 0.0\n"))
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(spend)]), input: Order(id: "o", amount: 1))
        #expect(try await waitForTask(runner, result.backgroundTaskIDs[0])?.status == .completed)
        await runner.close()
    }

    @Test("max_cost_per_task caps a task's cost")
    func maxCost() async throws {
        let (runner, _, _) = try makeRunner(settings: try settings("[background_tasks]\nmax_cost_per_task = 0.1\n"))
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(spend)]), input: Order(id: "o", amount: 1))
        #expect(try await waitForTask(runner, result.backgroundTaskIDs[0])?.errorCategory == .resourceExhaustion)
        await runner.close()
    }

    @Test("max_tokens_per_task caps a task's tokens")
    func maxTokens() async throws {
        let (runner, _, _) = try makeRunner(settings: try settings("[background_tasks]\nmax_tokens_per_task = 50\n"))
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(spend)]), input: Order(id: "o", amount: 1))
        #expect(try await waitForTask(runner, result.backgroundTaskIDs[0])?.errorCategory == .resourceExhaustion)
        await runner.close()
    }

    @Test("stale_task_timeout_hours is the default threshold of cleanup")
    func staleHours() async throws {
        let (runner, _, _) = try makeRunner(settings: try settings("[background_tasks]\nstale_task_timeout_hours = 1\n"))
        var state = WorkflowState(runID: "p_bg_bg_x", pipelineName: "p", status: .running, isBackgroundTask: true, parentRunID: "p", taskID: "bg_x")
        state.updatedAt = Timestamp.now.adding(seconds: -2 * 3600)
        try (runner.store as! SQLiteStateStore).saveAll([state])   // no owner recorded: the heartbeat rule applies
        #expect(try await runner.tasks.cleanupStaleTasks() == 1)
        await runner.close()
    }

    @Test("heartbeat_interval_seconds sets how often running tasks heartbeat")
    func heartbeat() async throws {
        let (runner, _, _) = try makeRunner(settings: try settings("[background_tasks]\nheartbeat_interval_seconds = 0.02\n"))
        runner.startMaintenance()
        let gate = Gate()
        let long = Step<Order, String>("long") { _, _ in await gate.wait(); return "done" }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(long)]), input: Order(id: "o", amount: 1))
        let first = try #require(try await runner.store.loadTask(taskID: result.backgroundTaskIDs[0])).updatedAt
        // With the default 30 s interval nothing would move within this wait.
        var moved = false
        let deadline = ContinuousClock.now + .seconds(30)
        while !moved && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
            moved = try #require(try await runner.store.loadTask(taskID: result.backgroundTaskIDs[0])).updatedAt > first
        }
        #expect(moved)
        gate.open()
        await runner.close()
    }

    @Test("stale_check_interval_seconds makes the runner look for stale tasks by itself")
    func staleCheckInterval() async throws {
        let (runner, _, _) = try makeRunner(settings: try settings("[background_tasks]\nheartbeat_interval_seconds = 0.01\nstale_check_interval_seconds = 0.02\nstale_task_timeout_hours = 1\n"))
        runner.startMaintenance()
        var state = WorkflowState(runID: "p_bg_bg_y", pipelineName: "p", status: .running, isBackgroundTask: true, parentRunID: "p", taskID: "bg_y")
        state.updatedAt = Timestamp.now.adding(seconds: -2 * 3600)
        try (runner.store as! SQLiteStateStore).saveAll([state])   // no owner recorded: the heartbeat rule applies
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, try await runner.store.loadTask(taskID: "bg_y")?.status == .running {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(try await runner.store.loadTask(taskID: "bg_y")?.status == .failed)
        await runner.close()
    }

    @Test("shutdown_timeout_seconds is how long close waits before cancelling")
    func shutdownTimeout() async throws {
        let (runner, _, _) = try makeRunner(settings: try settings("[background_tasks]\nshutdown_timeout_seconds = 0.05\n"))
        let forever = Step<Order, String>("forever") { _, _ in try await Task.sleep(for: .seconds(3600)); return "x" }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(forever)]), input: Order(id: "o", amount: 1))
        await runner.close()
        #expect(try await runner.store.loadTask(taskID: result.backgroundTaskIDs[0])?.status == .cancelled)
    }

    @Test("max_retries, retry_base_delay_ms and retry_max_delay_ms shape retries")
    func retrySettings() async throws {
        let (runner, _, _) = try makeRunner(settings: try settings("[background_tasks]\nmax_retries = 2\nretry_base_delay_ms = 80\nretry_max_delay_ms = 80\n"))
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(service.step)]), input: Order(id: "o", amount: 1))
        _ = try await waitForTask(runner, result.backgroundTaskIDs[0])
        let started = ContinuousClock.now
        let report = try await runner.tasks.retryFailed()
        let elapsed = ContinuousClock.now - started
        #expect(report.entries.first?.retries == 2)
        // One delay between the two retries: at least half of 80 ms with jitter 0.5.
        #expect(elapsed >= .milliseconds(40))
        await runner.close()
    }

    @Test("resume_lease_seconds, which nothing reads any more, loads with a warning naming the line")
    func leaseRemoved() throws {
        let path = TestSupport.temporaryDirectory("flujo-settings").appendingPathComponent("flujo.toml").path
        try "[background_tasks]\nmax_retries = 4\nresume_lease_seconds = 120\n".write(toFile: path, atomically: true, encoding: .utf8)
        let loaded = try SettingsLoader.load(file: path, environment: [:])
        #expect(loaded.settings.backgroundTasks.maxRetries == 4)
        #expect(loaded.warnings == ["\(path):3: background_tasks.resume_lease_seconds is no longer used (a resume's claim is a lock held while the resumer runs, not a lease); remove it"])
    }

    @Test("Docs/Configuration.md has a row for every key, naming each of its variables and its default")
    func configurationDocumentsEveryKey() throws {
        let text = try String(contentsOf: TestSupport.packageRoot.appendingPathComponent("Docs/Configuration.md"), encoding: .utf8)
        let rows = text.components(separatedBy: "\n").filter { $0.hasPrefix("| `[") }
        #expect(rows.count >= SettingsLoader.keys.count)
        for key in SettingsLoader.keys {
            let row = rows.first { $0.hasPrefix("| `[\(key.section)] \(key.name)` |") }
            #expect(row != nil, "no row for \(key.key)")
            guard let row else { continue }
            // `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` names both variables, with and without TRACES_.
            let cell = row.components(separatedBy: " | ")[1]
            let named = cell.components(separatedBy: "`").enumerated().filter { $0.offset % 2 == 1 }.flatMap { item -> [String] in
                guard let open = item.element.firstIndex(of: "("), let close = item.element.firstIndex(of: ")") else { return [item.element] }
                let before = item.element[..<open], optional = item.element[item.element.index(after: open)..<close]
                let after = item.element[item.element.index(after: close)...]
                return [String(before + optional + after), String(before + after)]
            }
            for variable in key.environment {
                #expect(named.contains(variable), "\(key.key): \(variable) is not in its row")
            }
            // The default, where the row gives one as a value: numbers compared as numbers.
            let documented = row.components(separatedBy: " | ")[2].trimmingCharacters(in: CharacterSet(charactersIn: "` "))
            let actual = key.render(FlujoSettings())
            if let number = Double(documented) {
                #expect(Double(actual) == number, "\(key.key): the default is \(actual), the row says \(documented)")
            } else if !["–", "inherit"].contains(documented) && actual != "(none)" {
                // Where no value is set the row says what is used instead; elsewhere it gives the value.
                #expect(actual == documented, "\(key.key): the default is \(actual), the row says \(documented)")
            }
        }
    }

    @Test("a misspelled FLUJO_ variable under a setting's prefix is a warning naming the closest one; others are left alone")
    func misspelledVariable() throws {
        let loaded = try SettingsLoader.load(environment: [
            "FLUJO_BACKGROUND_STALE_TASK_TIMEOUT_HOUR": "1",
            "FLUJO_STATE_URL": "x.db",
            "FLUJO_OTLP_QQQQQQQQQQQQQQQQQQQQQQ": "1",
            "FLUJO_BACKGROUND_MAX_RETRIES": "2",
            "FLUJO_LOG_LEVEL": "debug",
            "FLUJO_MY_APP_FLAG": "1",
        ])
        #expect(loaded.settings.backgroundTasks.maxRetries == 2)
        #expect(loaded.settings.backgroundTasks.staleTaskTimeoutHours == 24, "the misspelled variable sets nothing")
        #expect(loaded.warnings == [
            "FLUJO_BACKGROUND_STALE_TASK_TIMEOUT_HOUR sets no Flujo setting and is ignored. Did you mean FLUJO_BACKGROUND_STALE_TASK_TIMEOUT_HOURS?",
            "FLUJO_OTLP_QQQQQQQQQQQQQQQQQQQQQQ sets no Flujo setting and is ignored. Docs/Configuration.md lists the variables.",
            "FLUJO_STATE_URL sets no Flujo setting and is ignored. Did you mean FLUJO_STATE_URI?",
        ])
    }
}

import FlujoSQLite
