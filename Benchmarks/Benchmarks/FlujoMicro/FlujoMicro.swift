import Benchmark
import Flujo
import FlujoTesting

/// A sink that does nothing, to measure the bus itself.
struct NoopSink: HookSink {
    let name: String
    func handle(_ event: HookEvent) async throws {}
}

let sampleEvent = HookEvent(
    runID: "run_0123456789abcdef0123456789abcdef", parentRunID: nil, taskID: nil, pipelineName: "p", pipelineVersion: "1",
    isBackground: false, unixNano: 1, payload: .postStep(.init(stepName: "s", stepIndex: 0, mode: .sync, success: true, attempts: 1, latencySeconds: 0, usage: Usage(), retries: [])))

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .mallocCountTotal, .throughput], maxDuration: .seconds(2))

    // What the runner does for every event when no sink is registered: one atomic load, no event built.
    Benchmark("Hook path with no sink (per event)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let bus = HookBus()
        for _ in benchmark.scaledIterations {
            blackHole(bus.wants(.postStep))
        }
    }

    // Delivering one already-built event to three inline no-op sinks.
    Benchmark("Emit to 3 no-op sinks (per event)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let bus = HookBus()
        for index in 0..<3 { bus.register(NoopSink(name: "noop\(index)")) }
        for _ in benchmark.scaledIterations {
            try await bus.emit(sampleEvent)
        }
    }

    // A whole foreground run of one trivial step on the in-memory store, with no sink
    // and no tracer installed: what trace context costs a run when nobody traces.
    Benchmark("Run of 1 trivial step, in-memory store, no sink, no tracer (per run)", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let runner = Runner(store: InMemoryStateStore())
        let trivial = Step<Int, Int>("trivial") { value, _ in value }
        let pipeline = Pipeline(name: "micro", steps: [.run(trivial)])
        for _ in benchmark.scaledIterations {
            blackHole(try await runner.run(pipeline, input: 0))
        }
        await runner.close()
    }

    // A whole foreground run of 200 trivial steps on the in-memory store, with no sink.
    Benchmark("Run of 200 trivial steps, in-memory store, no sink") { benchmark in
        let runner = Runner(store: InMemoryStateStore())
        let trivial = Step<Int, Int>("trivial") { value, _ in value }
        let pipeline = Pipeline(name: "micro", steps: Array(repeating: .run(trivial), count: 200))
        for _ in benchmark.scaledIterations {
            blackHole(try await runner.run(pipeline, input: 0))
        }
        await runner.close()
    }
}
