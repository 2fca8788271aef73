@testable import FlujoPostgres
import Flujo
import FlujoTestSupport
import Foundation
import Synchronization
import Testing

@Suite("PostgreSQL with several processes (a real server)", .enabled(if: testServerURI != nil, "no PostgreSQL test server: run `make test`, which starts one"))
struct PostgresProcessTests {
    let helper = TestSupport.executable("FlujoTestHelper")

    /// The URI of a new database on the test server.
    func newDatabase(_ label: String) async throws -> (uri: String, location: PostgresLocation) {
        let location = try await freshDatabase(label)
        let server = try #require(testServerURI)
        let base = try PostgresLocation(uri: server)
        return (server.replacingOccurrences(of: "/\(base.database)", with: "/\(location.database)"), location)
    }

    /// Calls `recovery` until it has recovered `expected` in all (the server notices a killed
    /// session's end a moment later), for at most 10 s; returns how many and how long it took.
    func recover(_ expected: Int, _ recovery: () async throws -> Int) async throws -> (Int, Duration) {
        let started = ContinuousClock.now
        var recovered = 0
        while recovered < expected && ContinuousClock.now - started < .seconds(10) {
            recovered += try await recovery()
            if recovered < expected { try await Task.sleep(for: .milliseconds(20)) }
        }
        return (recovered, ContinuousClock.now - started)
    }

