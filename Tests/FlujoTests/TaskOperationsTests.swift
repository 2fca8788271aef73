@testable import Flujo
import FlujoSQLite
import FlujoTestSupport
import FlujoTesting
import Foundation
import Synchronization
import Testing

/// Listing, resuming, retrying and cleaning up tasks through `TaskOperations`.
@Suite("Task operations")
struct TaskOperationsTests {
    @Test("a 48-hour-old running task of no known process is cleaned up with a 24-hour threshold; a fresh one is not")
    func staleCleanup() async throws {
        let (runner, _, _) = try makeRunner()
        let now = Timestamp.now
        // Imported rows record no owner process, as rows of earlier versions: the heartbeat rule applies.
        try (runner.store as! SQLiteStateStore).saveAll([("bg_old", 48.0), ("bg_fresh", 1.0)].map { id, age in
            var state = WorkflowState(runID: "parent_bg_\(id)", pipelineName: "p", status: .running, createdAt: now.adding(seconds: -age * 3600), isBackgroundTask: true, parentRunID: "parent", taskID: id, stepName: "s")
            state.updatedAt = now.adding(seconds: -age * 3600)
            return state
        })
        #expect(try await runner.tasks.cleanupStaleTasks(staleHours: 24) == 1)
        let old = try #require(try await runner.store.loadTask(taskID: "bg_old"))
        #expect(old.status == .failed)
        #expect(old.errorCategory == .timeout)
        #expect(old.errorMessage == "no heartbeat for over 24 h; process likely crashed")
        #expect(try await runner.store.loadTask(taskID: "bg_fresh")?.status == .running)
        await runner.close()
    }

