import Flujo
import FlujoTestSupport
import FlujoTesting
import Foundation
import Testing

@Suite("Resume across processes")
struct MultiProcessResumeTests {
    let helper = TestSupport.executable("FlujoTestHelper")

    /// A failed task of step "record" in a fresh database.
    func failedTask() async throws -> (path: String, taskID: String) {
        let (runner, _, path) = try makeRunner()
        let record = Step<JSONValue, JSONValue>("record") { _, _ in throw FlakyNetworkError() }
        let result = try await runner.run(Pipeline(name: "p", steps: [.background(record)]), input: JSONValue.object(["n": .number(1)]))
        let state = try #require(try await waitForTask(runner, result.backgroundTaskIDs[0]))
        #expect(state.status == .failed)
        await runner.close()
        return (path, result.backgroundTaskIDs[0])
    }

    @Test("a task that failed in one process is resumed by another")
    func resumeFromSecondProcess() async throws {
        let (path, taskID) = try await failedTask()
        let marker = TestSupport.temporaryDirectory().appendingPathComponent("marker")
        _ = FileManager.default.createFile(atPath: marker.path, contents: nil)
        let output = try await TestSupport.run(helper, ["resume", path, marker.path, taskID])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout.split(separator: "\n") == ["running \(taskID)", "completed"])
        let (runner, _, _) = try makeRunner(path: path)
        #expect(try await runner.store.loadTask(taskID: taskID)?.status == .completed)
        await runner.close()
    }

    @Test("two and eight processes racing to resume one task: it runs exactly once (defect 10)", arguments: [2, 8])
    func race(processes: Int) async throws {
        let (path, taskID) = try await failedTask()
        let marker = TestSupport.temporaryDirectory().appendingPathComponent("marker")
        _ = FileManager.default.createFile(atPath: marker.path, contents: nil)
        let outputs = try await withThrowingTaskGroup(of: TestSupport.ProcessOutput.self) { group in
            for _ in 0..<processes {
                group.addTask { try await TestSupport.run(helper, ["resume", path, marker.path, taskID]) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let lines = outputs.map { $0.stdout.split(separator: "\n").last.map(String.init) ?? "" }
        #expect(outputs.allSatisfy { $0.status == 0 }, "\(outputs.map(\.stderr))")
        #expect(lines.filter { $0 == "completed" }.count == 1, "\(lines)")
        #expect(lines.filter { $0 == "busy" || $0 == "already-completed" }.count == processes - 1, "\(lines)")
        let runs = try String(contentsOf: marker, encoding: .utf8).split(separator: "\n")
        #expect(runs.count == 1, "the step ran \(runs.count) times")
    }

    @Test("a resumer killed mid-step leaves the task failed, with the attempt it died in counted, and resumable at once")
    func killedResumer() async throws {
        let (path, taskID) = try await failedTask()
        let marker = TestSupport.temporaryDirectory().appendingPathComponent("marker")
        _ = FileManager.default.createFile(atPath: marker.path, contents: nil)
        var environment = ProcessInfo.processInfo.environment
        environment["FLUJO_HELPER_STEP_MS"] = "60000"
        let resumer = try RunningProcess(helper, ["resume", path, marker.path, taskID], environment: environment)
        #expect(await resumer.waitForLine { $0 == "running \(taskID)" })
        let (runner, _, _) = try makeRunner(path: path)
        try runner.registry.register(Step<JSONValue, JSONValue>("record") { input, _ in input })
        // While the other process holds the claim, this one is refused, and listings say so.
        await #expect(throws: RunnerError.self) { _ = try await runner.tasks.resume(taskID: taskID) }
        let listed = try await runner.tasks.failed()
        #expect(listed.map(\.taskID) == [taskID])
        #expect(listed.first?.isBeingResumed == true)
        await resumer.kill()
        #expect(try await runner.tasks.list().first?.isBeingResumed == false)
        let before = try #require(try await runner.store.loadTask(taskID: taskID))
        #expect(before.status == .failed)
        #expect(before.attempts == 2, "the attempt the killed resumer made counts")
        let outcome = try await runner.tasks.resume(taskID: taskID)
        #expect(outcome.status == .completed)
        #expect(outcome.attempts == 3)
        #expect(try await runner.store.loadTask(taskID: taskID)?.status == .completed)
        await runner.close()
    }
}
