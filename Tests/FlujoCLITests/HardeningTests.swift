import Flujo
import FlujoTestSupport
import Foundation
import Testing

/// What an attacker or an unlucky operator can type, and the answer each gets.
@Suite("Hostile input")
struct HardeningTests {
    /// Expects a one-line error on standard error with exit status 2, naming `option`.
    static func expectRefused(_ output: TestSupport.ProcessOutput, naming option: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(output.status == 2, "exit \(output.status): \(output.stderr)", sourceLocation: sourceLocation)
        #expect(output.stderr.contains(option), "\(output.stderr)", sourceLocation: sourceLocation)
        #expect(output.stderr.trimmingCharacters(in: .newlines).split(separator: "\n").count <= 2, "\(output.stderr)", sourceLocation: sourceLocation)
    }

    @Test("numbers out of range on the command line are refused before any work, with exit 2: no trap", arguments: [
        (["tasks", "failed", "--hours", "inf"], "--hours"),
        (["tasks", "failed", "--hours", "1e308"], "--hours"),
        (["tasks", "failed", "--hours", "3e12"], "--hours"),
        (["tasks", "failed", "--hours", "nan"], "--hours"),
        (["tasks", "failed", "--hours", "-1"], "--hours"),
        (["tasks", "cleanup", "--stale-hours", "inf"], "--stale-hours"),
        (["tasks", "cleanup", "--stale-hours", "0"], "--stale-hours"),
        (["tasks", "retry", "--max-retries", "9223372036854775807"], "--max-retries"),
        (["tasks", "list", "--limit", "9223372036854775807"], "--limit"),
        (["demo", "--fail", "9223372036854775807"], "--fail"),
        (["demo", "--pause", "9223372036854775807", "--fail", "9223372036854775807"], "--"),
        (["demo", "--task-ms", "9223372036854775807"], "--task-ms"),
        (["demo", "--metrics-port", "70000"], "--metrics-port"),
        (["metrics", "--port", "-1"], "--port"),
    ])
    func numbersOutOfRange(arguments: [String], option: String) async throws {
        let cli = CLI()
        _ = try await cli.demo()
        let before = try folderContents(cli.folder)
        let output = try await cli.run(arguments + ["--db", cli.db])
        Self.expectRefused(output, naming: option)
        #expect(try folderContents(cli.folder) == before, "nothing was started or written")
    }

    @Test("standard output on a full disk or closed: the work is done, the command says its output is incomplete and exits 1, no trap")
    func standardOutputThatCannotBeWritten() async throws {
        let cli = CLI()
        // The demo's run and tasks are all saved although none of its lines could be printed.
        let demo = try await cli.run(["demo", "--db", cli.db, "--background", "4", "--fail", "1", "--pause", "1", "--seed", "5"], standardOutput: ">/dev/full")
        #expect(demo.status == 1, "exit \(demo.status): \(demo.stderr)")
        #expect(demo.stderr.contains("error: cannot write to standard output: No space left on device; the output is incomplete"), "\(demo.stderr)")
        #expect(!demo.stderr.contains("Fatal error"), "\(demo.stderr)")
        let tasks = try #require(try await cli.json(["tasks", "list", "--db", cli.db, "--json"]) as? [[String: Any]])
        let statuses = tasks.compactMap { $0["status"] as? String }.sorted()
        #expect(statuses.count == 7, "\(statuses)")
        #expect(!statuses.contains("running"), "\(statuses)")
        for (arguments, redirection, reason) in [
            (["tasks", "list"], ">/dev/full", "No space left on device"),
            (["stats", "--json"], ">/dev/full", "No space left on device"),
            (["metrics"], ">/dev/full", "No space left on device"),
            // Closed: the descriptor may be taken by then by a file the runtime opened; its error varies.
            (["tasks", "list"], ">&-", ""),
        ] {
            let output = try await cli.run(arguments + ["--db", cli.db], standardOutput: redirection)
            #expect(output.status == 1, "\(arguments) \(redirection): exit \(output.status): \(output.stderr)")
            #expect(output.stderr.hasPrefix("error: cannot write to standard output: \(reason)"), "\(arguments) \(redirection): \(output.stderr)")
            #expect(output.stderr.hasSuffix("; the output is incomplete\n"), "\(arguments) \(redirection): \(output.stderr)")
            #expect(output.stderr.split(separator: "\n").count == 1, "\(arguments) \(redirection): \(output.stderr)")
        }
        #expect(try await cli.run(["db", "check", "--db", cli.db]).status == 0, "nothing was written into the database")
        // The same commands with a writable standard output succeed: the failure above is the stream's.
        let listed = try await cli.run(["tasks", "list", "--db", cli.db])
        #expect(listed.status == 0 && listed.stdout.split(separator: "\n").count == 8, "\(listed.stdout)\(listed.stderr)")
    }

