import CSQLite
import Flujo
import FlujoCLI
import FlujoTestSupport
import Foundation
import Testing

/// Every file of a folder with its bytes.
func folderContents(_ folder: URL) throws -> [String: Data] {
    var contents: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) {
        contents[name] = try Data(contentsOf: folder.appendingPathComponent(name))
    }
    return contents
}

/// Runs SQL on a database with a plain connection.
func execute(_ path: String, _ sql: String) throws {
    var db: OpaquePointer?
    guard sqlite3_open(path, &db) == SQLITE_OK else { throw CLIFailure("cannot open \(path)") }
    defer { sqlite3_close(db) }
    guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw CLIFailure(String(cString: sqlite3_errmsg(db))) }
}

struct CLIFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@Suite("Read-only commands")
struct ReadOnlyCommandTests {
    /// The commands that only read, against a database holding a demo run.
    static func readCommands(_ cli: CLI, runID: String, taskID: String) -> [[String]] {
        [
            ["tasks", "list", "--db", cli.db], ["tasks", "list", "--db", cli.db, "--json"],
            ["tasks", "failed", "--db", cli.db], ["tasks", "show", taskID, "--db", cli.db],
            ["stats", "--db", cli.db], ["stats", "--db", cli.db, "--json"],
            ["metrics", "--db", cli.db], ["trace", runID, "--db", cli.db],
        ]
    }

    @Test("tasks list, failed and show, stats, metrics and trace leave every file of the database byte for byte as it was")
    func readsWriteNothing() async throws {
        let cli = CLI()
        let runID = try await cli.demo(["--fail", "1", "--pause", "1"])
        let tasks = try #require(try await cli.json(["tasks", "list", "--db", cli.db, "--json"]) as? [[String: Any]])
        let taskID = try #require(tasks.first?["task_id"] as? String)
        // A stale running task: a read that ran a cleanup would fail it.
        try execute(cli.db, "UPDATE workflow_state SET status = 'running', updated_at = 0 WHERE task_id = '\(taskID)'")
        let before = try folderContents(cli.folder)
        #expect(before.keys.sorted() == ["state.db"], "the writer closed its log: \(before.keys.sorted())")
        for command in Self.readCommands(cli, runID: runID, taskID: taskID) {
            let output = try await cli.run(command, environment: ["FLUJO_BACKGROUND_STALE_TASK_TIMEOUT_HOURS": "0.001"])
            #expect(output.status == 0, "\(command): \(output.stderr)")
            let after = try folderContents(cli.folder)
            #expect(after.keys.sorted() == before.keys.sorted(), "\(command) left files behind: \(after.keys.sorted())")
            #expect(after == before, "\(command) changed the database")
        }
        let shown = try await cli.run(["tasks", "show", taskID, "--db", cli.db])
        #expect(shown.stdout.contains("running"), "no read ran a stale cleanup")
    }

    @Test("a database of the previous schema is read as it is; db upgrade brings it to the current one")
    func previousSchemaIsRead() async throws {
        let cli = CLI()
        _ = try await cli.demo()
        try execute(cli.db, """
            ALTER TABLE workflow_state ADD COLUMN background_error TEXT;
            ALTER TABLE workflow_state ADD COLUMN lease_owner TEXT;
            ALTER TABLE workflow_state ADD COLUMN lease_expires_at INTEGER;
            PRAGMA user_version = 3;
            """)
        let before = try folderContents(cli.folder)
        let listed = try await cli.run(["tasks", "list", "--db", cli.db])
        #expect(listed.status == 0 && listed.stdout.contains("send_receipt"), "\(listed.stderr)")
        #expect(try await cli.run(["stats", "--db", cli.db]).status == 0)
        #expect(try folderContents(cli.folder) == before)
        let upgraded = try await cli.run(["db", "upgrade", "--db", cli.db])
        #expect(upgraded.status == 0 && upgraded.stdout.contains("schema version 6"), "\(upgraded.stdout) \(upgraded.stderr)")
    }

    @Test("a schema too old to read, or an empty file, is a one-line error naming what to do; nothing is written")
    func tooOldIsAnError() async throws {
        let cli = CLI()
        _ = try await cli.demo()
        try execute(cli.db, "PRAGMA user_version = 1")
        let before = try folderContents(cli.folder)
        let old = try await cli.run(["stats", "--db", cli.db])
        #expect(old.status == 1)
        #expect(old.stderr.contains("schema version 1") && old.stderr.contains("flujo db upgrade"), "\(old.stderr)")
        #expect(try folderContents(cli.folder) == before)

        let empty = cli.folder.appendingPathComponent("empty.db").path
        #expect(FileManager.default.createFile(atPath: empty, contents: Data()))
        let emptyRun = try await cli.run(["stats", "--db", empty])
        #expect(emptyRun.status == 1 && emptyRun.stderr.contains("holds no Flujo tables"), "\(emptyRun.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: empty)).isEmpty, "stats did not turn the empty file into a database")
    }
}

