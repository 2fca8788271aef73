import Flujo
import FlujoTesting
import Foundation
import Testing

@Suite("Foreground runs")
struct RunnerTests {
    @Test("two good steps: events in the original's order, state persisted as completed")
    func goodRun() async throws {
        let (runner, sink, _) = try makeRunner()
        let pipeline = Pipeline(name: "orders", version: "3", steps: [.run(validate), .run(charge)])
        let result = try await runner.run(pipeline, input: Order(id: "o1", amount: 10))
        #expect(result.status == .completed)
        #expect(try result.output(as: Order.self) == Order(id: "o1", amount: 10))
        #expect(result.context["charged"] == .bool(true))
        #expect(result.usage == Usage(costUSD: 0.01, tokens: 5))
        #expect(sink.kinds(runID: result.runID) == [.preRun, .preStep, .postStep, .preStep, .postStep, .postRun])
        let events = sink.events(runID: result.runID)
        #expect(events.allSatisfy { !$0.isBackground && $0.pipelineName == "orders" && $0.pipelineVersion == "3" && $0.parentRunID == nil })
        let state = try #require(try await runner.store.load(runID: result.runID))
        #expect(state.status == .completed)
        #expect(state.currentStepIndex == 2)
        #expect(state.totalSteps == 2)
        #expect(state.contextJSON.contains("\"charged\":true"))
        #expect(state.executionTimeMs != nil)
        #expect(state.costUSD == 0.01 && state.tokens == 5)
        let history = try JSONSerialization.jsonObject(with: Data(state.stepHistoryJSON.utf8)) as? [[String: Any]]
        #expect(history?.map { $0["name"] as? String } == ["validate", "charge"])
        #expect(try await runner.store.steps(runID: result.runID).map(\.stepName) == ["validate", "charge"])
        await runner.close()
    }

    @Test("a failing second step: pre_step, on_step_failure, post_run; failed with category and message")
    func failingStep() async throws {
        let (runner, sink, _) = try makeRunner()
        let pipeline = Pipeline(name: "orders", steps: [.run(charge), .run(validate)])
        let result = try await runner.run(pipeline, input: Order(id: "o2", amount: -1))
        #expect(result.status == .failed)
        #expect(result.errorCategory == .validation)
        #expect(result.errorMessage == "amount must be positive")
        #expect(sink.kinds(runID: result.runID) == [.preRun, .preStep, .postStep, .preStep, .onStepFailure, .postRun])
        let state = try #require(try await runner.store.load(runID: result.runID))
        #expect(state.status == .failed)
        #expect(state.errorCategory == .validation)
        await runner.close()
    }