    @Test("fuzzed numbers for every numeric option: exit 0, 1 or 2, never a signal")
    func fuzzedNumbers() async throws {
        let cli = CLI()
        _ = try await cli.demo()
        var random = SeededRandomNumberGenerator(seed: 12)
        let numbers = ["0", "-0", "1", "-1", "2147483648", "-9223372036854775808", "9223372036854775807", "9223372036854775808",
                       "1e308", "-1e308", "1e-320", "inf", "-inf", "nan", "0x10", "1_000", "", " 5", "5 ", "٣", "1e3", "0.5"]
        let options: [([String], String)] = [
            (["tasks", "failed"], "--hours"), (["tasks", "cleanup"], "--stale-hours"), (["tasks", "retry"], "--max-retries"),
            (["tasks", "list"], "--limit"), (["demo", "--background", "0"], "--fail"), (["demo", "--background", "0"], "--pause"),
            (["demo", "--background", "0"], "--task-ms"), (["demo"], "--background"),
        ]
        for _ in 0..<24 {
            let (command, option) = options[Int(random.next() % UInt64(options.count))]
            let number = numbers[Int(random.next() % UInt64(numbers.count))]
            let output = try await cli.run(command + [option, number, "--db", cli.db])
            #expect([0, 1, 2].contains(output.status), "\(command) \(option) \(number.debugDescription): exit \(output.status) \(output.stderr)")
        }
    }
}

@Suite("Hostile files and texts")
struct HostileFilesTests {
    @Test("a configuration over 1 MiB is refused at once, naming the limit; a FIFO or a device is named as such; a failed read is an error")
    func configurationFiles() async throws {
        let cli = CLI()
        _ = try await cli.demo()
        let big = cli.folder.appendingPathComponent("big.toml")
        try Data(repeating: UInt8(ascii: "#"), count: 2 << 20).write(to: big)
        let refused = try await cli.run(["stats", "--config", big.path, "--db", cli.db])
        #expect(refused.status == 1 && refused.stderr.contains("at most 1048576 bytes (1 MiB)"), "\(refused.stderr)")
        let fifo = cli.folder.appendingPathComponent("fifo").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let piped = try await cli.run(["stats", "--config", fifo, "--db", cli.db])
        #expect(piped.status == 1 && piped.stderr.contains("is a FIFO (named pipe), not a configuration file"), "\(piped.stderr)")
        let device = try await cli.run(["stats", "--config", "/dev/zero", "--db", cli.db])
        #expect(device.status == 1 && device.stderr.contains("is a character device"), "\(device.stderr)")
        #expect(!device.stderr.contains("permission"))
        // A regular file whose read fails (here with EIO) is an error, not an empty file of defaults.
        let unreadable = try await cli.run(["stats", "--config", "/proc/self/mem", "--db", cli.db])
        #expect(unreadable.status == 1 && unreadable.stderr.contains("/proc/self/mem: cannot read the file: Input/output error"), "\(unreadable.stderr)")
    }

