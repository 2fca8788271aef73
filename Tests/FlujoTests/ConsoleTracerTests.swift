@testable import Flujo
import FlujoTesting
import FlujoTestSupport
import Foundation
import Synchronization
import Testing

final class Lines: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    var write: @Sendable (String) -> Void { { [self] line in lines.withLock { $0.append(line) } } }
}

@Suite("Console tracer")
struct ConsoleTracerTests {
    func traced(_ steps: [PipelineStep], background: BackgroundPolicy = .skip, verbose: Bool = false, color: String = "never") async throws -> (Lines, PipelineResult) {
        let lines = Lines()
        let (runner, sink, _) = try makeRunner()
        runner.hooks.register(ConsoleTracer(verbose: verbose, color: color, write: lines.write), background: background)
        let result = try await runner.run(Pipeline(name: "orders", version: "2", steps: steps), input: Order(id: "o1", amount: 5))
        for id in result.backgroundTaskIDs { _ = try await waitForTask(runner, id) }
        if !result.backgroundTaskIDs.isEmpty { await sink.waitUntil { $0.filter { $0.kind == .taskFinished }.count == result.backgroundTaskIDs.count } }
        await runner.close()
        return (lines, result)
    }

    @Test("a good run: start, indented steps with durations and usage, end")
    func goodRun() async throws {
        let (lines, result) = try await traced([.run(validate), .run(charge)])
        let text = lines.all
        #expect(text.count == 6)
        #expect(text[0] == "▶ run \(result.runID) (orders v2, 2 steps)")
        #expect(text[1] == "  ▶ validate")
        #expect(text[2].hasPrefix("  ✔ validate "))
        #expect(text[4].contains("($0.0100, 5 tokens)"))
        #expect(text[5].hasPrefix("✔ run \(result.runID) completed in "))
        #expect(!text.joined().contains("\u{1B}["), "no colour when asked for none")
    }

    @Test("a failure shows the category and message; a pause shows its message")
    func failureAndPause() async throws {
        let (failed, _) = try await traced([.run(Step<Order, Order>("charge") { _, _ in throw FlakyNetworkError() })])
        #expect(failed.all.contains { $0.hasPrefix("  ✘ charge ") && $0.hasSuffix("— network: connection reset by peer") })
        #expect(failed.all.last?.contains("failed") == true)
        let (paused, _) = try await traced([.run(Step<Order, Order>("approve") { _, context in try context.pause("needs a manager") })])
        #expect(paused.all.contains("  ⏸ approve paused — needs a manager"))
    }

    @Test("background events are skipped by default and marked [bg] when included")
    func backgroundPolicy() async throws {
        let good = Step<Order, String>("receipt") { _, _ in "ok" }
        let (skipped, _) = try await traced([.run(validate), .background(good)])
        #expect(!skipped.all.contains { $0.contains("[bg]") || $0.contains("receipt") })
        #expect(skipped.all.count == 4)
        let (included, result) = try await traced([.run(validate), .background(good)], background: .include)
        #expect(included.all.contains { $0.contains("[bg] ▶ receipt (launch)") })
        #expect(included.all.contains { $0.contains("[bg] ✔ task \(result.backgroundTaskIDs[0]) (receipt) completed") })
        #expect(included.all.filter { $0.contains("[bg]") }.count >= 6)
    }

    @Test("step names and errors with escape sequences or newlines are printed escaped")
    func escapes() async throws {
        struct Hostile: Error, CustomStringConvertible { var description: String { "line1\nline2\u{1B}[31m" } }
        let hostile = Step<Order, Order>("bad\u{1B}[2Jname") { _, _ in throw Hostile() }
        let (lines, _) = try await traced([.run(hostile)])
        #expect(!lines.all.contains { $0.unicodeScalars.contains { $0.value == 0x1B } || $0.contains("\n") })
        #expect(lines.all.contains { $0.contains("bad\\u{1B}[2Jname") })
    }

    @Test("verbose shows inputs and outputs; colour when asked")
    func verboseAndColour() async throws {
        let (lines, _) = try await traced([.run(validate)], verbose: true, color: "always")
        #expect(lines.all.contains { $0.contains("input={\"amount\":5,\"id\":\"o1\"}") })
        #expect(lines.all.contains { $0.contains("output=") })
        #expect(lines.all.joined().contains("\u{1B}[32m"))
    }

    @Test("auto colour stays off when NO_COLOR is set or output is captured")
    func noColor() {
        let tracer = ConsoleTracer(color: "auto", environment: ["NO_COLOR": "1"], write: { _ in })
        let event = HookEvent(runID: "r", parentRunID: nil, taskID: nil, pipelineName: "p", pipelineVersion: "1", isBackground: false, unixNano: 0, payload: .postRun(.init(status: .completed, durationSeconds: 0.5, usage: Usage(), stepsRun: 1, errorMessage: nil, errorCategory: nil)))
        #expect(tracer.render(event) == "✔ run r completed in 500.0 ms")
    }