    @Test("paused state persists, and a paused task can be resumed with new data (defect 4)")
    func pausedResume() async throws {
        let (runner, _, _) = try makeRunner()
        let approval = Step<JSONValue, String>("approval") { input, context in
            guard input["approved"] == .bool(true) else { try context.pause("waiting for approval") }
            return "approved"
        }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(approval)]), input: JSONValue.object(["approved": .bool(false)]))
        let taskID = result.backgroundTaskIDs[0]
        let paused = try #require(try await waitForTask(runner, taskID))
        #expect(paused.status == .paused)
        #expect(paused.errorCategory == .controlFlow)
        #expect(paused.errorMessage == "waiting for approval")
        // Resuming with the same input pauses again; with new data it completes.
        #expect(try await runner.tasks.resume(taskID: taskID).status == .paused)
        let outcome = try await runner.tasks.resume(taskID: taskID, newData: .object(["approved": .bool(true)]))
        #expect(outcome.status == .completed)
        #expect(outcome.outputJSON == "\"approved\"")
        let task = try #require(try await runner.store.loadTask(taskID: taskID))
        #expect(task.attempts == 3)
        #expect(task.errorMessage == nil)
        await runner.close()
    }

    @Test("ok and failing background tasks are both tracked, and a failure never fails the parent")
    func mixedTasks() async throws {
        let (runner, _, _) = try makeRunner()
        let good = Step<Order, String>("good") { _, _ in "ok" }
        let bad = Step<Order, String>("bad") { _, _ in throw OddError() }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(good), .background(bad), .run(charge)]), input: Order(id: "o", amount: 1))
        #expect(result.status == .completed)
        let states = try await [waitForTask(runner, result.backgroundTaskIDs[0]), waitForTask(runner, result.backgroundTaskIDs[1])]
        #expect(states.map { $0?.status } == [.completed, .failed])
        #expect(states[1]?.errorCategory == .unknown)
        #expect(try await runner.tasks.list(BackgroundTaskQuery(parentRunID: result.runID)).count == 2)
        let counters = try await runner.store.statusCounters()
        #expect(counters.backgroundTasks[.completed] == 1 && counters.backgroundTasks[.failed] == 1)
        await runner.close()
    }

    @Test("retry of several failed tasks: a failed result counts like a thrown error, with backoff, reported per task")
    func retryMany() async throws {
        var settings = FlujoSettings()
        settings.backgroundTasks.retryBaseDelayMs = 1
        settings.backgroundTasks.retryMaxDelayMs = 4
        let (runner, _, _) = try makeRunner(settings: settings)
        let calls = Counter()
        // Fails on the first three calls overall (launch of 2 tasks + first retry), then succeeds.
        let flaky = Step<Order, String>("flaky") { order, _ in
            if calls.increment() <= 3 { throw FlakyNetworkError() }
            return order.id
        }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(flaky), .background(flaky)]), input: Order(id: "o", amount: 1))
        for id in result.backgroundTaskIDs { _ = try await waitForTask(runner, id) }
        #expect(try await runner.tasks.failed(parentRunID: result.runID).count == 2)
        let report = try await runner.tasks.retryFailed(parentRunID: result.runID, maxRetries: 3)
        #expect(report.entries.count == 2)
        #expect(report.succeeded == 2)
        #expect(report.entries.map(\.retries).sorted() == [1, 2])
        #expect(try await runner.tasks.failed(parentRunID: result.runID).isEmpty)
        await runner.close()
    }

    @Test("retry gives up after max retries and reports the last error")
    func retryGivesUp() async throws {
        var settings = FlujoSettings()
        settings.backgroundTasks.retryBaseDelayMs = 1
        let (runner, _, _) = try makeRunner(settings: settings)
        let service = FlakyService()
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(service.step)]), input: Order(id: "o", amount: 1))
        _ = try await waitForTask(runner, result.backgroundTaskIDs[0])
        let report = try await runner.tasks.retryFailed(maxRetries: 2)
        #expect(report.entries.first?.retries == 2)
        #expect(report.entries.first?.status == .failed)
        #expect(report.entries.first?.error == "connection reset by peer")
        #expect(service.calls.count == 3)
        #expect(try await runner.store.loadTask(taskID: result.backgroundTaskIDs[0])?.attempts == 3)
        await runner.close()
    }

    @Test("resume uses the persisted input when no new data is given")
    func resumeFromPersistedInput() async throws {
        let (runner, _, _) = try makeRunner()
        let service = FlakyService()
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(service.step)]), input: Order(id: "persisted-42", amount: 9))
        _ = try await waitForTask(runner, result.backgroundTaskIDs[0])
        service.healthy.withLock { $0 = true }
        let outcome = try await runner.tasks.resume(taskID: result.backgroundTaskIDs[0])
        #expect(outcome.outputJSON == "\"receipt for persisted-42\"")
        await runner.close()
    }

    @Test("the hours_back filter leaves out older failures")
    func hoursBack() async throws {
        let (runner, _, _) = try makeRunner()
        let now = Timestamp.now
        for (id, age) in [("bg_recent", 1.0), ("bg_old", 30.0)] {
            var state = WorkflowState(runID: "p_bg_\(id)", pipelineName: "p", status: .failed, createdAt: now.adding(seconds: -age * 3600), isBackgroundTask: true, parentRunID: "p", taskID: id)
            state.updatedAt = now.adding(seconds: -age * 3600)
            try await runner.store.save(state)
        }
        #expect(try await runner.tasks.failed(hoursBack: 24).map(\.taskID) == ["bg_recent"])
        #expect(try await runner.tasks.failed(hoursBack: 48).count == 2)
        #expect(try await runner.tasks.failed(parentRunID: "other", hoursBack: 48).isEmpty)
        await runner.close()
    }

    @Test("a retry from a new runner on the same database file")
    func retryFromNewRunner() async throws {
        let (first, _, path) = try makeRunner()
        let service = FlakyService()
        let result = try await first.run(Pipeline(name: "p", steps: [.background(service.step)]), input: Order(id: "o", amount: 1))
        _ = try await waitForTask(first, result.backgroundTaskIDs[0])
        await first.close()
        let (second, _, _) = try makeRunner(path: path)
        service.healthy.withLock { $0 = true }
        try second.registry.register(service.step)
        let report = try await second.tasks.retryFailed()
        #expect(report.succeeded == 1)
        await second.close()
    }

    @Test("resume errors: unknown id with suggestions, completed task, step not registered, resumability off")
    func resumeErrors() async throws {
        let (runner, _, path) = try makeRunner()
        let good = Step<Order, String>("good") { _, _ in "ok" }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(good)]), input: Order(id: "o", amount: 1))
        let taskID = result.backgroundTaskIDs[0]
        _ = try await waitForTask(runner, taskID)
        let typo = String(taskID.dropLast(2)) + "zz"
        await #expect(throws: RunnerError.unknownTask(typo, suggestions: [taskID])) { try await runner.tasks.resume(taskID: typo) }
        await #expect(throws: RunnerError.notResumable(taskID: taskID, status: .completed)) { try await runner.tasks.resume(taskID: taskID) }
        var failed = try #require(try await runner.store.loadTask(taskID: taskID))
        failed.status = .failed
        try await runner.store.save(failed)
        let (fresh, _, _) = try makeRunner(path: path)
        await #expect(throws: RunnerError.self) { try await fresh.tasks.resume(taskID: taskID) }
        var off = FlujoSettings()
        off.backgroundTasks.enableResumability = false
        let (disabled, _, _) = try makeRunner(settings: off, path: path)
        await #expect(throws: RunnerError.resumabilityDisabled) { try await disabled.tasks.resume(taskID: taskID) }
        for r in [runner, fresh, disabled] { await r.close() }
    }

    @Test("closing waits for tasks up to the timeout, then cancels and persists the rest as cancelled (resumable)")
    func closeCancels() async throws {
        let (runner, _, _) = try makeRunner()
        let forever = Step<Order, String>("forever") { _, _ in
            try await Task.sleep(for: .seconds(3600))
            return "never"
        }
        let quick = Step<Order, String>("quick") { _, _ in "quick" }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(forever), .background(quick)]), input: Order(id: "o", amount: 1))
        await runner.close(timeout: .milliseconds(100))
        let states = try await result.backgroundTaskIDs.asyncMap { try await runner.store.loadTask(taskID: $0) }
        #expect(states.map { $0?.status } == [.cancelled, .completed])
        #expect(states[0]?.errorCategory == .cancelled)
        let (next, _, _) = try makeRunner(path: (runner.store as! SQLiteStateStore).path)
        try next.registry.register(Step<Order, String>("forever") { _, _ in "finished later" })
        #expect(try await next.tasks.resume(taskID: result.backgroundTaskIDs[0]).status == .completed)
        await next.close()
    }

    @Test("from the start of close() no run starts; a run under way launches no task after close() ends, and ends cancelled, saying why")
    func closeDuringRun() async throws {
        let (runner, _, _) = try makeRunner()
        let gate = Gate()
        let entered = Gate()
        let waiting = Step<Int, Int>("waiting") { value, _ in
            entered.open()
            await gate.wait()
            return value
        }
        let later = Step<Int, Int>("later") { value, _ in value }
        let forever = Step<Int, Int>("forever") { value, _ in
            try await Task.sleep(for: .seconds(3600))
            return value
        }
        // A task that keeps close() waiting, so a run can try to start meanwhile.
        let holder = try await runner.run(Pipeline(name: "holder", steps: [.background(forever)]), input: 1)
        let underWay = Task { try await runner.run(Pipeline(name: "p", steps: [.run(waiting), .background(later)]), input: 1) }
        await entered.wait()
        let closing = Task { await runner.close(timeout: .milliseconds(800)) }
        // Once close() has begun (a moment after its task starts), a new run is refused.
        var refused = false
        for _ in 0..<100 where !refused {
            do {
                _ = try await runner.run(Pipeline(name: "new", steps: [.run(later)]), input: 1)
                try await Task.sleep(for: .milliseconds(5))
            } catch RunnerError.closed {
                refused = true
            }
        }
        #expect(refused, "a run started while close() waited")
        _ = await closing.value
        gate.open()
        let result = try await underWay.value
        #expect(result.status == .cancelled)
        #expect(result.errorCategory == .cancelled)
        #expect(result.errorMessage == "the runner was closed before this run launched its background step 'later'")
        #expect(result.backgroundTaskIDs.isEmpty, "no task launched after close")
        #expect(try await runner.store.load(runID: result.runID)?.status == .cancelled)
        #expect(try await runner.store.loadTask(taskID: holder.backgroundTaskIDs[0])?.status == .cancelled, "the task close() waited for")
        #expect(try await runner.store.statusCounters().backgroundTasks == [.cancelled: 1])
    }

    @Test("running tasks heartbeat, so stale cleanup leaves a long-running live task alone (defect 3)")
    func heartbeatKeepsAlive() async throws {
        var settings = FlujoSettings()
        settings.backgroundTasks.heartbeatIntervalSeconds = 0.02
        let (runner, _, _) = try makeRunner(settings: settings)
        runner.startMaintenance()
        let gate = Gate()
        let long = Step<Order, String>("long") { _, _ in await gate.wait(); return "done" }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(long)]), input: Order(id: "o", amount: 1))
        let taskID = result.backgroundTaskIDs[0]
        let launched = try #require(try await runner.store.loadTask(taskID: taskID)).createdAt
        // Once the task is older than the threshold, look right after a fresh heartbeat:
        // a dead task of that age would be cleaned up; this live one must not be.
        var checked = false
        let deadline = ContinuousClock.now + .seconds(30)
        while !checked && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
            let now = Timestamp.now
            let beat = try #require(try await runner.store.loadTask(taskID: taskID)).updatedAt
            let age = Double(now.millisecondsSince1970 - launched.millisecondsSince1970) / 1000
            let sinceBeat = Double(now.millisecondsSince1970 - beat.millisecondsSince1970) / 1000
            if age > 1.0 && sinceBeat < 0.05 {
                #expect(beat > launched, "the heartbeat moved updated_at")
                #expect(try await runner.tasks.cleanupStaleTasks(staleHours: 0.5 / 3600) == 0)
                checked = true
            }
        }
        #expect(checked, "no heartbeat seen")
        #expect(try await runner.store.loadTask(taskID: taskID)?.status == .running)
        gate.open()
        #expect(try await waitForTask(runner, taskID)?.status == .completed)
        await runner.close()
    }

    @Test("stale cleanup runs when maintenance starts, never on a read (defect 3)")
    func automaticCleanup() async throws {
        let (seed, _, path) = try makeRunner()
        var dead = WorkflowState(runID: "gone_bg_bg_dead", pipelineName: "p", status: .running, isBackgroundTask: true, parentRunID: "gone", taskID: "bg_dead")
        dead.updatedAt = Timestamp.now.adding(seconds: -3 * 3600)
        try (seed.store as! SQLiteStateStore).saveAll([dead])   // no owner recorded: the heartbeat rule applies
        var settings = FlujoSettings()
        settings.backgroundTasks.staleTaskTimeoutHours = 2
        let (runner, _, _) = try makeRunner(settings: settings, path: path)
        _ = try await runner.tasks.stats()
        _ = try await runner.tasks.failed()
        _ = try await runner.tasks.list()
        #expect(try await runner.store.loadTask(taskID: "bg_dead")?.status == .running, "reads write nothing")
        #expect(!runner.isMaintenanceRunning)
        runner.startMaintenance()
        #expect(runner.isMaintenanceRunning)
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, try await runner.store.loadTask(taskID: "bg_dead")?.status == .running {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(try await runner.store.loadTask(taskID: "bg_dead")?.status == .failed)
        await runner.close()
        await seed.close()
    }

    @Test("maintenance prunes back to back while retention is behind, not once per stale check; kept rows stay")
    func retentionKeepsUp() async throws {
        let path = TestSupport.temporaryDirectory("flujo-retention").appendingPathComponent("state.db").path
        let store = try SQLiteStateStore(path: path)
        let old = Timestamp.now.adding(seconds: -7200)
        var rows: [WorkflowState] = (0..<4_500).map { index in
            WorkflowState(runID: "r_bg_bg_\(index)", pipelineName: "p", status: .completed, createdAt: old, updatedAt: old,
                          executionTimeMs: 1, isBackgroundTask: true, parentRunID: "r", taskID: "bg_\(index)", stepName: "s")
        }
        rows.append(WorkflowState(runID: "r_bg_bg_new", pipelineName: "p", status: .completed, isBackgroundTask: true, parentRunID: "r", taskID: "bg_new", stepName: "s"))
        try store.saveAll(rows)
        var settings = FlujoSettings()
        settings.state.keepCompletedHours = 1
        settings.backgroundTasks.heartbeatIntervalSeconds = 3600   // one beat would not come within the test
        settings.backgroundTasks.staleCheckIntervalSeconds = 3600
        let runner = Runner(store: store, settings: settings)
        runner.startMaintenance()
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, (try await store.statusCounters().backgroundTasks[.completed] ?? 0) > 1 {
            try await Task.sleep(for: .milliseconds(10))
        }
        let counters = try await store.statusCounters()
        #expect(counters.backgroundTasks[.completed] == 1, "4,500 expired rows pruned in five batches, one right after another")
        #expect(counters.prunedRuns == 4_500)
        #expect(try await store.loadTask(taskID: "bg_new") != nil)
        await runner.close()
    }

    @Test("a run id that contains _bg_ is not taken for a background run (defect 7)")
    func noStringSniffing() async throws {
        let (runner, sink, _) = try makeRunner()
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(validate)]), input: Order(id: "o", amount: 1), runID: "my_bg_run")
        let state = try #require(try await runner.store.load(runID: "my_bg_run"))
        #expect(!state.isBackgroundTask)
        #expect(sink.events(runID: result.runID).allSatisfy { !$0.isBackground })
        #expect(try await runner.tasks.list().isEmpty)
        await runner.close()
    }

    @Test("a run id the store keeps already is refused before anything runs: the first run's record stays whole")
    func runIDTaken() async throws {
        let (runner, sink, _) = try makeRunner()
        let first = try await runner.run(Pipeline(name: "p", steps: [.run(validate)]), input: Order(id: "o", amount: 1), runID: "run_request_42")
        #expect(first.status == .completed)
        let eventsBefore = sink.events.count
        let ran = Counter()
        let counting = Step<Order, Order>("counting") { order, _ in
            ran.increment()
            return order
        }
        await #expect(throws: RunnerError.runExists(runID: "run_request_42", status: .completed)) {
            _ = try await runner.run(Pipeline(name: "q", steps: [.run(counting)]), input: Order(id: "o", amount: 1), runID: "run_request_42")
        }
        #expect(ran.count == 0, "no step ran")
        #expect(sink.events.count == eventsBefore, "no event was emitted")
        let kept = try #require(try await runner.store.load(runID: "run_request_42"))
        #expect(kept.pipelineName == "p" && kept.status == .completed)
        #expect(try await runner.store.statusCounters().runs == [.completed: 1])
        #expect(RunnerError.runExists(runID: "r", status: .failed).description == "a run with id 'r' exists already (failed); run ids are unique. Pass a new one, or none to have one made.")
        await runner.close()
    }

    @Test("created_at is written once across every state write of a task (defect 5)")
    func createdAtKept() async throws {
        let (runner, _, _) = try makeRunner()
        let service = FlakyService()
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(service.step)]), input: Order(id: "o", amount: 1))
        let first = try #require(try await waitForTask(runner, result.backgroundTaskIDs[0]))
        try await Task.sleep(for: .milliseconds(5))
        service.healthy.withLock { $0 = true }
        _ = try await runner.tasks.resume(taskID: result.backgroundTaskIDs[0])
        let after = try #require(try await runner.store.loadTask(taskID: result.backgroundTaskIDs[0]))
        #expect(after.createdAt == first.createdAt)
        #expect(after.updatedAt > first.createdAt)
        await runner.close()
    }

    @Test("stale cleanup is part of every store, in memory too (defect 9)")
    func everyStoreCleansUp() async throws {
        let memory = InMemoryStateStore()
        let runner = Runner(store: memory)
        var dead = WorkflowState(runID: "x_bg_bg_1", pipelineName: "p", status: .running, isBackgroundTask: true, parentRunID: "x", taskID: "bg_1")
        dead.updatedAt = Timestamp.now.adding(seconds: -30 * 3600)
        try await memory.save(dead)
        #expect(try await runner.tasks.cleanupStaleTasks(staleHours: 24) == 1)
        #expect(try await memory.loadTask(taskID: "bg_1")?.status == .failed)
        await runner.close()
    }
}