    @Test("configurations built to exhaust the parser or the loader: answered in seconds, one line or a bounded list, no crash")
    func pathologicalConfigurations() async throws {
        let cli = CLI()
        _ = try await cli.demo()
        func check(_ name: String, _ text: String) async throws -> TestSupport.ProcessOutput {
            let file = cli.folder.appendingPathComponent(name)
            try text.write(to: file, atomically: true, encoding: .utf8)
            return try await cli.run(["config", "check", "--config", file.path])
        }
        // A key of 300,000 dotted parts: the parser would nest that deep and overflow its stack.
        let dotted = try await check("dotted.toml", "a" + String(repeating: ".a", count: 300_000) + " = 1\n")
        #expect(dotted.status == 1 && dotted.stderr == "error: bad configuration: \(cli.folder.path)/dotted.toml:1: not valid TOML: a key of 300001 dotted parts; at most 64 are read (Flujo's keys have at most 3)\n", "\(dotted.stderr.prefix(300))")
        let header = try await check("header.toml", "[" + String(repeating: "a.", count: 70) + "b]\nx = 1\n")
        #expect(header.status == 1 && header.stderr.contains("header.toml:1: not valid TOML: a key of 71 dotted parts"), "\(header.stderr.prefix(300))")
        let inline = try await check("inline.toml", "[state]\nx = {" + String(repeating: "a.", count: 100) + "b = 1}\n")
        #expect(inline.status == 1 && inline.stderr.contains("inline.toml:2: not valid TOML: a key of 101 dotted parts"), "\(inline.stderr.prefix(300))")
        // 64 parts are still read (here: an unknown section, named with its line).
        let sixtyFour = try await check("sixtyfour.toml", "a" + String(repeating: ".a", count: 63) + " = 1\n")
        #expect(sixtyFour.status == 1 && sixtyFour.stderr.contains("sixtyfour.toml:1: a: unknown section"), "\(sixtyFour.stderr.prefix(300))")
        // Values nested 400,000 deep: the parser's own limit, reported.
        let nested = try await check("nested.toml", "a = " + String(repeating: "[", count: 400_000) + String(repeating: "]", count: 400_000) + "\n")
        #expect(nested.status == 1 && nested.stderr.contains("exceeded maximum nested value depth of 256"), "\(nested.stderr.prefix(300))")
        // 60,000 unknown sections (770 KB): each problem found with its line in one pass, the first 50 printed.
        let started = ContinuousClock.now
        let many = try await check("many.toml", (0..<60_000).map { "[t\($0)]\nx = 1\n" }.joined())
        #expect(ContinuousClock.now - started < .seconds(60), "was minutes: the line of each key was searched from the top")
        let lines = many.stderr.split(separator: "\n")
        #expect(many.status == 1 && lines.first == "error: bad configuration, 60000 problems:", "\(many.stderr.prefix(300))")
        #expect(lines.count == 52 && lines[1].hasSuffix("many.toml:1: t0: unknown section. Known sections: [background_tasks], [state], [telemetry], [telemetry.console], [telemetry.otlp], [telemetry.otlp_metrics], [telemetry.prometheus]."), "\(lines.prefix(3))")
        #expect(lines[50].contains("many.toml:99: t49: unknown section"), "\(lines[50])")
        #expect(lines.last == "  ... and 59950 more")
    }