@Suite("Read-only commands for a user who cannot write")
struct UnprivilegedReaderTests {
    /// Runs `flujo` as the user `nobody`, when this process may switch users (root, as in CI).
    static func runAsNobody(_ binary: URL, _ arguments: [String]) async throws -> TestSupport.ProcessOutput? {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser") else { return nil }
        return try await TestSupport.run(URL(fileURLWithPath: "/usr/sbin/runuser"), ["-u", "nobody", "--", binary.path] + arguments, environment: ["NO_COLOR": "1", "PATH": "/usr/bin:/bin"])
    }

    @Test("a user who can write neither the file nor its folder lists, shows and counts tasks, with and without a log file; writes fail clearly")
    func nobodyReads() async throws {
        let folder = URL(fileURLWithPath: "/tmp/flujo-readonly-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        defer { try? FileManager.default.removeItem(at: folder) }
        let binary = folder.appendingPathComponent("flujo")
        try FileManager.default.copyItem(at: TestSupport.executable("flujo"), to: binary)
        let db = folder.appendingPathComponent("state.db").path
        let setup = try await TestSupport.run(binary, ["demo", "--db", db], environment: ["NO_COLOR": "1"])
        #expect(setup.status == 0, "\(setup.stderr)")
        for withLog in [true, false] {
            if !withLog {
                // Fold the log into the file and remove it, as a writer that closed cleanly leaves it.
                try execute(db, "PRAGMA wal_checkpoint(TRUNCATE)")
                for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db + suffix) }
            }
            let before = try folderContents(folder)
            guard let listed = try await Self.runAsNobody(binary, ["tasks", "list", "--db", db]) else {
                Issue.record("this test needs root and runuser to act as another user")
                return
            }
            #expect(listed.status == 0 && listed.stdout.contains("send_receipt"), "with log \(withLog): \(listed.stderr)")
            let stats = try await Self.runAsNobody(binary, ["stats", "--db", db, "--json"])
            #expect(stats?.status == 0, "with log \(withLog): \(stats?.stderr ?? "")")
            #expect(try folderContents(folder) == before, "with log \(withLog): nothing written")
            let write = try await Self.runAsNobody(binary, ["tasks", "cleanup", "--db", db])
            #expect(write?.status == 1 && write?.stderr.contains("read-only") == true, "\(write?.stderr ?? "")")
        }
    }
}

@Suite("flujo prune")
struct PruneCommandTests {
    @Test("prune: nothing without a setting or --older-than; --dry-run counts and writes nothing; a prune keeps the counters right and flujo_runs_total never goes down")
    func prune() async throws {
        let cli = CLI()
        _ = try await cli.demo(["--fail", "1", "--pause", "1"])
        let nothing = try await cli.run(["prune", "--db", cli.db])
        #expect(nothing.status == 2 && nothing.stderr.contains("keep_completed_hours"), "\(nothing.stderr)")
        let before = try folderContents(cli.folder)
        let dry = try await cli.run(["prune", "--older-than", "0d", "--dry-run", "--db", cli.db])
        #expect(dry.status == 0 && dry.stdout.contains("would delete 4 run(s) and task(s)"), "\(dry.stdout) \(dry.stderr)")
        #expect(try folderContents(cli.folder) == before, "a dry run writes nothing")
        let young = try await cli.run(["prune", "--older-than", "1w", "--dry-run", "--db", cli.db])
        #expect(young.status == 0 && young.stdout.contains("would delete 0 run(s)"), "nothing is a week old: \(young.stdout) \(young.stderr)")
        let metricsBefore = try await cli.run(["metrics", "--db", cli.db])
        let pruned = try await cli.run(["prune", "--older-than", "0", "--db", cli.db])
        #expect(pruned.status == 0 && pruned.stdout.contains("deleted 4 run(s) and task(s)"), "\(pruned.stdout) \(pruned.stderr)")
        let tasks = try #require(try await cli.json(["tasks", "list", "--db", cli.db, "--json"]) as? [[String: Any]])
        #expect(Set(tasks.compactMap { $0["status"] as? String }) == ["failed", "paused"], "the retryable failure and the paused task are kept")
        #expect(try await cli.run(["db", "check", "--db", cli.db]).status == 0, "the counters equal a recount")
        let metricsAfter = try await cli.run(["metrics", "--db", cli.db])
        let total = { (text: String) in text.split(separator: "\n").first { $0.hasPrefix("flujo_runs_total ") } }
        #expect(total(metricsBefore.stdout) == total(metricsAfter.stdout), "runs ever persisted: \(String(describing: total(metricsAfter.stdout)))")
    }
}

