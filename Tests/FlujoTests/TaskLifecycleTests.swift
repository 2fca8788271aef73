@testable import Flujo
import FlujoTestSupport
import FlujoTesting
import Foundation
import Testing

@Suite("Task lifecycle")
struct TaskLifecycleTests {
    static let launchedAt = Timestamp(millisecondsSince1970: 1_700_000_000_000)

    static func launched() -> WorkflowState {
        TaskLifecycle.launched(
            taskID: "bg_1", parentRunID: "run", pipelineName: "orders", pipelineVersion: "2", stepName: "send_receipt",
            inputJSON: #"{"id":"o1"}"#, contextJSON: #"{"k":1}"#, at: launchedAt)
    }

    @Test("launched: running, first attempt, its input and ids in the metadata")
    func launch() throws {
        let task = Self.launched()
        #expect(task.runID == "run_bg_bg_1" && task.taskID == "bg_1" && task.parentRunID == "run" && task.isBackgroundTask)
        #expect(task.status == .running && task.attempts == 1 && task.createdAt == Self.launchedAt && task.updatedAt == Self.launchedAt)
        #expect(TaskLifecycle.input(of: task) == #"{"id":"o1"}"#)
        #expect(task.stepName == "send_receipt" && task.errorMessage == nil && task.errorCategory == nil)
    }

    @Test("refused for lack of budget: failed, resource_exhaustion, the input kept")
    func quotaRefused() {
        let task = TaskLifecycle.refusedForQuota(Self.launched())
        #expect(task.status == .failed && task.errorCategory == .resourceExhaustion)
        #expect(task.errorMessage == TaskLifecycle.quotaRefusedMessage)
        #expect(task.metadataJSON.contains(#""error_category":"resource_exhaustion""#))
        #expect(TaskLifecycle.input(of: task) == #"{"id":"o1"}"#)
    }

    @Test("resumed: one more attempt; new input replaces the recorded one only when given; the status waits for the outcome")
    func resume() {
        var failed = Self.launched()
        failed.status = .failed
        let same = TaskLifecycle.resumed(failed, newInputJSON: nil)
        #expect(same.attempts == 2 && same.status == .failed && TaskLifecycle.input(of: same) == #"{"id":"o1"}"#)
        let changed = TaskLifecycle.resumed(failed, newInputJSON: #"{"approved":true}"#)
        #expect(TaskLifecycle.input(of: changed) == #"{"approved":true}"#)
        #expect(TaskLifecycle.input(of: failed, newInputJSON: "3") == "3")
    }

    @Test("finished: the outcome replaces status, error and category; usage adds up; a resume records where it came from")
    func finish() {
        var task = Self.launched()
        task.costUSD = 0.5
        task.tokens = 10
        let failedOutcome = TaskLifecycle.Outcome(
            status: .failed, errorMessage: "timed out", errorCategory: .timeout, outputJSON: nil, contextJSON: "{}",
            usage: Usage(costUSD: 0.25, tokens: 5), durationSeconds: 0.5, inputJSON: "1")
        let failed = TaskLifecycle.finished(task, outcome: failedOutcome, resumedFrom: nil, stepHistoryJSON: "[]", at: Self.launchedAt.adding(seconds: 1))
        #expect(failed.status == .failed && failed.errorMessage == "timed out" && failed.errorCategory == .timeout)
        #expect(failed.costUSD == 0.75 && failed.tokens == 15 && failed.executionTimeMs == 500 && failed.resumedFrom == nil)
        #expect(failed.updatedAt == Self.launchedAt.adding(seconds: 1) && failed.createdAt == Self.launchedAt)
        #expect(failed.metadataJSON.contains(#""error_category":"timeout""#) && failed.currentStepIndex == 0)
        let okOutcome = TaskLifecycle.Outcome(
            status: .completed, errorMessage: nil, errorCategory: nil, outputJSON: "\"ok\"", contextJSON: "{}",
            usage: Usage(), durationSeconds: 0.1, inputJSON: "1")
        let resumed = TaskLifecycle.finished(TaskLifecycle.resumed(failed, newInputJSON: nil), outcome: okOutcome, resumedFrom: .failed, stepHistoryJSON: "[]", at: .now)
        #expect(resumed.status == .completed && resumed.errorMessage == nil && resumed.errorCategory == nil)
        #expect(resumed.resumedFrom == "failed" && resumed.attempts == 2 && resumed.lastStepOutputJSON == "\"ok\"" && resumed.currentStepIndex == 1)
        #expect(resumed.metadataJSON.contains(#""error_category":null"#))
    }

    @Test("cancelled at shutdown only while still running; stale cleanup's transition is failed, timeout")
    func cancelAndStale() {
        let running = Self.launched()
        let cancelled = try! #require(TaskLifecycle.cancelledAtShutdown(running, at: Self.launchedAt.adding(seconds: 5)))
        #expect(cancelled.status == .cancelled && cancelled.errorCategory == .cancelled && cancelled.status.isResumable)
        #expect(TaskLifecycle.cancelledAtShutdown(cancelled, at: .now) == nil)
        let stale = TaskLifecycle.stale(thresholdHours: 24, at: Self.launchedAt)
        #expect(stale.status == .failed && stale.errorCategory == .timeout)
        #expect(stale.errorMessage == "no heartbeat for over 24 h; process likely crashed")
        #expect(TaskLifecycle.stale(thresholdHours: 0.5, at: .now).errorMessage == "no heartbeat for over 0.5 h; process likely crashed")
        #expect(TaskLifecycle.stale(thresholdHours: .infinity, at: .now).errorMessage?.contains("inf") == true)
        let applied = stale.applied(to: running)
        #expect(applied.status == .failed && applied.updatedAt == Self.launchedAt && applied.attempts == running.attempts)
    }
}

@Suite("Engine and task operations")
struct EngineTests {
    @Test("creating a runner registers nothing on its bus and writes nothing")
    func runnerChangesNothing() async throws {
        let hooks = HookBus()
        let store = InMemoryStateStore()
        let runner = Runner(store: store, hooks: hooks)
        #expect(hooks.sinkNames.isEmpty)
        #expect(!runner.isMaintenanceRunning)
        #expect(try await store.statusCounters().totalRuns == 0)
        _ = try await runner.tasks.list()
        _ = try await runner.tasks.failed()
        _ = try await runner.tasks.stats()
        #expect(!runner.isMaintenanceRunning, "reads start nothing")
        await runner.close()
    }

    @Test("the background policy is applied where a sink is registered")
    func backgroundPolicyOnTheBus() async throws {
        let hooks = HookBus()
        let skipping = RecordingSink(name: "skip")
        let including = RecordingSink(name: "include")
        hooks.register(skipping, background: .skip)
        hooks.register(including)
        let runner = Runner(store: InMemoryStateStore(), hooks: hooks)
        let receipt = Step<Int, Int>("receipt") { value, _ in value }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(receipt)]), input: 1)
        await runner.close()
        #expect(skipping.events.allSatisfy { !$0.isBackground })
        #expect(skipping.events.contains { $0.kind == .postRun && $0.runID == result.runID })
        #expect(including.events.contains { $0.isBackground && $0.kind == .taskFinished })
    }

    @Test("suggestions: a typo finds its task; a 100,000-character id is refused at once with no lookup of its prefixes")
    func suggestions() async throws {
        let store = InMemoryStateStore()
        let operations = TaskOperations(store: store)
        let id = "bg_0123456789abcdef0123456789abcdef"
        try await store.save(TaskLifecycle.launched(taskID: id, parentRunID: "r", pipelineName: "p", pipelineVersion: "1", stepName: "s", inputJSON: "1", contextJSON: "{}", at: .now))
        #expect(try await operations.suggestions(for: String(id.dropLast(3)) + "xyz") == [id])
        #expect(try await operations.suggestions(for: "zzzzzz").isEmpty)
        #expect(try await operations.suggestions(for: "bg_").isEmpty, "fewer than 4 shared characters suggest nothing")
        let huge = "bg_" + String(repeating: "f", count: 100_000)
        let started = ContinuousClock.now
        await #expect(throws: RunnerError.invalidTaskID(length: huge.utf8.count, limit: TaskOperations.maxTaskIDLength)) {
            try await operations.resume(taskID: huge)
        }
        #expect(try await operations.task(id: String(huge.prefix(TaskOperations.maxTaskIDLength))) == nil)
        await #expect(throws: RunnerError.self) { try await operations.task(id: huge) }
        #expect(ContinuousClock.now - started < .seconds(5), "the old suggestion took 14.5 s for 100,000 characters")
        #expect(RunnerError.invalidTaskID(length: 100_003, limit: 256).description.count < 200, "the message does not repeat the id")
    }

    @Test("hours far out of range are clamped: no trap, every task found")
    func hugeHours() async throws {
        let store = InMemoryStateStore()
        let operations = TaskOperations(store: store)
        var task = TaskLifecycle.launched(taskID: "bg_x", parentRunID: "r", pipelineName: "p", pipelineVersion: "1", stepName: "s", inputJSON: "1", contextJSON: "{}", at: .now)
        task.status = .failed
        try await store.save(task)
        for hours in [Double.infinity, 1e308, 3e12, Double.greatestFiniteMagnitude] {
            #expect(try await operations.failed(hoursBack: hours).count == 1)
            #expect(try await operations.cleanupStaleTasks(staleHours: hours) == 0)
        }
        #expect(Timestamp.now.adding(seconds: .infinity).millisecondsSince1970 > Int64.max / 2)
        #expect(Timestamp.now.adding(seconds: -.infinity).millisecondsSince1970 < Int64.min / 2)
        #expect(Timestamp(millisecondsSince1970: .max - 1).adding(seconds: 1e300).millisecondsSince1970 == .max)
        #expect(Timestamp(millisecondsSince1970: .min + 1).adding(seconds: -1e300).millisecondsSince1970 == .min)
        #expect(Timestamp(millisecondsSince1970: 5).adding(seconds: .nan).millisecondsSince1970 == 5)
    }

    @Test("in a batch, a run's progress is replaced only by its next write, when that is progress too")
    func progressReplacedLater() {
        let run = WorkflowState(runID: "p", pipelineName: "x", status: .running)
        var ended = run
        ended.status = .completed
        let task = WorkflowState(runID: "p_bg_t", pipelineName: "x", status: .running, isBackgroundTask: true, parentRunID: "p", taskID: "t")
        let step = StepRecord(runID: "p", stepIndex: 0, stepName: "s", success: true)
        let other = WorkflowState(runID: "q", pipelineName: "x", status: .running)
        let writes = [
            StateWrite(run, step: step), StateWrite(task), StateWrite(other, step: step), StateWrite(run, step: step),
            StateWrite(ended), StateWrite(run, step: step), StateWrite(run), StateWrite(run, step: step),
        ]
        // 0: p's next write (3) is progress. 3: p's next (4) ends it. 5: p's next (6) has no step. 7: last.
        #expect(writes.progressReplacedLater == [true, false, false, false, false, false, false, false])
        #expect([StateWrite]().progressReplacedLater.isEmpty)
    }

    @Test("the step history is a JSON array of each result's object, in order, text escaped; empty when no step ran")
    func historyJSON() throws {
        let results = [
            StepResult(name: "validate", outputJSON: #"{"ok":true}"#, success: true, attempts: 1, latencySeconds: 0.25, usage: Usage(), feedback: nil),
            StepResult(name: "say \"hi\"\n", outputJSON: nil, success: false, attempts: 3, latencySeconds: 1, usage: Usage(costUSD: 0.5, tokens: 7), feedback: "tab\there ☃"),
        ]
        let text = Runner.historyJSON(results)
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
        #expect(parsed.map { $0["name"] as? String } == ["validate", "say \"hi\"\n"])
        #expect(parsed[1]["feedback"] as? String == "tab\there ☃")
        #expect(parsed[1]["tokens"] as? Int == 7 && parsed[0]["success"] as? Bool == true)
        #expect(Runner.historyJSON([StepResult]()) == "[]")
        #expect(Runner.historyJSON([results[0]]) == "[" + results[0].jsonText + "]")
    }
}