    @Test("--data with a lone surrogate names it and where it is")
    func loneSurrogate() async throws {
        let cli = CLI()
        _ = try await cli.demo()
        let output = try await cli.run(["tasks", "resume", "bg_x", "--data", #"{"x":"\ud800"}"#, "--db", cli.db])
        #expect(output.status == 2)
        #expect(output.stderr.contains(#"lone UTF-16 surrogate \ud800 at character 6"#), "\(output.stderr)")
        #expect(JSONValue.loneSurrogateOffset(#"["\udc00"]"#) == 2)
        #expect(JSONValue.loneSurrogateOffset(#"["\ud83d\ude00", "\\ud800"]"#) == nil, "a pair, and an escaped backslash, are fine")
    }

    @Test("state locations that cannot persist are refused, and no folder is made", arguments: [":memory:", "file:junk/state.db?mode=memory", "file::memory:?cache=shared"])
    func memoryDatabases(location: String) async throws {
        let cli = CLI()
        let output = try await cli.run(["demo", "--db", location])
        #expect(output.status == 2 && output.stderr.contains("cannot persist"), "\(output.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: cli.folder.path).isEmpty, "nothing created")
    }

    @Test("step names and errors with escape sequences and newlines are escaped in tables and show; JSON keeps them exact")
    func terminalEscapes() async throws {
        let cli = CLI()
        _ = try await cli.demo()
        let tasks = try #require(try await cli.json(["tasks", "list", "--db", cli.db, "--json"]) as? [[String: Any]])
        let taskID = try #require(tasks.first?["task_id"] as? String)
        try execute(cli.db, "UPDATE workflow_state SET status = 'failed', error_message = 'boom' || char(27) || '[2J' || char(10) || 'FAKE LINE', step_name = 'st' || char(27) || ']0;owned' || char(7) || 'ep' WHERE task_id = '\(taskID)'")
        for command in [["tasks", "list"], ["tasks", "failed"], ["tasks", "show", taskID]] {
            let output = try await cli.run(command + ["--db", cli.db])
            #expect(output.status == 0, "\(output.stderr)")
            #expect(!output.stdout.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 }, "\(command) wrote raw control characters")
            #expect(!output.stdout.contains("\nFAKE LINE"), "\(command) let a stored newline start a line")
            #expect(output.stdout.contains("\\u{1B}"), "\(command) shows the escape instead")
        }
        let json = try #require(try await cli.json(["tasks", "show", taskID, "--db", cli.db, "--json"]) as? [String: Any])
        #expect(json["error"] as? String == "boom\u{1B}[2J\nFAKE LINE")
        #expect(json["step_name"] as? String == "st\u{1B}]0;owned\u{7}ep")
    }
}

@Suite("Hostile database files")
struct HostileDatabaseTests {
    @Test("schema objects Flujo did not create are refused before they run; db check lists them and says what to do", arguments: [
        ("CREATE TRIGGER wipe AFTER UPDATE ON workflow_state BEGIN DELETE FROM workflow_state; END;", "trigger wipe on workflow_state"),
        ("ALTER TABLE workflow_state ADD COLUMN padding BLOB;", "column workflow_state.padding"),
        ("""
         ALTER TABLE runs RENAME TO runs_old;
         CREATE TABLE runs (run_id TEXT PRIMARY KEY, pipeline_name TEXT NOT NULL, pipeline_version TEXT NOT NULL, status TEXT NOT NULL,
             started_at INTEGER NOT NULL, ended_at INTEGER, cost_usd REAL NOT NULL DEFAULT 0, tokens INTEGER NOT NULL DEFAULT 0,
             background_cost_usd REAL NOT NULL DEFAULT 0, background_tokens INTEGER NOT NULL DEFAULT (length(randomblob(100000000))));
         INSERT INTO runs SELECT * FROM runs_old;
         DROP TABLE runs_old;
         """, "of runs.background_tokens (Flujo's is 0)"),
        ("CREATE VIEW everything AS SELECT * FROM workflow_state;", "view everything"),
        ("CREATE INDEX sneaky ON workflow_state (lower(status));", "index sneaky on workflow_state"),
    ])
    func foreignObjects(sql: String, named: String) async throws {
        let cli = CLI()
        _ = try await cli.demo()
        try execute(cli.db, sql)
        let rowsBefore = try await cli.run(["db", "check", "--db", cli.db, "--json"])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(rowsBefore.stdout.utf8)) as? [String: Any])
        #expect(rowsBefore.status == 1)
        #expect((report["foreign_objects"] as? [String])?.contains { $0.contains(named) } == true, "\(report)")
        #expect((report["advice"] as? [String])?.isEmpty == false)
        for command in [["tasks", "list"], ["demo"], ["tasks", "cleanup"]] {
            let output = try await cli.run(command + ["--db", cli.db])
            #expect(output.status == 1, "\(command): \(output.stdout)")
            #expect(output.stderr.contains("Flujo did not create") && output.stderr.contains(named) && output.stderr.contains("flujo db check"), "\(output.stderr)")
        }
        let size = try FileManager.default.attributesOfItem(atPath: cli.db)[.size] as? Int ?? 0
        #expect(size < 10_000_000, "no default or index ran: \(size) bytes")
    }