@Suite("ages on the command line")
struct AgeOptionTests {
    @Test("an age is a number with s, m, h, d or w, or a bare number of hours", arguments: [
        ("30s", 30.0 / 3600), ("90m", 1.5), ("36h", 36.0), ("7d", 168.0), ("2w", 336.0), ("1.5", 1.5), ("0", 0.0), ("0.5d", 12.0),
    ])
    func valid(text: String, hours: Double) {
        #expect(OptionRange.hours(fromAge: text) == hours)
    }

    @Test("anything else is refused", arguments: ["", "h", "-1h", "+1h", "1e3", "inf", "nan", "1.2.3", "5x", "7 d", "\u{0663}h", "1hh"])
    func refused(text: String) {
        #expect(OptionRange.hours(fromAge: text) == nil)
    }
}

@Suite("flujo worker")
struct WorkerCommandTests {
    @Test("worker --once runs the demo's due retryable failures, leaves the paused task alone, and reports")
    func once() async throws {
        let cli = CLI()
        _ = try await cli.demo(["--fail", "2", "--pause", "1"])
        try await Task.sleep(for: .milliseconds(700))   // the first retry is due after retry_base_delay_ms (500)
        let output = try await cli.run(["worker", "--once", "--concurrency", "2", "--db", cli.db])
        #expect(output.status == 0 && output.stdout.contains("ran 2 task(s): 2 completed, 0 failed"), "\(output.stdout) \(output.stderr)")
        let tasks = try #require(try await cli.json(["tasks", "list", "--db", cli.db, "--json"]) as? [[String: Any]])
        #expect(tasks.filter { $0["status"] as? String == "failed" }.isEmpty)
        #expect(tasks.filter { $0["status"] as? String == "paused" }.count == 1)
        let refused = try await cli.run(["worker", "--concurrency", "0", "--db", cli.db])
        #expect(refused.status == 2)
    }

    @Test("SIGTERM stops a waiting worker: it claims nothing more, shuts telemetry down and exits 143", .timeLimit(.minutes(1)))
    func gracefulStop() async throws {
        let cli = CLI()
        var environment = ProcessInfo.processInfo.environment
        environment["NO_COLOR"] = "1"
        let process = try RunningProcess(TestSupport.executable("flujo"), ["worker", "--poll-ms", "50", "--db", cli.db], environment: environment)
        #expect(await process.waitForLine { $0.hasPrefix("worker running: 1 at once") })
        let sent = ContinuousClock.now
        process.send(SIGTERM)
        #expect(await process.waitForExit(upTo: .seconds(30)), "the worker stops on SIGTERM")
        #expect(ContinuousClock.now - sent < .seconds(20), "within the shutdown timeout and the telemetry bound")
        #expect(process.terminationStatus == 143)
        #expect(FileManager.default.fileExists(atPath: cli.db))
        #expect(!FileManager.default.fileExists(atPath: cli.db + "-wal"), "the store was closed before the exit: no log is left beside the file")
    }

    @Test("a SIGTERM sent as soon as the worker says it runs is never lost: 50 workers, each stopped at once", .timeLimit(.minutes(2)))
    func signalRightAfterStart() async throws {
        var environment = ProcessInfo.processInfo.environment
        environment["NO_COLOR"] = "1"
        // The signal's handler is installed on another thread after the source is set up;
        // a signal in between used to be ignored, and the worker never stopped (about 1 in 70).
        for _ in 0..<50 {
            let cli = CLI()
            let process = try RunningProcess(TestSupport.executable("flujo"), ["worker", "--poll-ms", "50", "--db", cli.db], environment: environment)
            #expect(await process.waitForLine { $0.hasPrefix("worker running: 1 at once") })
            process.send(SIGTERM)
            #expect(await process.waitForExit(upTo: .seconds(15)), "the SIGTERM was lost")
            #expect(process.terminationStatus == 143)
        }
    }
}
