import Flujo
import FlujoTesting
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

    @Test("a bus with no sinks wants nothing")
    func emptyBus() {
        let bus = HookBus()
        #expect(HookEventKind.allCases.allSatisfy { !bus.wants($0) })
        bus.register(RecordingSink(interests: [.preRun]))
        #expect(bus.wants(.preRun))
        #expect(!bus.wants(.postRun))
    }
}