    @Test("4 worker processes on one database resume 1,000 failed tasks: each runs exactly once, and all complete")
    func fourWorkers() async throws {
        let (uri, location) = try await newDatabase("workers")
        let folder = TestSupport.temporaryDirectory("flujo-pg-workers")
        let marker = folder.appendingPathComponent("marker").path
        #expect(FileManager.default.createFile(atPath: marker, contents: nil))
        var settings = FlujoSettings()
        settings.backgroundTasks.retryBaseDelayMs = 1
        let store = try await PostgresStateStore.open(location)
        let runner = Runner(store: store, settings: settings)
        let broken = Step<JSONValue, JSONValue>("record") { _, _ in throw URLError(.networkConnectionLost) }
        let result = try await runner.run(Pipeline(name: "p", steps: Array(repeating: .background(broken), count: 1000)), input: JSONValue.number(1))
        await runner.close(timeout: .seconds(300))
        #expect(try await store.statusCounters().backgroundTasks[.failed] == 1000)
        let workers = try (0..<4).map { _ in try RunningProcess(helper, ["worker", uri, marker, "4"]) }
        for worker in workers { await worker.waitForExit() }
        let ran = try String(contentsOfFile: marker, encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ")[1] }
        #expect(ran.count == 1000, "each task ran once in all: \(ran.count) runs")
        #expect(Set(ran).count == 1000, "no task ran twice")
        #expect(Set(ran.map(String.init)) == Set(result.backgroundTaskIDs))
        #expect(try await store.statusCounters().backgroundTasks[.completed] == 1000)
        let done = workers.flatMap { $0.linesSoFar }.filter { $0.hasPrefix("done ") }.compactMap { Int($0.dropFirst(5)) }
        #expect(done.reduce(0, +) == 1000 && done.count == 4)
        await store.close()
    }

    @Test("SIGKILL of a process running tasks on PostgreSQL: another process finds them at once, with no threshold, and resumes them")
    func killedProcess() async throws {
        let (uri, location) = try await newDatabase("sigkill")
        // 20 tasks of at least 60 s, in a process that records no heartbeat.
        let process = try RunningProcess(helper, ["fanout", uri, "20", "60000", "no-heartbeat"])
        #expect(await process.waitForLine(timeout: 60) { $0.hasPrefix("launched ") })
        let store = try await PostgresStateStore.open(location)
        let operations = TaskOperations(store: store)
        #expect(try await operations.recoverOrphanedTasks() == 0, "its owner lives")
        #expect(try await operations.cleanupStaleTasks(staleHours: 0.0001) == 0, "no threshold fails a task whose owner lives")
        await process.kill()
        let (recovered, took) = try await recover(20) { try await operations.recoverOrphanedTasks() }
        #expect(recovered == 20, "every running task of the dead process found")
        #expect(took < .seconds(5), "found at once: \(took)")
        let failed = try await store.listBackgroundTasks(BackgroundTaskQuery(statuses: [.failed], limit: 100))
        #expect(failed.count == 20 && failed.allSatisfy { $0.errorCategory == .lostWorker })
        let registry = StepRegistry()
        try registry.register(Step<Int, Int>("sleeper") { value, _ in value })
        let resumer = TaskOperations(store: store, registry: registry)
        var completed = 0
        while let outcome = try await resumer.resumeNextDue() {
            #expect(outcome.status == .completed)
            completed += 1
        }
        #expect(completed == 20, "recovery made them due; a worker resumes each once")
        await store.close()
    }

    @Test("SIGKILL of a process amid a foreground run on PostgreSQL: the run is failed as a lost worker at once, its row in runs ended; a live one never")
    func killedForegroundRun() async throws {
        let (uri, location) = try await newDatabase("runlost")
        let process = try RunningProcess(helper, ["foreground", uri])
        #expect(await process.waitForLine(timeout: 60) { $0.hasPrefix("running ") })
        let runID = try #require(process.linesSoFar.first { $0.hasPrefix("running ") }.map { String($0.dropFirst(8)) })
        let store = try await PostgresStateStore.open(location)
        let operations = TaskOperations(store: store)
        #expect(try await operations.recoverOrphanedRuns() == 0, "its owner lives")
        await process.kill()
        let (recovered, took) = try await recover(1) { try await operations.recoverOrphanedRuns() }
        #expect(recovered == 1)
        #expect(took < .seconds(5), "found at once: \(took)")
        let run = try #require(try await store.load(runID: runID))
        #expect(run.status == .failed && run.errorCategory == .lostWorker)
        #expect(try await store.statusCounters().runs == [.failed: 1])
        #expect(try await store.database.query("SELECT count(*)::bigint FROM runs WHERE status = 'failed' AND ended_at IS NOT NULL").first == 1)
        await store.close()
    }

    @Test("the server restarted mid-run: stores connect again and take their locks back, outcomes are written once it is up, no task is lost, recovered or run twice")
    func serverRestart() async throws {
        // A server of its own: a restart must not disturb the other tests' server.
        let server = try await OwnPostgresServer.start("restart")
        defer { server.stop() }
        // A short reconnect window: live stores must take their locks back within it, or a rival takes their work.
        let uri = server.uri + "?reconnect_window=2"
        let location = try PostgresLocation(uri: uri)
        let store = try await PostgresStateStore.open(location)
        for index in 0..<8 {
            try await store.save([StateWrite(
                WorkflowState(runID: "r_bg_bg_w\(index)", pipelineName: "p", status: .failed, isBackgroundTask: true, parentRunID: "r",
                              taskID: "bg_w\(index)", errorCategory: .network, attempts: 1, stepName: "record"),
                nextAttemptAt: .now)])
        }
        let folder = TestSupport.temporaryDirectory("flujo-pg-restart-marker")
        let marker = folder.appendingPathComponent("marker").path
        #expect(FileManager.default.createFile(atPath: marker, contents: nil))
        // A worker holding 8 claims through the restart (steps of 6 s), and a process running
        // 20 tasks it launched (1 to 7 s: some end while the server is down, most after the window).
        var environment = ProcessInfo.processInfo.environment
        environment["FLUJO_HELPER_STEP_MS"] = "6000"
        let worker = try RunningProcess(helper, ["worker", uri, marker, "8"], environment: environment)
        let launcher = try RunningProcess(helper, ["fanout", uri, "20", "1000", "quick"])
        #expect(await launcher.waitForLine(timeout: 60) { $0.hasPrefix("launched ") })
        let claimedAll = await worker.waitForLine(timeout: 60) { _ in worker.linesSoFar.filter { $0.hasPrefix("running ") }.count == 8 }
        #expect(claimedAll)
        // A rival process's work, all along: recovery and claims of due tasks.
        let registry = StepRegistry()
        let rivalRuns = ManagedAtomicCounter()
        try registry.register(Step<JSONValue, JSONValue>("record") { value, _ in rivalRuns.increment(); return value })
        try registry.register(Step<Int, Int>("sleeper") { value, _ in rivalRuns.increment(); return value })
        let rival = TaskOperations(store: store, registry: registry)
        let recovered = ManagedAtomicCounter()
        let rivalry = Task {
            while !Task.isCancelled {
                if let count = try? await rival.recoverOrphanedTasks() { for _ in 0..<count { recovered.increment() } }
                _ = try? await rival.resumeNextDue()
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        let restart = try await server.restart(pause: 1)
        #expect(restart.status == 0, "the server restarts: \(restart.stderr)")
        await launcher.waitForExit()
        await worker.waitForExit()
        // The window is over and the rival has had its chances at anything left behind.
        try await Task.sleep(for: .seconds(1))
        rivalry.cancel()
        _ = await rivalry.value
        #expect(launcher.terminationStatus == 0 && launcher.linesSoFar.contains("closed, unpersisted 0"), "every outcome written: \(launcher.linesSoFar.suffix(2))")
        #expect(worker.terminationStatus == 0 && worker.linesSoFar.contains("done 8"), "the worker completed its 8 tasks: \(worker.linesSoFar.suffix(2))")
        #expect(recovered.value == 0, "no live process's task was recovered")
        #expect(rivalRuns.value == 0, "no task ran a second time")
        let ran = try String(contentsOfFile: marker, encoding: .utf8).split(separator: "\n").map { String($0.split(separator: " ")[1]) }
        #expect(ran.sorted() == (0..<8).map { "bg_w\($0)" }.sorted(), "each claimed task ran once")
        let counters = try await store.statusCounters()
        #expect(counters.backgroundTasks[.completed] == 28 && counters.backgroundTasks[.running, default: 0] == 0 && counters.backgroundTasks[.failed, default: 0] == 0,
                "all 28 tasks completed: \(counters.backgroundTasks)")
        await store.close()
    }

    @Test("an idle worker wakes on LISTEN/NOTIFY when a task becomes due, long before its poll interval")
    func notifiedWorker() async throws {
        let (_, location) = try await newDatabase("notify")
        let workerStore = try await PostgresStateStore.open(location)
        let writer = try await PostgresStateStore.open(location)
        let registry = StepRegistry()
        try registry.register(Step<JSONValue, JSONValue>("record") { value, _ in value })
        let worker = TaskWorker(operations: TaskOperations(store: workerStore, registry: registry), concurrency: 1, pollInterval: .seconds(60))
        let ran = ManagedAtomicCounter()
        let running = Task { await worker.run(once: false) { _ in ran.increment() } }
        try await Task.sleep(for: .milliseconds(300))   // the worker found nothing and waits
        let started = ContinuousClock.now
        try await writer.save([StateWrite(
            WorkflowState(runID: "r_bg_bg_n", pipelineName: "p", status: .failed, isBackgroundTask: true, parentRunID: "r", taskID: "bg_n",
                          errorCategory: .network, attempts: 1, stepName: "record"),
            nextAttemptAt: .now)])
        while ran.value == 0 && ContinuousClock.now - started < .seconds(20) { try await Task.sleep(for: .milliseconds(10)) }
        let waited = ContinuousClock.now - started
        running.cancel()
        _ = await running.value
        #expect(ran.value == 1)
        #expect(waited < .seconds(5), "woken by the notification, not the 60 s poll: \(waited)")
        #expect(try await writer.loadTask(taskID: "bg_n")?.status == .completed)
        await workerStore.close()
        await writer.close()
    }
}

/// A counter shared with a worker's callback.
final class ManagedAtomicCounter: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
