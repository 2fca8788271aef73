import Flujo
import FlujoSQLite
import FlujoTestSupport
import FlujoTesting
import Foundation
import Testing

@Suite("Fault tolerance")
struct FaultToleranceTests {
    let helper = TestSupport.executable("FlujoTestHelper")

    @Test("a task whose process lives is never failed, whatever the threshold; killed, its tasks are found at once, in another process")
    func liveTasksAreNeverFailed() async throws {
        let path = TestSupport.temporaryDirectory("flujo-live").appendingPathComponent("state.db").path
        // 20 tasks of at least 60 s each, in a process that records no heartbeat at all.
        let process = try RunningProcess(helper, ["fanout", path, "20", "60000", "no-heartbeat"])
        #expect(await process.waitForLine(timeout: 60) { $0.hasPrefix("launched ") })
        let flujo = TestSupport.executable("flujo")
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FLUJO_") && !$0.key.hasPrefix("OTEL_") }
        environment["FLUJO_BACKGROUND_STALE_TASK_TIMEOUT_HOURS"] = "0.0001"
        try await Task.sleep(for: .milliseconds(800))   // older than 0.0001 h (0.36 s)
        for arguments in [["tasks", "cleanup", "--stale-hours", "0.0001"], ["tasks", "cleanup"], ["tasks", "list"]] {
            let output = try await TestSupport.run(flujo, arguments + ["--db", path], environment: environment)
            #expect(output.status == 0, "\(output.stderr)")
        }
        let store = try SQLiteStateStore(path: path)
        #expect(try await store.statusCounters().backgroundTasks[.running] == 20, "no live task was failed")
        let operations = TaskOperations(store: store)
        #expect(try await operations.recoverOrphanedTasks() == 0)
        await process.kill()
        let started = ContinuousClock.now
        let cleanup = try await TestSupport.run(flujo, ["tasks", "cleanup", "--db", path], environment: environment)
        #expect(cleanup.stdout.contains("failed 20 running task(s) whose process has ended"), "\(cleanup.stdout) \(cleanup.stderr)")
        #expect(ContinuousClock.now - started < .seconds(30))
        let failed = try await store.listBackgroundTasks(BackgroundTaskQuery(statuses: [.failed], limit: 100))
        #expect(failed.count == 20 && failed.allSatisfy { $0.errorCategory == .lostWorker })
        #expect(failed.allSatisfy { $0.errorMessage?.contains("lost worker") == true })
    }

    @Test("SIGKILL amid 1,000 background tasks: nothing committed is lost, recovery finds the in-flight ones at once, resume completes them")
    func killedFanOut() async throws {
        let path = TestSupport.temporaryDirectory("flujo-fanout").appendingPathComponent("state.db").path
        let process = try RunningProcess(helper, ["fanout", path, "1000", "400"])
        #expect(await process.waitForLine(timeout: 60) { $0.hasPrefix("launched ") })
        let runID = String(try #require(process.linesSoFar.first { $0.hasPrefix("launched ") }).dropFirst("launched ".count))
        let store = try SQLiteStateStore(path: path)
        // Let some tasks finish, then kill the process while the rest are in flight.
        var completedBeforeKill = 0
        let deadline = ContinuousClock.now + .seconds(30)
        while completedBeforeKill == 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            completedBeforeKill = try await store.statusCounters().backgroundTasks[.completed] ?? 0
        }
        await process.kill()
        let counters = try await store.statusCounters()
        let tasks = try await store.listBackgroundTasks(BackgroundTaskQuery(parentRunID: runID, limit: 10_000))
        #expect(tasks.count == 1000, "every launched task is persisted")
        let completed = tasks.filter { $0.status == .completed }.count
        let running = tasks.filter { $0.status == .running }.count
        #expect(completed >= completedBeforeKill, "no committed completion was lost")
        #expect(completed + running == 1000)
        #expect(running > 0, "the kill left tasks in flight")
        #expect((counters.backgroundTasks[.completed] ?? 0) == completed)

        // Recovery finds every in-flight task at once: the killed process's owner lock died with it.
        // No threshold and no heartbeat age is involved (the default threshold is 24 hours).
        let runner = Runner(store: store)
        try runner.registry.register(Step<Int, Int>("sleeper") { value, _ in value })
        #expect(try await runner.tasks.cleanupStaleTasks() == 0, "the heartbeat rule is not what finds them")
        #expect(try await runner.tasks.recoverOrphanedTasks() == running, "recovery found every in-flight task at once")
        let failedNow = try await runner.tasks.failed(parentRunID: runID, limit: 10_000)
        #expect(failedNow.count == running)
        #expect(failedNow.allSatisfy { $0.errorCategory == .lostWorker })
        for task in failedNow {
            #expect(try await runner.tasks.resume(taskID: task.taskID).status == .completed)
        }
        let final = try await store.listBackgroundTasks(BackgroundTaskQuery(parentRunID: runID, statuses: [.completed], limit: 10_000))
        #expect(final.count == 1000)
        await runner.close()
    }

