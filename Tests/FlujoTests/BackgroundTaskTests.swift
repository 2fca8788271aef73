@testable import Flujo
import FlujoSQLite
import FlujoTestSupport
import FlujoTesting
import Foundation
import Synchronization
import Testing

/// The scenarios of the original's integration tests, and more.
@Suite("Background tasks")
struct BackgroundTaskTests {
    @Test("fire and forget: the run returns while its background task is still waiting")
    func fireAndForget() async throws {
        let (runner, sink, _) = try makeRunner()
        let gate = Gate()
        let slow = Step<Order, String>("slow_receipt") { order, _ in
            await gate.wait()
            return "sent \(order.id)"
        }
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(validate), .background(slow), .run(charge)]), input: Order(id: "o", amount: 1))
        // The run finished although the task cannot finish before the gate opens.
        #expect(result.status == .completed)
        #expect(result.steps.map(\.name) == ["validate", "slow_receipt", "charge"])
        let taskID = try #require(result.backgroundTaskIDs.first)
        #expect(result.steps[1].feedback == "Launched in background (task_id=\(taskID))")
        #expect(try #require(try await runner.store.loadTask(taskID: taskID)).status == .running)
        // The launch step passed its input through to the next step.
        #expect(try result.output(as: Order.self) == Order(id: "o", amount: 1))
        gate.open()
        let finished = try #require(try await waitForTask(runner, taskID))
        #expect(finished.status == .completed)
        #expect(finished.lastStepOutputJSON == "\"sent o\"")
        // The outcome is saved before taskFinished is emitted: wait for the event.
        #expect(await sink.waitUntil { $0.contains { $0.kind == .taskFinished && $0.taskID == taskID } })
        await runner.close()
    }

    @Test("ids: task_id is bg_ + 32 hex, run id is <parent>_bg_<task_id>, metadata holds what resume needs")
    func identifiers() async throws {
        let (runner, _, _) = try makeRunner()
        let service = FlakyService()
        service.healthy.withLock { $0 = true }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(service.step)]), input: Order(id: "o7", amount: 3))
        let taskID = try #require(result.backgroundTaskIDs.first)
        #expect(try #/^bg_[0-9a-f]{32}$/#.wholeMatch(in: taskID) != nil)
        let task = try #require(try await waitForTask(runner, taskID))
        #expect(task.runID == "\(result.runID)_bg_\(taskID)")
        #expect(task.parentRunID == result.runID)
        #expect(task.isBackgroundTask)
        #expect(task.stepName == "send_receipt")
        let metadata = try #require(try JSONSerialization.jsonObject(with: Data(task.metadataJSON.utf8)) as? [String: Any])
        #expect(metadata["task_id"] as? String == taskID)
        #expect(metadata["parent_run_id"] as? String == result.runID)
        #expect(metadata["step_name"] as? String == "send_receipt")
        #expect((metadata["input_data"] as? [String: Any])?["id"] as? String == "o7")
        await runner.close()
    }

    @Test("a flaky background step fails, is listed as failed, is resumed, and is then no longer listed")
    func failListResume() async throws {
        let (runner, _, _) = try makeRunner()
        let service = FlakyService()
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(service.step)]), input: Order(id: "o", amount: 1))
        #expect(result.status == .completed, "a failing background task never fails its parent")
        let taskID = try #require(result.backgroundTaskIDs.first)
        let failed = try #require(try await waitForTask(runner, taskID))
        #expect(failed.status == .failed)
        #expect(failed.errorCategory == .network)
        #expect(failed.errorMessage == "connection reset by peer")
        #expect(try await runner.tasks.failed().map(\.taskID) == [taskID])
        service.healthy.withLock { $0 = true }
        let outcome = try await runner.tasks.resume(taskID: taskID)
        #expect(outcome.status == .completed)
        #expect(outcome.attempts == 2)
        #expect(try await runner.tasks.failed().isEmpty)
        let task = try #require(try await runner.store.loadTask(taskID: taskID))
        #expect(task.status == .completed)
        #expect(task.errorMessage == nil)
        #expect(task.errorCategory == nil)
        #expect(task.resumedFrom == "failed")
        await runner.close()
    }

    @Test("consecutive background steps launch as one group: every row is committed before any task starts")
    func launchGroup() async throws {
        let (runner, sink, _) = try makeRunner()
        let seen = Mutex<[Int]>([])
        let store = runner.store
        // Each task looks for all three task rows the moment it starts.
        let probe = Step<Order, Int>("probe") { _, context in
            let rows = try await store.listBackgroundTasks(BackgroundTaskQuery(limit: 10))
            seen.withLock { $0.append(rows.count) }
            return rows.count
        }
        let result = try await runner.run(
            Pipeline(name: "p", steps: [.run(validate), .background(probe), .background(probe), .background(probe), .run(charge)]),
            input: Order(id: "o", amount: 1))
        #expect(result.status == .completed)
        #expect(result.backgroundTaskIDs.count == 3)
        for taskID in result.backgroundTaskIDs { _ = try await waitForTask(runner, taskID) }
        #expect(seen.withLock { $0 } == [3, 3, 3])
        // The parent's step log has every launch, in order.
        #expect(try await store.steps(runID: result.runID).map(\.stepName) == ["validate", "probe", "probe", "probe", "charge"])
        // Each launch's start, launch and end in turn, after the group is committed.
        let kinds = sink.events(runID: result.runID).map(\.kind)
        #expect(kinds == [.preRun, .preStep, .postStep, .preStep, .taskLaunched, .postStep, .preStep, .taskLaunched, .postStep,
                          .preStep, .taskLaunched, .postStep, .preStep, .postStep, .postRun])
        await runner.close()
    }

    @Test("the spans of a launch group: one per launch step, each the parent of its own task's run")
    func launchGroupSpans() async throws {
        let path = TestSupport.temporaryDirectory("flujo-runner").appendingPathComponent("state.db").path
        let store = try SQLiteStateStore(path: path)
        let hooks = HookBus()
        let spanPipeline = SpanPipeline(hooks: hooks, store: store)
        let runner = Runner(store: store, hooks: hooks)
        let quick = Step<Int, Int>("quick") { value, _ in value }
        let other = Step<Int, Int>("other") { value, _ in value }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(quick), .background(other), .background(quick)]), input: 1)
        for taskID in result.backgroundTaskIDs { _ = try await waitForTask(runner, taskID) }
        await runner.close()
        await spanPipeline.close()
        #expect(spanPipeline.recorder.openCounts == (0, 0))
        let spans = try await runner.store.spans(runID: result.runID)
        let root = try #require(spans.first { $0.parentSpanID == nil })
        let launches = spans.filter { $0.parentSpanID == root.spanID }
        #expect(launches.map(\.name) == ["quick", "other", "quick"])
        for (launch, taskID) in zip(launches, result.backgroundTaskIDs) {
            #expect(launch.attributes["flujo.task_id"] == taskID)
            let taskRun = try #require(spans.first { $0.runID == Identifiers.taskRunID(parentRunID: result.runID, taskID: taskID) && $0.parentSpanID == launch.spanID })
            #expect(taskRun.isBackground)
        }
    }

    @Test("a task that finishes before its launcher records it is not left behind as in flight")
    func trackerRace() async throws {
        var settings = FlujoSettings()
        settings.backgroundTasks.shutdownTimeoutSeconds = 2
        let (runner, _, _) = try makeRunner(settings: settings)
        let quick = Step<Int, Int>("quick") { value, _ in value }
        for _ in 0..<20 {
            let result = try await runner.run(Pipeline(name: "p", steps: Array(repeating: .background(quick), count: 200)), input: 1)
            for taskID in result.backgroundTaskIDs {
                #expect(try await waitForTask(runner, taskID)?.status == .completed)
            }
        }
        // Every task has ended, so none may still count as in flight (close would wait for it).
        let deadline = ContinuousClock.now + .seconds(10)
        while !runner.tracker.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(runner.tracker.isEmpty)
        await runner.close()
    }

    @Test("a hook that stops the run on a launch stops it after its group; every launch of the group starts")
    func launchGroupStopped() async throws {
        let (runner, _, _) = try makeRunner()
        runner.hooks.register(AbortOnSecondLaunch())
        let service = FlakyService()
        service.healthy.withLock { $0 = true }
        let result = try await runner.run(
            Pipeline(name: "p", steps: [.background(service.step), .background(service.step), .background(service.step)]),
            input: Order(id: "o", amount: 1))
        #expect(result.status == .failed)
        #expect(result.errorMessage?.contains("second launch refused") == true)
        #expect(result.backgroundTaskIDs.count == 3)
        for taskID in result.backgroundTaskIDs {
            #expect(try await waitForTask(runner, taskID)?.status == .completed)
        }
        #expect(try await runner.store.steps(runID: result.runID).count == 3)
        #expect(try await runner.store.load(runID: result.runID)?.status == .failed)
        await runner.close()
    }

    @Test("a recording hook sees the background execution's own events, flagged, and the launch pair flagged too")
    func backgroundEvents() async throws {
        let (runner, sink, _) = try makeRunner()
        let service = FlakyService()
        service.healthy.withLock { $0 = true }
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(validate), .background(service.step)]), input: Order(id: "o", amount: 1))
        let taskID = try #require(result.backgroundTaskIDs.first)
        _ = try await waitForTask(runner, taskID)
        #expect(await sink.waitUntil { $0.contains { $0.kind == .taskFinished } })
        let parentEvents = sink.events(runID: result.runID)
        #expect(parentEvents.map(\.kind) == [.preRun, .preStep, .postStep, .preStep, .taskLaunched, .postStep, .postRun])
        // The launch step's start and end are both flagged; the rest of the parent is not.
        #expect(parentEvents.map(\.isBackground) == [false, false, false, true, true, true, false])
        let taskRunID = Identifiers.taskRunID(parentRunID: result.runID, taskID: taskID)
        let taskEvents = sink.events(runID: taskRunID)
        #expect(taskEvents.map(\.kind) == [.preRun, .preStep, .postStep, .postRun, .taskFinished])
        #expect(taskEvents.allSatisfy { $0.isBackground && $0.taskID == taskID && $0.parentRunID == result.runID })
        await runner.close()
    }

    @Test("a background execution that fails emits on_step_failure and a failed task_finished; every start has its end")
    func failedBackgroundEvents() async throws {
        let (runner, sink, _) = try makeRunner()
        let service = FlakyService()
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(service.step)]), input: Order(id: "o", amount: 1))
        let taskID = try #require(result.backgroundTaskIDs.first)
        #expect(await sink.waitUntil { $0.contains { $0.kind == .taskFinished } })
        let taskEvents = sink.events(runID: Identifiers.taskRunID(parentRunID: result.runID, taskID: taskID))
        #expect(taskEvents.map(\.kind) == [.preRun, .preStep, .onStepFailure, .postRun, .taskFinished])
        guard case let .taskFinished(end) = taskEvents.last?.payload else { Issue.record("no task_finished"); return }
        #expect(end.status == .failed)
        #expect(end.errorCategory == .network)
        // Pairs: every pre_step is closed, every pre_run has its post_run.
        let all = sink.events
        #expect(all.filter { $0.kind == .preStep }.count == all.filter { [.postStep, .onStepFailure, .onPause].contains($0.kind) }.count)
        #expect(all.filter { $0.kind == .preRun }.count == all.filter { $0.kind == .postRun }.count)
        await runner.close()
    }

    @Test("the background copy of the context is isolated from the parent")
    func contextIsolation() async throws {
        let (runner, _, _) = try makeRunner()
        let gate = Gate()
        let mutate = Step<Order, String>("mutate") { _, context in
            context.updateContext { $0["touched_by_background"] = .bool(true) }
            await gate.wait()
            return "done"
        }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(mutate), .run(charge)]), input: Order(id: "o", amount: 1), context: RunContext(["customer": .string("ada")]))
        gate.open()
        let task = try #require(try await waitForTask(runner, result.backgroundTaskIDs[0]))
        #expect(result.context["touched_by_background"] == nil)
        #expect(result.context["charged"] == .bool(true))
        #expect(task.contextJSON.contains("touched_by_background"))
        #expect(task.contextJSON.contains("ada"))
        #expect(!task.contextJSON.contains("charged"))
        await runner.close()
    }

    @Test("a 48-hour-old running task is cleaned up with a 24-hour threshold; a fresh one is not")
    func staleCleanup() async throws {
        let (runner, _, _) = try makeRunner()
        let now = Timestamp.now
        for (id, age) in [("bg_old", 48.0), ("bg_fresh", 1.0)] {
            var state = WorkflowState(runID: "parent_bg_\(id)", pipelineName: "p", status: .running, createdAt: now.adding(seconds: -age * 3600), isBackgroundTask: true, parentRunID: "parent", taskID: id, stepName: "s")
            state.updatedAt = now.adding(seconds: -age * 3600)
            try await runner.store.save(state)
        }
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
        let deadline = ContinuousClock.now + .seconds(20)
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
        try await seed.store.save(dead)
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
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, try await runner.store.loadTask(taskID: "bg_dead")?.status == .running {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(try await runner.store.loadTask(taskID: "bg_dead")?.status == .failed)
        await runner.close()
        await seed.close()
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

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}

@Suite("Run context")
struct RunContextTests {
    @Test("the context round-trips through the JSON text the store keeps")
    func roundTrip() throws {
        let context = RunContext(["a": .array([.string("x"), .number(2)]), "b": .object(["c": .bool(true)]), "n": .null])
        let decoded = try JSONDecoder().decode(RunContext.self, from: Data(context.jsonText.utf8))
        #expect(decoded == context)
    }

    @Test("a resumed task sees the context it was launched with")
    func resumeSeesContext() async throws {
        let (runner, _, _) = try makeRunner()
        let seen = Counter()
        let check = Step<Order, String>("check_context") { _, context in
            if context.context["plan"] == .string("keep me") { seen.increment() }
            if context.isBackground { throw FlakyNetworkError() }
            return "ok"
        }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(check)]), input: Order(id: "o", amount: 1), context: RunContext(["plan": .string("keep me")]))
        _ = try await waitForTask(runner, result.backgroundTaskIDs[0])
        #expect(try await runner.tasks.resume(taskID: result.backgroundTaskIDs[0]).status == .completed)
        #expect(seen.count == 2)
        await runner.close()
    }
}

/// Stops the run at the start of its second launch.
final class AbortOnSecondLaunch: HookSink {
    let name = "abort-on-second-launch"
    var interests: Set<HookEventKind> { [.preStep] }
    private let count = Mutex(0)
    func handle(_ event: HookEvent) async throws {
        guard event.isBackground, event.taskID == nil else { return }
        if count.withLock({ $0 += 1; return $0 }) == 2 { throw PipelineAbortSignal("second launch refused") }
    }
}