    @Test("values at the ends of their range in an edited file: every command answers, none traps", arguments: [
        "UPDATE workflow_state SET attempts = 9223372036854775807, tokens = 9223372036854775807, cost_usd = 1.7e308 WHERE status = 'failed'",
        "UPDATE workflow_state SET attempts = -9223372036854775808, tokens = -9223372036854775808 WHERE status = 'failed'",
        "UPDATE workflow_state SET created_at = -9223372036854775808, updated_at = 9223372036854775807, next_attempt_at = -9223372036854775808",
        "UPDATE stat_totals SET value = 1e308",
        "UPDATE status_counts SET count = 9223372036854775807",
        "UPDATE spans SET start_unix_nano = 9223372036854775807, end_unix_nano = -9223372036854775808",
        "UPDATE steps SET latency_s = 1e308, attempts = -9223372036854775808, finished_at = 9223372036854775807",
    ])
    func extremeStoredValues(sql: String) async throws {
        let cli = CLI()
        let runID = try await cli.demo(["--background", "2", "--fail", "1"])
        let failed = try #require(try await cli.json(["tasks", "failed", "--db", cli.db, "--json"]) as? [[String: Any]])
        let taskID = try #require(failed.first?["task_id"] as? String)
        try execute(cli.db, sql)
        for command in [
            ["tasks", "list"], ["tasks", "list", "--json"], ["tasks", "show", taskID], ["tasks", "show", taskID, "--json"], ["tasks", "failed"],
            ["stats"], ["stats", "--json"], ["metrics"], ["trace", runID], ["db", "check"], ["tasks", "resume", taskID],
            ["tasks", "retry"], ["worker", "--once"], ["prune", "--older-than", "1m", "--dry-run"],
        ] {
            let output = try await cli.run(command + ["--db", cli.db])
            #expect([0, 1].contains(output.status), "\(command): exit \(output.status): \(output.stderr.prefix(300))")
            #expect(!output.stderr.contains("Fatal error") && !output.stderr.contains("runtime failure"), "\(command): \(output.stderr.prefix(300))")
        }
    }

    @Test("a stored span tree 20,000 deep, and spans whose parents form a loop: trace draws them all, bounded in width, no stack overflow")
    func deepAndLoopedSpans() async throws {
        let cli = CLI()
        let runID = try await cli.demo(["--background", "1"])
        let before = try await cli.run(["trace", runID, "--db", cli.db])
        #expect(before.status == 0, "\(before.stderr)")
        let spanLines = before.stdout.split(separator: "\n").count - 1
        try execute(cli.db, """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
            INSERT INTO spans (span_id, trace_id, parent_span_id, run_id, name, start_unix_nano, end_unix_nano)
            SELECT printf('d%015x', i), 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', CASE WHEN i = 1 THEN NULL ELSE printf('d%015x', i - 1) END,
                   '\(runID)', 'deep', 1000 + i, 2000 + i FROM n;
            INSERT INTO spans (span_id, trace_id, parent_span_id, run_id, name, start_unix_nano, end_unix_nano) VALUES
                ('loopa', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'loopb', '\(runID)', 'loop', 1, 2),
                ('loopb', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'loopa', '\(runID)', 'loop', 1, 2),
                ('self', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'self', '\(runID)', 'loop', 1, 2);
            """)
        let output = try await cli.run(["trace", runID, "--db", cli.db])
        #expect(output.status == 0, "exit \(output.status): \(output.stderr.prefix(300))")
        let lines = output.stdout.split(separator: "\n")
        #expect(lines.count == 1 + spanLines + 20_000 + 1 + 3, "\(lines.count) lines")
        #expect(lines.filter { $0.contains("deep  ") }.count == 20_000)
        #expect(lines.contains { $0.hasSuffix("(depth 19999)") }, "the deepest span says its depth (its root is depth 0)")
        #expect(lines.contains("3 span(s) whose parents form a loop, so no root reaches them:"))
        #expect((lines.map(\.count).max() ?? 0) < 250, "lines stay bounded in width")
    }