    @Test("two and eight processes resuming the same five tasks: each task runs exactly once", arguments: [2, 8])
    func manyResumers(processes: Int) async throws {
        let (runner, _, path) = try makeRunner()
        let record = Step<JSONValue, JSONValue>("record") { _, _ in throw FlakyNetworkError() }
        let result = try await runner.run(Pipeline(name: "p", steps: Array(repeating: .background(record), count: 5)), input: JSONValue.null)
        for id in result.backgroundTaskIDs { _ = try await waitForTask(runner, id) }
        await runner.close()
        let marker = TestSupport.temporaryDirectory().appendingPathComponent("marker")
        _ = FileManager.default.createFile(atPath: marker.path, contents: nil)
        let outputs = try await withThrowingTaskGroup(of: TestSupport.ProcessOutput.self) { group in
            for index in 0..<processes {
                // Each process takes the tasks in its own order.
                let order = index % 2 == 0 ? result.backgroundTaskIDs : result.backgroundTaskIDs.reversed()
                group.addTask { try await TestSupport.run(helper, ["resume", path, marker.path] + order) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outputs.allSatisfy { $0.status == 0 }, "\(outputs.map(\.stderr))")
        let ran = try String(contentsOf: marker, encoding: .utf8).split(separator: "\n").map { String($0.split(separator: " ")[1]) }
        #expect(ran.count == 5, "\(ran)")
        #expect(Set(ran) == Set(result.backgroundTaskIDs))
        let lines: [Substring] = outputs.flatMap { $0.stdout.split(separator: "\n") }
        let completedLines = lines.filter { $0 == "completed" }.count
        #expect(completedLines == 5)
    }

    @Test("fuzzed flujo.toml files: a SettingsError or valid settings, never a crash")
    func fuzzedSettings() async throws {
        let valid = """
            [state]
            uri = "sqlite:///tmp/x.db"
            busy_timeout_ms = 100
            [background_tasks]
            max_cost_per_task = 0.5
            enable_quota = true
            [telemetry.otlp]
            headers = { a = "b" }
            compression = "gzip"
            """
        let alphabet = Array("[]{}=\"'.,#\n \\tabcxyz0123456789-+_éü✓\u{0}")
        var random = SeededRandomNumberGenerator(seed: UInt64(ProcessInfo.processInfo.environment["FLUJO_FUZZ_SEED"] ?? "") ?? 0xF10)
        let folder = TestSupport.temporaryDirectory("flujo-fuzz")
        var errors = 0, loaded = 0
        let rounds = Int(ProcessInfo.processInfo.environment["FLUJO_FUZZ_ROUNDS"] ?? "") ?? 1500
        for round in 0..<rounds {
            // CPU-bound: let the other tests' tasks run on the two cooperative threads too.
            if round % 50 == 0 { await Task.yield() }
            var characters = Array(valid)
            for _ in 0..<(1 + Int(random.next() % 6)) {
                let position = Int(random.next() % UInt64(characters.count))
                switch random.next() % 3 {
                case 0: characters[position] = alphabet[Int(random.next() % UInt64(alphabet.count))]
                case 1: characters.remove(at: position)
                default: characters.insert(alphabet[Int(random.next() % UInt64(alphabet.count))], at: position)
                }
            }
            let file = folder.appendingPathComponent("f\(round % 16).toml")
            try Data(String(characters).utf8).write(to: file)
            do {
                _ = try SettingsLoader.load(file: file.path, environment: [:])
                loaded += 1
            } catch {
                errors += 1
                #expect(error.origin == file.path)
                #expect(!error.description.isEmpty)
            }
        }
        #expect(errors > 100 && loaded > 10, "the fuzzer exercised both outcomes: \(errors) errors, \(loaded) loaded")
    }

    @Test("fuzzed --data values: parsed, or an error naming where; never a crash")
    func fuzzedJSON() async {
        let alphabet = Array("{}[]:,\"\\ntrufalse0123456789.eE+- \u{1}é")
        var random = SeededRandomNumberGenerator(seed: 0xDA7A)
        var failures = 0
        for round in 0..<3000 {
            if round % 100 == 0 { await Task.yield() }
            let length = Int(random.next() % 24)
            let text = String((0..<length).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] })
            do {
                let value = try JSONValue.parse(text)
                // What parses must survive a round trip through its own text.
                #expect(try JSONValue.parse(value.jsonText) == value)
            } catch {
                failures += 1
                #expect(!error.detail.isEmpty)
            }
        }
        #expect(failures > 1000)
    }
}