@Suite("Retry with concurrency")
struct RetryConcurrencyTests {
    @Test("retry runs up to --concurrency tasks at once, never more, each once, and reports them in listing order")
    func concurrentRetry() async throws {
        let (runner, _, _) = try makeRunner()
        let running = Atomic<Int>(0)
        let highest = Atomic<Int>(0)
        let runs = Atomic<Int>(0)
        let broken = Atomic<Bool>(true)
        let flaky = Step<Int, Int>("flaky") { value, _ in
            if broken.load(ordering: .acquiring) { throw URLError(.networkConnectionLost) }
            let now = running.wrappingAdd(1, ordering: .relaxed).newValue
            _ = highest.max(now, ordering: .relaxed)
            runs.wrappingAdd(1, ordering: .relaxed)
            try await Task.sleep(for: .milliseconds(50))
            running.wrappingSubtract(1, ordering: .relaxed)
            return value
        }
        let result = try await runner.run(Pipeline(name: "p", steps: Array(repeating: .background(flaky), count: 24)), input: 1)
        for id in result.backgroundTaskIDs { _ = try await waitForTask(runner, id) }
        broken.store(false, ordering: .releasing)
        let listed = try await runner.tasks.list(BackgroundTaskQuery(statuses: [.failed])).map(\.taskID)
        let report = try await runner.tasks.retryFailed(maxRetries: 1, concurrency: 6)
        #expect(report.entries.map(\.taskID) == listed)
        #expect(report.succeeded == 24)
        #expect(runs.load(ordering: .relaxed) == 24, "each task ran once")
        #expect(highest.load(ordering: .relaxed) <= 6)
        #expect(highest.load(ordering: .relaxed) > 1, "tasks ran at the same time")
        await runner.close()
    }
}