    @Test("db check: a healthy file passes; wrong counters and damaged pages are found, and the counters rebuilt")
    func check() async throws {
        let cli = CLI()
        _ = try await cli.demo(["--background", "20"])
        let healthy = try await cli.run(["db", "check", "--db", cli.db])
        #expect(healthy.status == 0 && healthy.stdout.contains("integrity  ok") && healthy.stdout.contains("counters   ok"), "\(healthy.stdout)")
        let healthyReport = try #require(try await cli.json(["db", "check", "--db", cli.db, "--json"]) as? [String: Any])
        #expect(healthyReport["counters_checked"] as? Bool == true)
        #expect(healthy.stdout.contains("disk       local"), "a temporary folder is on a local disk: \(healthy.stdout)")
        #expect(healthyReport["network_file_system"] is NSNull)

        try execute(cli.db, "UPDATE status_counts SET count = count + 5 WHERE is_background = 1 AND status = 'completed'")
        let wrong = try await cli.run(["db", "check", "--db", cli.db])
        #expect(wrong.status == 1 && wrong.stdout.contains("background tasks completed: counter"), "\(wrong.stdout)")
        #expect(wrong.stdout.contains("flujo db upgrade --rebuild-counters"))
        let rebuilt = try await cli.run(["db", "upgrade", "--rebuild-counters", "--db", cli.db])
        #expect(rebuilt.status == 0, "\(rebuilt.stderr)")
        #expect(try await cli.run(["db", "check", "--db", cli.db]).status == 0)

        // Damage a page in the middle of the file.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: cli.db))
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: size / 2)
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 4096))
        try handle.close()
        let damaged = try await cli.run(["db", "check", "--db", cli.db])
        #expect(damaged.status == 1, "\(damaged.stdout) \(damaged.stderr)")
        #expect(damaged.stdout.contains("integrity  damaged; "), "\(damaged.stdout) \(damaged.stderr)")
        #expect(damaged.stdout.contains("counters   not checked: the file is damaged"), "no recount of a damaged file is called ok: \(damaged.stdout)")
        #expect(!damaged.stdout.contains("\\n") && !damaged.stdout.contains("*** in database"), "one problem a line: \(damaged.stdout)")
        let lines = damaged.stdout.split(separator: "\n")
        let first = try #require(lines.firstIndex { $0.hasPrefix("integrity  damaged") })
        let problems = lines[(first + 1)...].prefix { $0.hasPrefix("  ") }
        #expect(!problems.isEmpty, "\(damaged.stdout)")
        let damagedJSON = try await cli.run(["db", "check", "--db", cli.db, "--json"])
        #expect(damagedJSON.status == 1)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(damagedJSON.stdout.utf8)) as? [String: Any])
        let damage = try #require(report["damage"] as? [String])
        #expect(damage.count == problems.count && damage.allSatisfy { !$0.contains("\n") }, "\(damage)")
        #expect(report["counters_checked"] as? Bool == false && report["healthy"] as? Bool == false)
        // A command that reads the damaged page says so, and where to look.
        let list = try await cli.run(["tasks", "list", "--limit", "1000", "--db", cli.db])
        #expect(list.status == 1 && list.stderr.contains("is damaged") && list.stderr.contains("`flujo db check` lists what is damaged"), "\(list.stderr)")
    }
}