@Suite("Workers")
struct WorkerTests {
    let helper = TestSupport.executable("FlujoTestHelper")

    /// A new folder's state file and the empty marker file the helper's workers append to.
    func stateAndMarker(_ label: String) -> (path: String, marker: String) {
        let folder = TestSupport.temporaryDirectory(label)
        let marker = folder.appendingPathComponent("marker").path
        #expect(FileManager.default.createFile(atPath: marker, contents: nil))
        return (folder.appendingPathComponent("state.db").path, marker)
    }

    /// A runner on a new file whose failed tasks are due again after 1 ms, its store, settings and the helper's marker file.
    func quickRetries(_ label: String) throws -> (runner: Runner, store: SQLiteStateStore, settings: FlujoSettings, path: String, marker: String) {
        let (path, marker) = stateAndMarker(label)
        var settings = FlujoSettings()
        settings.backgroundTasks.retryBaseDelayMs = 1
        let store = try SQLiteStateStore(path: path)
        return (Runner(store: store, settings: settings), store, settings, path, marker)
    }

    @Test("8 worker processes on 1,000 failed tasks: each task runs exactly once, and all complete")
    func eightWorkers() async throws {
        let (runner, store, _, path, marker) = try quickRetries("flujo-workers")
        let broken = Step<JSONValue, JSONValue>("record") { _, _ in throw URLError(.networkConnectionLost) }
        let result = try await runner.run(Pipeline(name: "p", steps: Array(repeating: .background(broken), count: 1000)), input: JSONValue.number(1))
        await runner.close(timeout: .seconds(300))   // every task ends failed, however loaded the machine
        #expect(try await store.statusCounters().backgroundTasks[.failed] == 1000)
        let workers = try (0..<8).map { _ in try RunningProcess(helper, ["worker", path, marker, "4"]) }
        for worker in workers { await worker.waitForExit() }
        let ran = try String(contentsOfFile: marker, encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ")[1] }
        #expect(ran.count == 1000, "each task ran once in all: \(ran.count) runs")
        #expect(Set(ran).count == 1000, "no task ran twice")
        #expect(Set(ran.map(String.init)) == Set(result.backgroundTaskIDs))
        #expect(try await store.statusCounters().backgroundTasks[.completed] == 1000)
        let done = workers.flatMap { $0.linesSoFar }.filter { $0.hasPrefix("done ") }.compactMap { Int($0.dropFirst(5)) }
        #expect(done.reduce(0, +) == 1000 && done.count == 8)
    }

    @Test("a poison task that kills its worker mid-attempt: each attempt counts and waits its backoff, and after max_retries no worker takes it again")
    func poisonTask() async throws {
        let (path, marker) = stateAndMarker("flujo-poison")
        let store = try SQLiteStateStore(path: path)
        let runner = Runner(store: store)
        let broken = Step<JSONValue, JSONValue>("record") { _, _ in throw URLError(.networkConnectionLost) }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(broken)]), input: JSONValue.number(1))
        await runner.close()
        let taskID = try #require(result.backgroundTaskIDs.first)
        #expect(try await store.loadTask(taskID: taskID)?.attempts == 1)
        var environment = ProcessInfo.processInfo.environment
        environment["FLUJO_HELPER_CRASH"] = "1"
        environment["FLUJO_HELPER_RETRY_MS"] = "300"
        // max_retries 3: attempts 2, 3 and 4 are the retries; each worker dies in one of them.
        for attempt in 2...4 {
            // Due at once the first time (the failure's own backoff was 500 ms ago or less; wait it out).
            try await Task.sleep(for: .milliseconds(600))
            let worker = try RunningProcess(helper, ["worker", path, marker, "1"], environment: environment)
            await worker.waitForExit()
            #expect(worker.terminationSignal == SIGKILL, "the worker died in the step")
            let task = try #require(try await store.loadTask(taskID: taskID))
            #expect(task.attempts == attempt, "the attempt that died counts")
            #expect(task.status == .failed)
        }
        // No attempt left: a worker finds nothing due, and the task stays failed.
        try await Task.sleep(for: .milliseconds(600))
        let last = try RunningProcess(helper, ["worker", path, marker, "1"], environment: environment)
        await last.waitForExit()
        #expect(last.terminationSignal == nil && last.linesSoFar.contains("done 0"), "\(last.linesSoFar)")
        #expect(try await store.loadTask(taskID: taskID)?.attempts == 4)
    }

    @Test("a worker passes over due tasks of steps it does not have: the others run, and nothing is logged about them")
    func workerPassesOverUnknownSteps() async throws {
        let (runner, store, settings, _, _) = try quickRetries("flujo-unknown-step")
        let foreign = Step<Int, Int>("foreign") { _, _ in throw URLError(.timedOut) }
        let mine = Step<Int, Int>("mine") { _, _ in throw URLError(.timedOut) }
        // The foreign task is due first: it used to be claimed, refused and claimed again, forever.
        let older = try await runner.run(Pipeline(name: "p", steps: [.background(foreign)]), input: 1)
        _ = try await waitForTask(runner, older.backgroundTaskIDs[0])
        let newer = try await runner.run(Pipeline(name: "p", steps: [.background(mine)]), input: 1)
        await runner.close()
        try await Task.sleep(for: .milliseconds(50))
        let registry = StepRegistry()
        try registry.register(Step<Int, Int>("mine") { value, _ in value })
        let logs = RecordingLogs()
        let worker = TaskWorker(operations: TaskOperations(store: store, settings: settings, registry: registry), pollInterval: .milliseconds(20), logger: logs.logger)
        let report = await worker.run(once: true)
        #expect(report.ran == 1 && report.completed == 1)
        #expect(try await store.loadTask(taskID: newer.backgroundTaskIDs[0])?.status == .completed)
        let passedOver = try #require(try await store.loadTask(taskID: older.backgroundTaskIDs[0]))
        #expect(passedOver.status == .failed && passedOver.attempts == 1, "left to a worker that has its step")
        #expect(logs.all.isEmpty, "\(logs.all)")
    }

    @Test("the next attempt is kept in the store: a retryable failure is due after its backoff, in any process; a validation failure never")
    func persistedBackoff() async throws {
        let path = TestSupport.temporaryDirectory("flujo-backoff").appendingPathComponent("state.db").path
        var settings = FlujoSettings()
        settings.backgroundTasks.retryBaseDelayMs = 60_000
        let store = try SQLiteStateStore(path: path)
        let runner = Runner(store: store, settings: settings)
        let flaky = Step<Int, Int>("flaky") { _, _ in throw URLError(.timedOut) }
        struct Invalid: Error, CategorizedError { var category: ErrorCategory { .validation } }
        let invalid = Step<Int, Int>("invalid") { _, _ in throw Invalid() }
        _ = try await runner.run(Pipeline(name: "p", steps: [.background(flaky), .background(invalid)]), input: 1)
        await runner.close()
        // Another store on the file, as another process would open it.
        let other = try SQLiteStateStore(path: path)
        let now = Timestamp.now
        #expect(try await other.claimNextDueTask(owner: "w", now: now) == nil, "not due before its backoff")
        let due = try #require(try await other.claimNextDueTask(owner: "w", now: now.adding(seconds: 70)))
        #expect(due.stepName == "flaky")
        other.releaseClaim(taskID: due.taskID!)
        #expect(try await other.claimNextDueTask(owner: "w", now: now.adding(seconds: 86_400 * 365)).map(\.stepName) == "flaky", "the validation failure is never due")
        other.releaseClaim(taskID: due.taskID!)
        let operations = TaskOperations(store: other, settings: settings)
        #expect(Set(try await operations.failed().compactMap(\.stepName)) == ["flaky", "invalid"])
    }
}