    @Test("on a standard output that cannot be written, each line is the sink's counted error and the run completes: no trap")
    func standardOutputThatCannotBeWritten() async throws {
        let helper = TestSupport.executable("FlujoTestHelper")
        let folder = TestSupport.temporaryDirectory("flujo-console")
        defer { try? FileManager.default.removeItem(at: folder) }
        func run(_ redirection: String) async throws -> TestSupport.ProcessOutput {
            let path = folder.appendingPathComponent("state-\(UUID().uuidString).db").path
            return try await TestSupport.run(URL(fileURLWithPath: "/bin/sh"), ["-c", "exec \"$0\" console \"$1\" \(redirection)", helper.path, path])
        }
        // A writable file: six lines (the run and two steps, each started and ended), no error.
        let file = folder.appendingPathComponent("out.txt").path
        let written = try await run(">'\(file)'")
        #expect(written.status == 0, "\(written.stderr)")
        #expect(written.stderr == "status completed, console errors 0\n", "\(written.stderr)")
        #expect(try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").count == 6)
        // A full disk: the same six lines are six errors of the console sink, all counted, the first logged by the bus.
        let full = try await run(">/dev/full")
        #expect(full.status == 0, "exit \(full.status): \(full.stderr)")
        #expect(full.stderr.hasSuffix("status completed, console errors 6\n"), "\(full.stderr)")
        #expect(full.stderr.contains("Error in hook 'console' on pre_run of run run_"), "\(full.stderr)")
        #expect(full.stderr.components(separatedBy: "cannot write to standard output: No space left on device").count == 2, "one line for the streak: \(full.stderr)")
        // Closed: whatever the descriptor became, the lines are errors, not a stop.
        let closed = try await run(">&-")
        #expect(closed.status == 0, "exit \(closed.status): \(closed.stderr)")
        #expect(closed.stderr.hasSuffix("status completed, console errors 6\n"), "\(closed.stderr)")
    }

    @Test("a write larger than a pipe holds arrives whole while it is read; a closed descriptor is an error")
    func wholeWrites() async throws {
        var descriptors: [Int32] = [0, 0]
        #expect(pipe(&descriptors) == 0)
        defer { close(descriptors[0]) }
        // More than a pipe holds at once (64 KiB), read by another thread while it is written.
        let text = String(repeating: "0123456789abcdef", count: 16_384)
        let readEnd = descriptors[0]
        let reader = Task.detached { () -> Int in
            var total = 0
            var buffer = [UInt8](repeating: 0, count: 8192)
            while true {
                let count = read(readEnd, &buffer, buffer.count)
                if count <= 0 { return total }
                total += count
            }
        }
        try StandardStream.write(text, to: descriptors[1], name: "standard output")
        close(descriptors[1])
        #expect(await reader.value == text.utf8.count)
        #expect(throws: StandardStreamError(stream: "standard output", code: EBADF)) {
            try StandardStream.write("x", to: descriptors[1], name: "standard output")
        }
    }
}

@Suite("Persisted traces")
struct PersistedTraceTests {
    @Test("the trace kept in the store includes background spans, tagged, under their launch step")
    func storedTrace() async throws {
        let (runner, _, _) = try makeRunner()
        let spanPipeline = SpanPipeline(hooks: runner.hooks, store: runner.store)
        let good = Step<Order, String>("receipt") { _, _ in "ok" }
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(validate), .background(good)]), input: Order(id: "o", amount: 1))
        _ = try await waitForTask(runner, result.backgroundTaskIDs[0])
        await runner.close()
        await spanPipeline.close()
        let spans = try await runner.store.spans(runID: result.runID)
        #expect(spans.count == 5)
        let root = try #require(spans.first { $0.parentSpanID == nil })
        #expect(root.runID == result.runID && root.name == "pipeline_run" && !root.isBackground)
        let launch = try #require(spans.first { $0.name == "receipt" && $0.parentSpanID == root.spanID })
        #expect(launch.isBackground && launch.attributes["flujo.is_background"] == "true")
        let backgroundRun = try #require(spans.first { $0.parentSpanID == launch.spanID })
        #expect(backgroundRun.isBackground && backgroundRun.name == "pipeline_run")
        #expect(spans.filter(\.isBackground).count == 3)
        #expect(spans.allSatisfy { $0.traceID == root.traceID && $0.startUnixNano <= $0.endUnixNano })
    }
}

@Suite("Spans kept per run")
struct SpanCapTests {
    @Test("at most max_spans_per_run spans of a run are kept, its root always; the rest are counted as dropped")
    func cap() async throws {
        let (runner, _, _) = try makeRunner()
        let spans = SpanPipeline(hooks: runner.hooks, store: runner.store, maxSpansPerRun: 10)
        let step = Step<Order, Order>("s") { order, _ in order }
        let result = try await runner.run(Pipeline(name: "p", steps: (0..<30).map { _ in .run(step) }), input: Order(id: "o", amount: 1))
        let small = try await runner.run(Pipeline(name: "p", steps: [.run(step)]), input: Order(id: "o", amount: 1))
        await runner.close()
        await spans.close()
        let kept = try await runner.store.spans(runID: result.runID)
        #expect(kept.count == 10)
        #expect(kept.contains { $0.name == "pipeline_run" && $0.parentSpanID == nil })
        #expect(try await runner.store.spans(runID: small.runID).count == 2, "a later run starts its own count")
        #expect(spans.persister?.droppedCount == 21)
    }
}
