import CSQLite
import Flujo
import FlujoSQLite
import FlujoTestSupport
import Foundation
import Testing

/// Runs the real `flujo` executable in a temporary folder.
struct CLI {
    let folder = TestSupport.temporaryDirectory("flujo-cli")
    var db: String { folder.appendingPathComponent("state.db").path }

    func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> TestSupport.ProcessOutput {
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OTEL_") && !$0.key.hasPrefix("FLUJO_") }
        env["NO_COLOR"] = "1"
        env.merge(environment) { _, new in new }
        return try await TestSupport.run(TestSupport.executable("flujo"), arguments, environment: env, currentDirectory: folder)
    }

    /// Runs `flujo` with its standard output redirected by the shell: `>/dev/full` (every
    /// write fails with ENOSPC) or `>&-` (closed).
    func run(_ arguments: [String], standardOutput redirection: String) async throws -> TestSupport.ProcessOutput {
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OTEL_") && !$0.key.hasPrefix("FLUJO_") }
        env["NO_COLOR"] = "1"
        return try await TestSupport.run(
            URL(fileURLWithPath: "/bin/sh"), ["-c", "exec \"$0\" \"$@\" \(redirection)", TestSupport.executable("flujo").path] + arguments,
            environment: env, currentDirectory: folder)
    }

    /// Runs the demo into `db` and returns its run id.
    func demo(_ extra: [String] = []) async throws -> String {
        let output = try await run(["demo", "--db", db, "--seed", "3"] + extra)
        #expect(output.status == 0, "\(output.stderr)")
        let line = try #require(output.stdout.split(separator: "\n").first { $0.hasPrefix("run ") })
        return String(line.split(separator: " ", omittingEmptySubsequences: true)[1])
    }

    func json(_ arguments: [String]) async throws -> Any {
        let output = try await run(arguments)
        #expect(output.status == 0, "\(output.stderr)")
        return try JSONSerialization.jsonObject(with: Data(output.stdout.utf8))
    }
}