    @Test("a pausing step: on_pause ends the step, the run is paused with the message, category control_flow")
    func pause() async throws {
        let (runner, sink, _) = try makeRunner()
        let approve = Step<Order, Order>("approve") { _, context in try context.pause("waiting for approval") }
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(approve), .run(charge)]), input: Order(id: "o", amount: 1))
        #expect(result.status == .paused)
        #expect(sink.kinds(runID: result.runID) == [.preRun, .preStep, .onPause, .postRun])
        let state = try #require(try await runner.store.load(runID: result.runID))
        #expect(state.status == .paused)
        #expect(state.errorMessage == "waiting for approval")
        #expect(state.errorCategory == .controlFlow)
        await runner.close()
    }

    @Test("an abort from a step stops the run gracefully with a partial result")
    func abortFromStep() async throws {
        let (runner, _, _) = try makeRunner()
        let stop = Step<Order, Order>("stop") { _, context in try context.abort("operator said stop") }
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(charge), .run(stop), .run(validate)]), input: Order(id: "o", amount: 1))
        #expect(result.status == .failed)
        #expect(result.errorCategory == .controlFlow)
        #expect(result.steps.map(\.name) == ["charge", "stop"])
        #expect(result.steps.map(\.success) == [true, false])
        await runner.close()
    }

    @Test("a retry policy retries transient errors and records the retries on the step end")
    func retries() async throws {
        let (runner, sink, _) = try makeRunner()
        let attempts = Counter()
        let flaky = Step<Order, Order>("flaky") { order, _ in
            if attempts.increment() < 3 { throw URLError(.networkConnectionLost) }
            return order
        }
        let policy = RetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(1), maxDelay: .milliseconds(4))
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(flaky, retry: policy)]), input: Order(id: "o", amount: 1))
        #expect(result.status == .completed)
        #expect(result.steps[0].attempts == 3)
        guard case let .postStep(end) = sink.events(runID: result.runID).first(where: { $0.kind == .postStep })?.payload else {
            Issue.record("no post_step")
            return
        }
        #expect(end.retries.map(\.attempt) == [1, 2])
        #expect(end.retries.allSatisfy { $0.category == .network })
        await runner.close()
    }

    @Test("non-retryable errors are not retried")
    func noRetryForValidation() async throws {
        let (runner, _, _) = try makeRunner()
        let calls = Counter()
        let bad = Step<Order, Order>("bad") { _, _ in calls.increment(); throw ValidationFailure(message: "bad input") }
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(bad, retry: RetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(1)))]), input: Order(id: "o", amount: 1))
        #expect(result.status == .failed)
        #expect(calls.count == 1)
        await runner.close()
    }

    @Test("exceeding the run's quota fails the step with resource_exhaustion")
    func runQuota() async throws {
        let (runner, _, _) = try makeRunner()
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(charge), .run(charge)]), input: Order(id: "o", amount: 1), quota: Quota(costUSD: 0.015))
        #expect(result.status == .failed)
        #expect(result.errorCategory == .resourceExhaustion)
        #expect(result.steps.map(\.success) == [true, false])
        await runner.close()
    }

    @Test("a step whose input does not decode fails with a validation error naming the step")
    func badInput() async throws {
        let (runner, _, _) = try makeRunner()
        let toText = Step<Order, String>("to_text") { order, _ in order.id }
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(toText), .run(validate)]), input: Order(id: "o", amount: 1))
        #expect(result.status == .failed)
        #expect(result.errorCategory == .validation)
        #expect(result.errorMessage?.contains("step 'validate' takes Order") == true)
        await runner.close()
    }

    @Test("event times are wall-clock nanoseconds (defect 8 of the original)")
    func wallClockEvents() async throws {
        let (runner, sink, _) = try makeRunner()
        let before = UInt64(Date().timeIntervalSince1970 * 1e9)
        let result = try await runner.run(Pipeline(name: "p", steps: [.run(validate)]), input: Order(id: "o", amount: 1))
        let after = UInt64(Date().timeIntervalSince1970 * 1e9) + 1_000_000
        let times = sink.events(runID: result.runID).map(\.unixNano)
        #expect(times.allSatisfy { $0 >= before - 1_000_000 && $0 <= after })
        #expect(times == times.sorted())
        await runner.close()
    }

    @Test("the default classifier maps Swift errors to categories")
    func classifier() {
        let classifier = DefaultErrorClassifier()
        #expect(classifier.classify(CancellationError()).category == .cancelled)
        #expect(classifier.classify(URLError(.timedOut)).category == .timeout)
        #expect(classifier.classify(URLError(.cannotConnectToHost)).category == .network)
        #expect(classifier.classify(URLError(.cannotConnectToHost)).isRetryable)
        #expect(classifier.classify(POSIXError(.ECONNREFUSED)).category == .network)
        #expect(classifier.classify(POSIXError(.EACCES)).category == .authorization)
        #expect(classifier.classify(POSIXError(.ENOSPC)).category == .resourceExhaustion)
        #expect(classifier.classify(DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "x"))).category == .validation)
        #expect(classifier.classify(PausedSignal("p")).category == .controlFlow)
        #expect(classifier.classify(StateStoreError.diskFull(path: "x")).category == .resourceExhaustion)
        #expect(classifier.classify(CocoaError(.fileReadNoPermission)).category == .authorization)
        #expect(classifier.classify(OddError()).category == .unknown)
        #expect(!classifier.classify(OddError()).isRetryable)
        #expect(classifier.classify(FlakyNetworkError()).category == .network)
        #expect(classifier.classify(FlakyNetworkError()).isRetryable)
        #expect(classifier.classify(ValidationFailure(message: "m")).category == .validation)
    }

    @Test("duplicate step names are refused")
    func duplicateNames() throws {
        let registry = StepRegistry()
        try registry.register(validate)
        #expect(throws: StepRegistryError.duplicateName("validate")) { try registry.register(Step<Order, Order>("validate") { o, _ in o }) }
    }

    @Test("retry delays grow exponentially, are capped and jittered")
    func backoff() {
        let policy = RetryPolicy(maxAttempts: 10, baseDelay: .milliseconds(100), maxDelay: .seconds(1), jitter: 0.5)
        #expect(policy.delay(afterAttempt: 1, random: 0) == .milliseconds(100))
        #expect(policy.delay(afterAttempt: 3, random: 0) == .milliseconds(400))
        #expect(policy.delay(afterAttempt: 8, random: 0) == .seconds(1))
        #expect(policy.delay(afterAttempt: 2, random: 1) == .milliseconds(100))
    }
}
