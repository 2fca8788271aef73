import Flujo
import FlujoPostgres
import FlujoSQLite
import Foundation

extension Workloads {
    /// W7: a process with `tasks` background tasks in flight is killed with
    /// SIGKILL; the time until another process has found every one of them
    /// (`TaskOperations.recoverOrphanedTasks`, no threshold involved). Then
    /// the recovered tasks (due at once) are completed: by one worker running
    /// 64 at once on SQLite, by `workers` worker processes of 16 each on
    /// PostgreSQL (`--store`).
    static func w7(tasks: Int, repetitions: Int, workers: Int = 4) async throws -> WorkloadResult {
        var samples: [Double] = []
        var workerSeconds: [Double] = []
        var verified = true
        for repetition in 0..<repetitions {
            let location = try await newLocation(path: folder().appendingPathComponent("w7-\(repetition).db").path, label: "w7")
            let child = try childProcess(["--workload", "W7-child", "--path", location, "--tasks", String(tasks)])
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
            let store = try await openStore(location)
            let running = try await store.statusCounters().backgroundTasks[.running] ?? 0
            let start = ContinuousClock.now
            // A server notices a killed client's connection closing within moments: until then its owner lives.
            var found = 0
            while found < running && elapsed(since: start) < 30 {
                found += try await TaskOperations(store: store).recoverOrphanedTasks()
            }
            samples.append(elapsed(since: start))
            let failed = try await store.statusCounters().backgroundTasks[.failed] ?? 0
            verified = verified && running == tasks && found == tasks && failed == tasks
            let workerStart = ContinuousClock.now
            if storeURI == nil {
                let registry = StepRegistry()
                try registry.register(Step<Int, Int>("wait") { value, _ in value })
                let report = await TaskWorker(operations: TaskOperations(store: store, settings: settings(), registry: registry), concurrency: 64).run(once: true)
                verified = verified && report.completed == tasks
            } else {
                let processes = try (0..<workers).map { _ in try childProcess(["--workload", "W7-worker", "--path", location, "--tasks", "16"]) }
                for process in processes { try process.run() }
                for process in processes { process.waitUntilExit() }
                verified = verified && processes.allSatisfy { $0.terminationStatus == 0 }
            }
            workerSeconds.append(elapsed(since: workerStart))
            let completed = try await store.statusCounters().backgroundTasks[.completed] ?? 0
            verified = verified && completed == tasks
            if let postgres = store as? PostgresStateStore { await postgres.close() }
        }
        var result = WorkloadResult(workload: "W7", n: tasks, samples: samples, verified: verified, unit: "seconds until every task of a killed process is found")
        let median = workerSeconds.sorted()[workerSeconds.count / 2]
        result.extra["worker_seconds_median"] = median
        result.extra["worker_tasks_per_second"] = Double(tasks) / median
        result.extra["worker_processes"] = storeURI == nil ? 1 : Double(workers)
        return result
    }

    /// The process W7 kills: launches `tasks` background tasks that wait an hour, says so, and waits.
    static func w7Child(location: String, tasks: Int) async throws {
        let store = try await openStore(location)
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

    /// A W7 worker process: completes due tasks, `concurrency` at once, until none is due.
    static func w7Worker(location: String, concurrency: Int) async throws {
        let store = try await openStore(location)
        let registry = StepRegistry()
        try registry.register(Step<Int, Int>("wait") { value, _ in value })
        let report = await TaskWorker(operations: TaskOperations(store: store, settings: settings(), registry: registry), concurrency: concurrency).run(once: true)
        print("completed \(report.completed)")
        if let postgres = store as? PostgresStateStore { await postgres.close() }
    }

    /// This benchmark run again, as a child process with `arguments`.
    static func childProcess(_ arguments: [String]) throws -> Process {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        child.arguments = arguments + (storeURI.map { ["--store", $0] } ?? [])
        return child
    }
}
