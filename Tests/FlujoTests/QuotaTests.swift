import Flujo
import FlujoTesting
import Testing

@Suite("Background quota")
struct QuotaTests {
    let spend = Step<Order, String>("spend") { _, context in
        try context.reportUsage(costUSD: 0.2, tokens: 100)
        return "spent"
    }

    @Test("a task reserves at most the per-task limit from the parent and gives back what it did not use (defect 2)")
    func reservation() {
        let parent = QuotaLedger(Quota(costUSD: 5, tokens: 50_000))
        let reserved = parent.reserve(upTo: Quota(costUSD: 1, tokens: 10_000))
        #expect(reserved == Quota(costUSD: 1, tokens: 10_000))
        #expect(parent.current == Quota(costUSD: 4, tokens: 40_000), "the parent keeps the rest")
        parent.giveBack(reserved: reserved!, used: Usage(costUSD: 0.25, tokens: 1000))
        #expect(parent.current == Quota(costUSD: 4.75, tokens: 49_000))
        let small = QuotaLedger(Quota(costUSD: 0.5, tokens: nil))
        #expect(small.reserve(upTo: Quota(costUSD: 1, tokens: 10_000)) == Quota(costUSD: 0.5, tokens: 10_000))
        #expect(small.reserve(upTo: Quota(costUSD: 1, tokens: 10_000)) == nil, "nothing left to reserve")
    }

    @Test("with a parent quota the task's usage comes out of it, and the parent is never drained by a reservation")
    func parentKeepsBudget() async throws {
        let (runner, _, _) = try makeRunner()
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(spend), .run(charge)]), input: Order(id: "o", amount: 1), quota: Quota(costUSD: 5, tokens: 50_000))
        #expect(result.status == .completed, "the parent still had budget for charge after the launch")
        let task = try #require(try await waitForTask(runner, result.backgroundTaskIDs[0]))
        #expect(task.status == .completed)
        #expect(task.costUSD == 0.2 && task.tokens == 100)
        let totals = try #require(try await runner.store.runTotals(runID: result.runID))
        #expect(totals.backgroundCostUSD == 0.2 && totals.backgroundTokens == 100, "the task's usage is added to its parent's totals")
        #expect(totals.costUSD == 0.01 && totals.tokens == 5)
        await runner.close()
    }

    @Test("with no quota left the task is not run and is persisted failed, resource_exhaustion")
    func exhausted() async throws {
        let (runner, sink, _) = try makeRunner()
        let calls = Counter()
        let counted = Step<Order, String>("counted") { _, _ in calls.increment(); return "ran" }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(counted)]), input: Order(id: "o", amount: 1), quota: Quota(costUSD: 0, tokens: 100))
        let task = try #require(try await runner.store.loadTask(taskID: result.backgroundTaskIDs[0]))
        #expect(task.status == .failed)
        #expect(task.errorCategory == .resourceExhaustion)
        #expect(task.errorMessage == "Background quota exhausted")
        #expect(calls.count == 0)
        #expect(sink.events.contains { $0.kind == .taskFinished && $0.taskID == task.taskID })
        await runner.close()
    }

    @Test("exceeding its budget mid-run fails the task with resource_exhaustion")
    func exceeded() async throws {
        var settings = FlujoSettings()
        settings.backgroundTasks.maxCostPerTask = 0.1
        let (runner, _, _) = try makeRunner(settings: settings)
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(spend)]), input: Order(id: "o", amount: 1))
        let task = try #require(try await waitForTask(runner, result.backgroundTaskIDs[0]))
        #expect(task.status == .failed)
        #expect(task.errorCategory == .resourceExhaustion)
        #expect(task.errorMessage?.contains("quota exceeded") == true)
        await runner.close()
    }

    @Test("enable_quota = false switches budgets off")
    func disabled() async throws {
        var settings = FlujoSettings()
        settings.backgroundTasks.enableQuota = false
        settings.backgroundTasks.maxCostPerTask = 0
        let (runner, _, _) = try makeRunner(settings: settings)
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(spend)]), input: Order(id: "o", amount: 1))
        #expect(try await waitForTask(runner, result.backgroundTaskIDs[0])?.status == .completed)
        await runner.close()
    }
}