@Suite("Signals")
struct SignalTests {
    static func longDemo(_ cli: CLI, shutdownSeconds: String) throws -> RunningProcess {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OTEL_") && !$0.key.hasPrefix("FLUJO_") }
        environment["FLUJO_BACKGROUND_SHUTDOWN_TIMEOUT_SECONDS"] = shutdownSeconds
        environment["NO_COLOR"] = "1"
        return try RunningProcess(TestSupport.executable("flujo"), [
            "demo", "--db", cli.db, "--task-ms", "60000", "--background", "2", "--fail", "0", "--pause", "0",
        ], environment: environment)
    }

    @Test("SIGTERM and SIGINT during the demo: what still runs is saved cancelled within the shutdown timeout, exit 143 or 130", arguments: [(SIGTERM, Int32(143)), (SIGINT, Int32(130))])
    func gracefulStop(signal: Int32, status: Int32) async throws {
        let cli = CLI()
        let process = try Self.longDemo(cli, shutdownSeconds: "0.5")
        #expect(await process.waitForLine { $0.hasPrefix("waiting for") })
        let sent = ContinuousClock.now
        process.send(signal)
        await process.waitForExit()
        #expect(ContinuousClock.now - sent < .seconds(30), "stopped within the shutdown timeout and the telemetry bound")
        #expect(process.terminationStatus == status)
        let tasks = try #require(try await cli.json(["tasks", "list", "--db", cli.db, "--json"]) as? [[String: Any]])
        #expect(tasks.count == 5)
        #expect(tasks.allSatisfy { $0["status"] as? String == "cancelled" }, "\(tasks.map { $0["status"] ?? "?" })")
        #expect(tasks.allSatisfy { $0["error_category"] as? String == "cancelled" })
    }

    @Test("a second signal exits at once")
    func secondSignal() async throws {
        let cli = CLI()
        let process = try Self.longDemo(cli, shutdownSeconds: "60")
        #expect(await process.waitForLine { $0.hasPrefix("waiting for") })
        process.send(SIGINT)
        try await Task.sleep(for: .milliseconds(200))
        let second = ContinuousClock.now
        process.send(SIGINT)
        await process.waitForExit()
        #expect(ContinuousClock.now - second < .seconds(30), "long before the 60 s shutdown timeout a graceful stop would wait")
        #expect(process.terminationStatus == 130)
    }
}

@Suite("A full disk")
struct FullDiskTests {
    static func mount(_ folder: String, size: String, remount: Bool = false) async throws -> Int32 {
        let options = (remount ? "remount," : "") + "size=\(size)"
        return try await TestSupport.run(URL(fileURLWithPath: "/usr/bin/env"), ["mount", "-t", "tmpfs", "-o", options, "tmpfs", folder]).status
    }