@Suite("flujo command")
struct FlujoCommandTests {
    @Test("demo: console trace, summary with next commands, tasks persisted with the asked failures and pauses")
    func demo() async throws {
        let cli = CLI()
        let output = try await cli.run(["demo", "--db", cli.db, "--background", "3", "--fail", "2", "--pause", "1", "--seed", "11"])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout.contains("▶ validate_order"))
        #expect(output.stdout.contains("[bg]"), "the demo shows background work")
        #expect(output.stdout.contains("background 6 task(s): 1 paused, 3 completed, 2 failed"))
        #expect(output.stdout.contains("flujo tasks resume bg_"))
        #expect(output.stdout.contains("--data '{\"approved\": true}'"))
        #expect(output.stdout.contains("flujo tasks retry --parent run_"))
        let tasks = try #require(try await cli.json(["tasks", "list", "--db", cli.db, "--json"]) as? [[String: Any]])
        #expect(tasks.count == 6)
        #expect(Set(tasks[0].keys) == ["task_id", "run_id", "parent_run_id", "step_name", "status", "being_resumed", "error", "error_category", "attempts", "created_at", "updated_at"])
        #expect(tasks.allSatisfy { $0["being_resumed"] as? Bool == false })
        #expect(tasks.filter { $0["status"] as? String == "failed" }.allSatisfy { $0["error_category"] as? String == "network" })
    }

    @Test("a command that wrote closes its store: no write-ahead log is left, and a copy of the file alone holds every row")
    func storeClosedAtExit() async throws {
        let cli = CLI()
        let runID = try await cli.demo(["--background", "4", "--fail", "1"])
        #expect(!FileManager.default.fileExists(atPath: cli.db + "-wal"), "the log was copied into the file and removed")
        let copy = cli.folder.appendingPathComponent("copy.db").path
        try FileManager.default.copyItem(atPath: cli.db, toPath: copy)
        let store = try SQLiteStateStore(path: copy, options: .init(readOnly: true))
        #expect(try await store.load(runID: runID)?.status == .completed)
        #expect(try await store.listBackgroundTasks(BackgroundTaskQuery(parentRunID: runID)).count == 7, "3 fixed background steps and 4 partners")
        store.close()
        // A command that writes after the demo (cleanup) leaves no log either.
        let cleanup = try await cli.run(["tasks", "cleanup", "--db", cli.db])
        #expect(cleanup.status == 0, "\(cleanup.stderr)")
        #expect(!FileManager.default.fileExists(atPath: cli.db + "-wal"))
    }

    @Test("the same seed picks the same failing and pausing tasks")
    func seeded() async throws {
        var picks: [[String]] = []
        for _ in 0..<2 {
            let cli = CLI()
            _ = try await cli.demo(["--background", "5", "--fail", "2", "--pause", "2"])
            let tasks = try #require(try await cli.json(["tasks", "list", "--db", cli.db, "--json"]) as? [[String: Any]])
            picks.append(tasks.filter { $0["status"] as? String != "completed" }.map { "\($0["step_name"]!):\($0["status"]!)" }.sorted())
        }
        #expect(picks[0] == picks[1])
        #expect(picks[0].count == 4)
    }

    @Test("resume a paused task with data, retry the failed ones: all completed; resume reports failure with exit 1")
    func resumeAndRetry() async throws {
        let cli = CLI()
        let runID = try await cli.demo()
        let failed = try #require(try await cli.json(["tasks", "failed", "--db", cli.db, "--json"]) as? [[String: Any]])
        #expect(failed.count == 1)
        let paused = try #require(try await cli.json(["tasks", "list", "--db", cli.db, "--status", "paused", "--json"]) as? [[String: Any]])
        let pausedID = try #require(paused.first?["task_id"] as? String)
        let again = try await cli.run(["tasks", "resume", pausedID, "--db", cli.db])
        #expect(again.status == 0)
        #expect(again.stdout.contains("paused again"))
        let approved = try await cli.run(["tasks", "resume", pausedID, "--db", cli.db, "--data", "{\"approved\": true}"])
        #expect(approved.status == 0, "\(approved.stderr)")
        #expect(approved.stdout.contains("completed (attempt 3)"))
        let retry = try await cli.run(["tasks", "retry", "--parent", runID, "--db", cli.db])
        #expect(retry.status == 0, "\(retry.stderr)")
        #expect(retry.stdout.contains("1 of 1 task(s) completed"))
        let stats = try #require(try await cli.json(["stats", "--db", cli.db, "--json"]) as? [String: Any])
        #expect((stats["background_status_counts"] as? [String: Int])?["completed"] == 5)
        #expect(stats["total_workflows"] as? Int == 6)
        // Completed tasks cannot be resumed: the operation fails with exit 1.
        let done = try await cli.run(["tasks", "resume", pausedID, "--db", cli.db])
        #expect(done.status == 1)
        #expect(done.stderr.contains("only failed, paused or cancelled tasks can be resumed"))
    }

    @Test("show, trace and metrics read the run back")
    func readBack() async throws {
        let cli = CLI()
        let runID = try await cli.demo()
        let tasks = try #require(try await cli.json(["tasks", "list", "--db", cli.db, "--json"]) as? [[String: Any]])
        let taskID = try #require(tasks.first?["task_id"] as? String)
        let show = try #require(try await cli.json(["tasks", "show", taskID, "--db", cli.db, "--json"]) as? [String: Any])
        #expect(show["task_id"] as? String == taskID)
        #expect(show["parent_run_id"] as? String == runID)
        #expect(show["input"] is String)
        let human = try await cli.run(["tasks", "show", taskID, "--db", cli.db])
        #expect(human.stdout.contains("task_id") && human.stdout.contains(taskID))
        let trace = try await cli.run(["trace", runID, "--db", cli.db])
        #expect(trace.status == 0)
        #expect(trace.stdout.contains("pipeline_run"))
        #expect(trace.stdout.contains("├─ validate_order"))
        #expect(trace.stdout.contains("[bg]"))
        #expect(trace.stdout.contains("unset"), "a failed task whose next attempt is scheduled is not an error yet")
        let metrics = try await cli.run(["metrics", "--db", cli.db])
        #expect(metrics.stdout.contains("flujo_background_tasks_by_status{status=\"completed\"} 3"))
        #expect(metrics.stdout.contains("flujo_runs_total 6"))
    }

    @Test("cleanup with a fractional threshold fails only tasks of no known process whose heartbeat stopped")
    func cleanup() async throws {
        let cli = CLI()
        _ = try await cli.demo()
        let store = try SQLiteStateStore(path: cli.db)
        var dead = WorkflowState(runID: "gone_bg_bg_dead", pipelineName: "p", status: .running, isBackgroundTask: true, parentRunID: "gone", taskID: "bg_dead")
        dead.updatedAt = Timestamp.now.adding(seconds: -120)
        try store.saveAll([dead])   // an imported row records no owner process
        let output = try await cli.run(["tasks", "cleanup", "--stale-hours", "0.01", "--db", cli.db])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout.contains("marked 1 stale task(s) failed"))
        #expect(try await store.loadTask(taskID: "bg_dead")?.status == .failed)
    }

    @Test("config check prints every effective setting with its source, secrets hidden")
    func configCheck() async throws {
        let cli = CLI()
        try Data("[background_tasks]\nmax_retries = 5\n".utf8).write(to: cli.folder.appendingPathComponent("flujo.toml"))
        let output = try await cli.run(["config", "check"], environment: ["OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer sekret", "OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout.contains("background_tasks.max_retries"))
        #expect(output.stdout.contains("flujo.toml:2"))
        #expect(output.stdout.contains("authorization=***"))
        #expect(!output.stdout.contains("sekret") && !output.stderr.contains("sekret"))
        let withURI = try await cli.run(["config", "check"], environment: ["FLUJO_STATE_URI": "postgres://app:pa55word@127.0.0.1:1/flujo"])
        #expect(withURI.status == 0 && withURI.stdout.contains("postgres://***@127.0.0.1:1/flujo"), "\(withURI.stdout) \(withURI.stderr)")
        #expect(!withURI.stdout.contains("pa55word") && !withURI.stderr.contains("pa55word"), "a state URI's password is never printed")
        #expect(output.stderr.contains("warning: OTEL_EXPORTER_OTLP_COMPRESSION"))
    }

    @Test("errors: one clear line and the right exit status", arguments: [
        (["tasks", "list", "--db", "missing.db"], Int32(1), "no state database at missing.db"),
        (["tasks", "show", "bg_nope", "--db", "DB"], 1, "no background task with id 'bg_nope'"),
        (["tasks", "resume", "bg_nope", "--db", "DB", "--data", "{\"a\": }"], 2, "--data is not valid JSON"),
        (["tasks", "list", "--db", "DB", "--status", "sleeping"], 2, "sleeping"),
        (["tasks", "list", "--db", "DB", "--limit", "0"], 2, "--limit must be a whole number from 1 to 100000; got 0"),
        (["tasks", "list", "--db", "DB", "--limit", "-5"], 2, "--limit must be a whole number from 1 to 100000; got -5"),
        (["tasks", "cleanup", "--db", "DB", "--stale-hours", "-1"], 2, "--stale-hours must be a number of hours from 0.0001 to 100000; got -1.0"),
        (["prune", "--db", "DB", "--older-than", "5x"], 2, "--older-than must be an age such as 90m, 36h, 7d or 2w (a bare number counts hours); got '5x'"),
        (["prune", "--db", "DB", "--older-than", "-3h"], 2, "--older-than must be an age such as 90m, 36h, 7d or 2w"),
        (["prune", "--db", "DB", "--older-than", "99999999w"], 2, "--older-than may be at most 1000000 hours (about 114 years); got '99999999w'"),
        (["trace", "run_nope", "--db", "DB"], 1, "no run 'run_nope'"),
        (["stats", "--config", "bad.toml"], 1, "bad.toml:2: background_tasks.max_cost_per_tsk: unknown key"),
        (["stats", "--config", "worse.toml"], 1, "error: bad configuration, 2 problems:\n  worse.toml:2: background_tasks.max_cost_per_tsk: unknown key"),
        (["stats", "--config", "absent.toml"], 1, "no such configuration file"),
        (["stats", "--db", "newer.db"], 1, "newer than version"),
        (["tasks", "frobnicate"], 2, "Unexpected argument"),
    ])
    func errors(arguments: [String], status: Int32, message: String) async throws {
        let cli = CLI()
        _ = try await cli.demo()
        try Data("[background_tasks]\nmax_cost_per_tsk = 1\n".utf8).write(to: cli.folder.appendingPathComponent("bad.toml"))
        try Data("[background_tasks]\nmax_cost_per_tsk = 1\nmax_retries = \"x\\u001B[2J\"\n".utf8).write(to: cli.folder.appendingPathComponent("worse.toml"))
        let newer = cli.folder.appendingPathComponent("newer.db").path
        _ = try SQLiteStateStore(path: newer)
        var handle: OpaquePointer?
        sqlite3_open(newer, &handle)
        sqlite3_exec(handle, "PRAGMA user_version = 9", nil, nil, nil)
        sqlite3_close(handle)
        let output = try await cli.run(arguments.map { $0 == "DB" ? cli.db : $0 })
        #expect(output.status == status, "stdout: \(output.stdout) stderr: \(output.stderr)")
        #expect(output.stderr.contains(message), "stderr: \(output.stderr)")
        if status == 1 {
            #expect(output.stderr.hasPrefix("error: "))
            let lines = output.stderr.split(separator: "\n")
            if message.contains("problems:") {
                #expect(lines.count == 3 && lines.dropFirst().allSatisfy { $0.hasPrefix("  worse.toml:") }, "one escaped line per problem")
                #expect(!output.stderr.contains("\u{1B}"), "no terminal escape reaches the terminal")
            } else {
                #expect(lines.count == 1)
            }
        }
        #expect(!FileManager.default.fileExists(atPath: cli.folder.appendingPathComponent("missing.db").path), "reading never creates a database")
    }
}

@Suite("flujo metrics --serve")
struct MetricsServeTests {
    @Test("serves /metrics on the port it reports until Ctrl-C")
    func serve() async throws {
        let cli = CLI()
        _ = try await cli.demo()
        let process = try RunningProcess(TestSupport.executable("flujo"), ["metrics", "--serve", "--port", "0", "--db", cli.db])
        #expect(await process.waitForLine { $0.hasPrefix("serving metrics on http://127.0.0.1:") })
        let line = try #require(process.linesSoFar.first { $0.hasPrefix("serving metrics") })
        let url = try #require(line.split(separator: " ").first { $0.hasPrefix("http://") }).description
        let scrape = try await TestSupport.run(URL(fileURLWithPath: "/usr/bin/env"), ["curl", "-sf", url])
        #expect(scrape.status == 0)
        #expect(scrape.stdout.contains("flujo_background_tasks_by_status{status=\"completed\"} 3"))
        await process.interrupt()
        #expect(process.terminationStatus == 0)
    }
}
