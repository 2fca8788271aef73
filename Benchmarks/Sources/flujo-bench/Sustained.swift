import ArgumentParser
import Flujo
import FlujoPostgres
import FlujoSQLite
import FlujoTesting
import Foundation
import Synchronization

/// W8 and the variants that bound its parts.
enum W8Variant: String {
    case durable = "W8"
    case memory = "W8-memory"
    case untracked = "W8-untracked"

    var unitSuffix: String {
        switch self {
        case .durable: " and committed"
        case .memory: ", in-memory store"
        case .untracked: ", tasks not tracked in the store"
        }
    }
}

/// One process's share of W8.
struct W8Part {
    var latencies: [Double]
    /// Whether `close()` reported every outcome written.
    var complete: Bool
    /// How many task bodies ran.
    var ran: Int
}

extension Workloads {
    /// W8: `runs` concurrent loops, each running a pipeline of `tasksPerRun`
    /// trivial background steps again and again for `seconds`; then every task
    /// is waited for. Reports durable tasks per second (tasks whose `completed`
    /// row is committed, over the time until the last one was) and the launch
    /// latency of a run (until `run` returned: its tasks' rows committed).
    /// On PostgreSQL (`--store`), `processes` processes share the loops and the database.
    /// Two variants bound what the durable rows cost: W8-memory runs the same
    /// loops on `InMemoryStateStore` (nothing durable: what the engine itself
    /// costs), W8-untracked on SQLite with `enable_state_tracking` off (the
    /// runs' rows are written, the tasks' rows are not).
    static func w8(runs: Int, tasksPerRun: Int, seconds: Double, processes: Int = 4, variant: W8Variant = .durable) async throws -> WorkloadResult {
        if variant != .durable && storeURI != nil {
            throw ValidationError("\(variant.rawValue) runs on SQLite only (it bounds the parts of W8 in one process); drop --store")
        }
        let inMemory = variant == .memory
        let location = inMemory ? "" : try await newLocation(path: folder().appendingPathComponent("w8.db").path, label: "w8")
        let memory = inMemory ? InMemoryStateStore() : nil
        let start = ContinuousClock.now
        let cpuAtStart = cpuSeconds()
        var latencies: [Double] = []
        var complete = true
        var ran = 0
        var peak = 0.0
        if let memory {
            let part = try await w8Part(store: memory, runs: runs, tasksPerRun: tasksPerRun, seconds: seconds)
            (latencies, complete, ran, peak) = (part.latencies, part.complete, part.ran, peakRSSMB())
        } else if storeURI == nil {
            let part = try await w8Part(location: location, runs: runs, tasksPerRun: tasksPerRun, seconds: seconds, tracked: variant != .untracked)
            (latencies, complete, ran, peak) = (part.latencies, part.complete, part.ran, peakRSSMB())
        } else {
            let children = try (0..<processes).map { _ in
                try childProcess(["--workload", "W8-child", "--path", location, "--tasks", String(tasksPerRun), "--repetitions", String(runs / processes)])
            }
            let pipes = children.map { child in
                let pipe = Pipe()
                child.standardOutput = pipe
                return pipe
            }
            for child in children { try child.run() }
            for (child, pipe) in zip(children, pipes) {
                let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                child.waitUntilExit()
                let object = (try? JSONSerialization.jsonObject(with: Data((output.split(separator: "\n").last ?? "").utf8)) as? [String: Any]) ?? [:]
                latencies += (object["latencies"] as? [Double]) ?? []
                ran += (object["ran"] as? Int) ?? 0
                complete = complete && child.terminationStatus == 0 && (object["complete"] as? Bool) == true
                peak = max(peak, (object["peak_rss_mb"] as? Double) ?? 0)
            }
        }
        let total = elapsed(since: start)
        let cpu = cpuSeconds() - cpuAtStart
        let store: any StateStore = if let memory { memory } else { try await openStore(location) }
        let counters = try await store.statusCounters()
        if let postgres = store as? PostgresStateStore { await postgres.close() }
        let launched = latencies.count * tasksPerRun
        // Every launched task ran once; its `completed` row is committed, or (untracked) it has none.
        let stored = counters.backgroundTasks[.completed] ?? 0
        let completed = variant == .untracked ? ran : stored
        let rowsAsExpected = variant == .untracked ? counters.backgroundTasks.values.reduce(0, +) == 0 : stored == launched
        let sorted = latencies.sorted()
        var result = WorkloadResult(
            workload: variant.rawValue, n: completed, samples: [total], verified: complete && ran == launched && rowsAsExpected,
            unit: "seconds for every task of \(runs) concurrent runs over \(Int(seconds)) s to be completed" + variant.unitSuffix)
        result.extra["tasks_per_second"] = Double(completed) / total
        result.extra["launch_p50_s"] = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
        result.extra["launch_p99_s"] = sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
        result.extra["peak_rss_mb"] = peak
        // CPU per task depends less on what else the machine runs than the rate does:
        // on this 2-core machine, 50,000 tasks/s needs at most 40 µs of CPU a task.
        // With PostgreSQL, the server's CPU is not counted.
        result.extra["cpu_us_per_task"] = completed > 0 ? cpu / Double(completed) * 1e6 : 0
        result.extra["processes"] = storeURI == nil ? 1 : Double(processes)
        return result
    }

    /// One process's share of W8: its launch latencies, and whether every outcome was written.
    static func w8Part(location: String, runs: Int, tasksPerRun: Int, seconds: Double, tracked: Bool = true) async throws -> W8Part {
        let store = try await openStore(location)
        let part = try await w8Part(store: store, runs: runs, tasksPerRun: tasksPerRun, seconds: seconds, tracked: tracked)
        if let postgres = store as? PostgresStateStore { await postgres.close() }
        return part
    }

    /// The loops of W8 on `store`, until every task has ended.
    static func w8Part(store: any StateStore, runs: Int, tasksPerRun: Int, seconds: Double, tracked: Bool = true) async throws -> W8Part {
        var settings = settings()
        settings.backgroundTasks.enableStateTracking = tracked
        let runner = Runner(store: store, settings: settings)
        let ran = Atomic<Int>(0)
        let tiny = Step<Int, Int>("tiny") { value, _ in
            ran.add(1, ordering: .relaxed)
            return value
        }
        let pipeline = Pipeline(name: "w8", steps: Array(repeating: .background(tiny), count: tasksPerRun))
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let latencies = await withTaskGroup(of: [Double].self) { group in
            for _ in 0..<runs {
                group.addTask {
                    var samples: [Double] = []
                    while ContinuousClock.now < deadline {
                        let launched = ContinuousClock.now
                        guard (try? await runner.run(pipeline, input: 1)) != nil else { break }
                        samples.append(elapsed(since: launched))
                    }
                    return samples
                }
            }
            return await group.reduce(into: [Double]()) { $0 += $1 }
        }
        let report = await runner.close(timeout: .seconds(120))
        return W8Part(latencies: latencies, complete: report.isComplete, ran: ran.load(ordering: .relaxed))
    }

    /// A W8 child process: its share, printed as one JSON line.
    static func w8Child(location: String, runs: Int, tasksPerRun: Int, seconds: Double) async throws {
        let part = try await w8Part(location: location, runs: runs, tasksPerRun: tasksPerRun, seconds: seconds)
        let object: [String: Any] = ["latencies": part.latencies, "complete": part.complete, "ran": part.ran, "peak_rss_mb": peakRSSMB()]
        print(String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self))
    }
}