    @Test("outcomes that cannot be written are kept, retried and reported: exit non-zero; once space is back, every task is recovered and resumes",
          .enabled(if: getuid() == 0, "mounting a small tmpfs needs root (CI runs as root)"))
    func fullDisk() async throws {
        let folder = TestSupport.temporaryDirectory("flujo-full").path
        #expect(try await Self.mount(folder, size: "16m") == 0)
        let db = folder + "/state.db"
        let cli = CLI()
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OTEL_") && !$0.key.hasPrefix("FLUJO_") }
        environment["NO_COLOR"] = "1"
        let demo = try RunningProcess(TestSupport.executable("flujo"), [
            "demo", "--db", db, "--background", "10", "--fail", "0", "--pause", "0", "--task-ms", "4000",
        ], environment: environment)
        #expect(await demo.waitForLine { $0.hasPrefix("waiting for") })
        // The disk fills up while the 13 tasks work: none of their outcomes can be written.
        let filler = folder + "/filler"
        #expect(FileManager.default.createFile(atPath: filler, contents: nil))
        let handle = try #require(FileHandle(forWritingAtPath: filler))
        let chunk = Data(repeating: 0, count: 64 * 1024)
        while (try? handle.write(contentsOf: chunk)) != nil {}
        try? handle.close()
        await demo.waitForExit()
        #expect(demo.terminationStatus == 1, "a lost outcome is never exit 0")
        let lost = try #require(try await cli.json(["tasks", "list", "--db", db, "--json", "--limit", "1000"]) as? [[String: Any]])
        #expect(lost.count == 13, "every launched task is in the file")
        #expect(lost.allSatisfy { $0["status"] as? String == "running" }, "the outcomes were not written, and nothing says otherwise")
        // Space comes back: the tasks are found (their process has ended) and run again.
        try FileManager.default.removeItem(atPath: filler)
        let cleanup = try await cli.run(["tasks", "cleanup", "--db", db])
        #expect(cleanup.stdout.contains("failed 13 running task(s) whose process has ended"), "\(cleanup.stdout) \(cleanup.stderr)")
        let recovered = try #require(try await cli.json(["tasks", "failed", "--db", db, "--json"]) as? [[String: Any]])
        #expect(recovered.count == 13 && recovered.allSatisfy { $0["error_category"] as? String == "lost_worker" })
        let taskID = try #require(recovered.first?["task_id"] as? String)
        let resumed = try await cli.run(["tasks", "resume", taskID, "--db", db])
        #expect(resumed.status == 0 && resumed.stdout.contains("completed"), "\(resumed.stdout) \(resumed.stderr)")
        _ = try await TestSupport.run(URL(fileURLWithPath: "/usr/bin/env"), ["umount", "-l", folder])
    }
}

@Suite("Trace context from the environment")
struct TraceParentCommandTests {
    @Test("TRACEPARENT makes the demo's run part of the caller's trace; a malformed one is a warning and a new trace")
    func traceParent() async throws {
        let cli = CLI()
        let joined = try await cli.run(["demo", "--db", cli.db], environment: ["TRACEPARENT": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"])
        #expect(joined.status == 0, "\(joined.stderr)")
        let runID = String(try #require(joined.stdout.split(separator: "\n").first { $0.hasPrefix("run ") }).split(separator: " ", omittingEmptySubsequences: true)[1])
        let trace = try await cli.run(["trace", runID, "--db", cli.db])
        #expect(trace.stdout.hasPrefix("trace 4bf92f3577b34da6a3ce929d0e0e4736"), "\(trace.stdout)")
        let malformed = try await cli.run(["demo", "--db", cli.db], environment: ["TRACEPARENT": "not-a-traceparent"])
        #expect(malformed.status == 0 && malformed.stderr.contains("warning: TRACEPARENT: not a W3C traceparent"), "\(malformed.stderr)")
    }
}

@Suite("Shutting telemetry down")
struct TelemetryShutdownTests {
    @Test("with no collector listening, the demo exits within [telemetry] shutdown_timeout_seconds, saying what was not sent")
    func noCollector() async throws {
        let cli = CLI()
        let started = ContinuousClock.now
        let output = try await cli.run(["demo", "--db", cli.db], environment: [
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "FLUJO_TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS": "0.5",
        ])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(ContinuousClock.now - started < .seconds(20), "bounded by the setting, not by the export deadline (30 s)")
        // How many spans were not sent, counting those of the export still being tried.
        let line = try #require(output.stderr.split(separator: "\n").first { $0.contains("OTLP exporter stopped with") }, "\(output.stderr)")
        let count = line.components(separatedBy: "stopped with ").last?.split(separator: " ").first.flatMap { Int($0) }
        #expect((count ?? 0) > 0, "\(line)")
    }
}
