import Flujo
import FlujoSQLite
import Foundation

extension Workloads {
    /// W7: a process with `tasks` background tasks in flight is killed with
    /// SIGKILL; the time until another process has found every one of them
    /// (`TaskOperations.recoverOrphanedTasks`, no threshold involved).
    static func w7(tasks: Int, repetitions: Int) async throws -> WorkloadResult {
        var samples: [Double] = []
        var workerSeconds: [Double] = []
        var verified = true
        for repetition in 0..<repetitions {
            let path = folder().appendingPathComponent("w7-\(repetition).db").path
            let child = Process()
            child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            child.arguments = ["--workload", "W7-child", "--path", path, "--tasks", String(tasks)]
            let pipe = Pipe()
            child.standardOutput = pipe
            try child.run()
            // Wait until every task is launched (its row committed, running).
            var output = Data()
            while !String(decoding: output, as: UTF8.self).contains("launched") {
                let chunk = pipe.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                output.append(chunk)
            }
            kill(child.processIdentifier, SIGKILL)
            child.waitUntilExit()
            let store = try SQLiteStateStore(path: path)
            let running = try await store.statusCounters().backgroundTasks[.running] ?? 0
            let start = ContinuousClock.now
            let found = try await TaskOperations(store: store).recoverOrphanedTasks()
            samples.append(elapsed(since: start))
            let failed = try await store.statusCounters().backgroundTasks[.failed] ?? 0
            verified = verified && running == tasks && found == tasks && failed == tasks
            // Then a worker running 64 at once completes them all (the recovered tasks are due at once).
            let registry = StepRegistry()
            try registry.register(Step<Int, Int>("wait") { value, _ in value })
            let workerStart = ContinuousClock.now
            let report = await TaskWorker(operations: TaskOperations(store: store, settings: settings(), registry: registry), concurrency: 64).run(once: true)
            workerSeconds.append(elapsed(since: workerStart))
            let completed = try await store.statusCounters().backgroundTasks[.completed] ?? 0
            verified = verified && report.completed == tasks && completed == tasks
        }
        var result = WorkloadResult(workload: "W7", n: tasks, samples: samples, verified: verified, unit: "seconds until every task of a killed process is found")
        result.extra["worker_seconds_median"] = workerSeconds.sorted()[workerSeconds.count / 2]
        return result
    }

    /// The process W7 kills: launches `tasks` background tasks that wait an hour, says so, and waits.
    static func w7Child(path: String, tasks: Int) async throws {
        let store = try SQLiteStateStore(path: path)
        let runner = Runner(store: store, settings: settings())
        let wait = Step<Int, Int>("wait") { value, _ in
            try await Task.sleep(for: .seconds(3600))
            return value
        }
        _ = try await runner.run(Pipeline(name: "w7", steps: Array(repeating: .background(wait), count: tasks)), input: 1)
        print("launched")
        fflush(nil)
        try await Task.sleep(for: .seconds(3600))
    }
}
