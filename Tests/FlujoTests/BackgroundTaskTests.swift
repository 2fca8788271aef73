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
        #expect(spanPipeline.recorder.openRunCount == 0)
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

    @Test("waiting for no task in flight ends when the last task ends, or at the deadline while one still runs")
    func waitUntilEmpty() async throws {
        let tracker = BackgroundTracker()
        let release = AsyncStream<Void>.makeStream()
        tracker.start(runID: "r1", taskID: "t1") {
            for await _ in release.stream { break }
            tracker.remove(runID: "r1")
        }
        // The deadline passes while the task runs: the wait ends, the task is still there.
        let start = ContinuousClock.now
        await tracker.waitUntilEmpty(until: .now + .milliseconds(50))
        #expect(!tracker.isEmpty)
        #expect(ContinuousClock.now - start >= .milliseconds(50))
        // Far from the deadline, the task's end ends the wait.
        let waiting = Task { await tracker.waitUntilEmpty(until: .now + .seconds(600)) }
        try await Task.sleep(for: .milliseconds(20))
        release.continuation.yield()
        await waiting.value
        #expect(tracker.isEmpty)
        #expect(ContinuousClock.now - start < .seconds(300))
        // Nothing in flight: no wait at all.
        await tracker.waitUntilEmpty(until: .now + .seconds(600))
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

@Suite("Event order of background executions")
struct EventOrderTests {
    @Test("over 2,000 runs every background execution's events come after its taskLaunched; the recorder keeps nothing once all have ended")
    func launchedFirst() async throws {
        let recording = RecordingSink(interests: [.taskLaunched, .preRun, .taskFinished])
        let hooks = HookBus()
        hooks.register(recording)
        let spans = SpanPipeline(hooks: hooks, store: nil)
        var settings = FlujoSettings()
        settings.backgroundTasks.maxCostPerTask = 1
        let runner = Runner(store: InMemoryStateStore(), settings: settings, hooks: hooks)
        let quick = Step<Int, Int>("quick") { value, _ in value }
        let pipeline = Pipeline(name: "p", steps: [.background(quick), .background(quick)])
        for index in 0..<1_000 {
            // Every tenth run has no budget left for its tasks: launched, refused, never run.
            _ = try await runner.run(pipeline, input: index, quota: index % 10 == 0 ? Quota(costUSD: 0) : nil)
        }
        await runner.close()
        var launched = Set<String>()
        var finished = 0
        for event in recording.events {
            switch event.payload {
            case let .taskLaunched(launch): launched.insert(launch.taskID)
            case .preRun where event.isBackground:
                let announced = launched.contains(event.taskID ?? "")
                #expect(announced, "a background execution started before its launch was announced")
            case .taskFinished: finished += 1
            default: break
            }
        }
        #expect(launched.count == 2_000 && finished == 2_000)
        #expect(spans.recorder.openRunCount == 0, "no open run left")
    }
}
