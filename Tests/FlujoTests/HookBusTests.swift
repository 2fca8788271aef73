import Flujo
import FlujoTesting
import FlujoTestSupport
import Synchronization
import Testing

struct FailingSink: HookSink {
    let name = "failing"
    func handle(_ event: HookEvent) async throws { throw OddError() }
}

struct AbortingSink: HookSink {
    let name = "aborting"
    var interests: Set<HookEventKind> { [.postStep] }
    func handle(_ event: HookEvent) async throws { throw PipelineAbortSignal("budget alarm") }
}

final class SlowSink: HookSink {
    let name = "slow"
    let gate = Gate()
    let handled = Counter()
    func handle(_ event: HookEvent) async throws {
        await gate.wait()
        handled.increment()
    }
}

final class SwitchableSink: HookSink {
    let name = "switchable"
    let failing = Atomic<Bool>(false)
    func handle(_ event: HookEvent) async throws {
        if failing.load(ordering: .relaxed) { throw OddError() }
    }
}

@Suite("Hook bus")
struct HookBusTests {
    @Test("an error in a sink is counted per sink and event and never fails the run")
    func isolatedErrors() async throws {
        let (runner, sink, _) = try makeRunner()
        runner.hooks.register(FailingSink())
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(validate)]), input: Order(id: "o", amount: 1))
        #expect(result.status == .completed)
        #expect(runner.hooks.errorCounts[HookBus.ErrorKey(sink: "failing", event: .preStep)] == 1)
        #expect(runner.hooks.errorCounts[HookBus.ErrorKey(sink: "failing", event: .postRun)] == 1)
        #expect(sink.kinds(runID: result.runID).count == 4, "other sinks still got every event")
        await runner.close()
    }

    @Test("a strict sink's error fails the run")
    func strictSink() async throws {
        let (runner, _, _) = try makeRunner()
        runner.hooks.register(FailingSink(), strict: true)
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(validate), .run(charge)]), input: Order(id: "o", amount: 1))
        #expect(result.status == .failed)
        await runner.close()
    }

    @Test("a sink stops a run only with the abort signal, gracefully")
    func abortFromSink() async throws {
        let (runner, sink, _) = try makeRunner()
        runner.hooks.register(AbortingSink())
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(validate), .run(charge)]), input: Order(id: "o", amount: 1))
        #expect(result.status == .failed)
        #expect(result.errorCategory == .controlFlow)
        #expect(result.steps.map(\.name) == ["validate"])
        #expect(sink.kinds(runID: result.runID).last == .postRun)
        await runner.close()
    }

    @Test("interests filter what a sink receives")
    func interests() async throws {
        let (runner, _, _) = try makeRunner()
        let picky = RecordingSink(name: "picky", interests: [.postRun])
        runner.hooks.register(picky)
        _ = try await runner.run(Pipeline(name: "p", steps: [.run(validate)]), input: Order(id: "o", amount: 1))
        #expect(picky.events.map(\.kind) == [.postRun])
        await runner.close()
    }

    @Test("a queued sink gets a bounded queue: the newest events are dropped and counted, the run never waits")
    func queuedDrops() async throws {
        let (runner, _, _) = try makeRunner()
        let slow = SlowSink()
        runner.hooks.register(slow, delivery: .queued(capacity: 3))
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(validate), .run(charge), .run(validate)]), input: Order(id: "o", amount: 1))
        #expect(result.status == .completed, "the run finished while the sink was blocked")
        // 8 events; the consumer holds one, the queue three; four are dropped.
        let dropped = runner.hooks.droppedCounts["slow"] ?? 0
        #expect(dropped >= 4 && dropped <= 5)
        slow.gate.open()
        await runner.close()
        #expect(slow.handled.count + dropped == 8)
    }

    @Test("a sink failing on every event logs its first error, then a line per interval with how many followed, then one line when it works again", arguments: [HookDelivery.inline, .queued(capacity: 10_000)])
    func errorStreaks(delivery: HookDelivery) async throws {
        let logs = RecordingLogs()
        let bus = HookBus(logger: logs.logger, errorLogInterval: .seconds(1))
        let sink = SwitchableSink()
        bus.register(sink, delivery: delivery)
        func emit(_ count: Int) async throws {
            for index in 0..<count {
                try await bus.emit(HookEvent(
                    runID: "run_\(index)", parentRunID: nil, taskID: nil, pipelineName: "p", pipelineVersion: "1", isBackground: false,
                    unixNano: 0, payload: .preRun(HookEvent.RunStart(inputSummary: "", totalSteps: 1))))
            }
            #expect(await bus.flush())
        }
        sink.failing.store(true, ordering: .relaxed)
        try await emit(1000)
        var errors = logs.messages(at: .error)
        #expect(errors.count == 1, "one line for a thousand errors: \(errors)")
        #expect(errors.first?.contains("Error in hook 'switchable' on pre_run of run run_0: OddError") == true, "\(errors)")
        #expect(errors.first?.contains("logged at most once every") == true)
        #expect(bus.errorCounts[HookBus.ErrorKey(sink: "switchable", event: .preRun)] == 1000, "every error is counted")

        try await Task.sleep(for: .milliseconds(1100))
        try await emit(5)
        errors = logs.messages(at: .error)
        #expect(errors.count == 2, "\(errors)")
        #expect(errors.last?.contains("(and 999 more error(s) of this sink since the last line)") == true, "\(errors)")

        sink.failing.store(false, ordering: .relaxed)
        try await emit(3)
        let notices = logs.messages(at: .notice)
        #expect(notices == ["Hook 'switchable' handles events again, after 1005 error(s) in a row (1003 of them not logged)"], "\(notices)")

        // Failing again within the interval: counted, not logged, until the interval has passed.
        sink.failing.store(true, ordering: .relaxed)
        try await emit(2)
        #expect(logs.messages(at: .error).count == 2)
        try await Task.sleep(for: .milliseconds(1100))
        try await emit(1)
        errors = logs.messages(at: .error)
        #expect(errors.count == 3, "\(errors)")
        #expect(errors.last?.contains("(and 6 more error(s) of this sink since the last line)") == true, "4 after the last line, then 2: \(errors)")
        #expect(bus.errorCounts[HookBus.ErrorKey(sink: "switchable", event: .preRun)] == 1008)
        await bus.drain()
    }

    @Test("a bus with no sinks wants nothing")
    func emptyBus() {
        let bus = HookBus()
        #expect(HookEventKind.allCases.allSatisfy { !bus.wants($0) })
        bus.register(RecordingSink(interests: [.preRun]))
        #expect(bus.wants(.preRun))
        #expect(!bus.wants(.postRun))
    }
}
