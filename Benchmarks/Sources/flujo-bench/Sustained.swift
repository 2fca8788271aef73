import Flujo
import FlujoSQLite
import Foundation
import Synchronization

extension Workloads {
    /// W8: `runs` concurrent loops, each running a pipeline of `tasksPerRun`
    /// trivial background steps again and again for `seconds`; then every task
    /// is waited for. Reports durable tasks per second (tasks whose `completed`
    /// row is committed, over the time until the last one was) and the launch
    /// latency of a run (until `run` returned: its tasks' rows committed).
    static func w8(runs: Int, tasksPerRun: Int, seconds: Double) async throws -> WorkloadResult {
        let path = folder().appendingPathComponent("w8.db").path
        let store = try SQLiteStateStore(path: path)
        let runner = Runner(store: store, settings: settings())
        let tiny = Step<Int, Int>("tiny") { value, _ in value }
        let pipeline = Pipeline(name: "w8", steps: Array(repeating: .background(tiny), count: tasksPerRun))
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int(seconds * 1000))
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
        let total = elapsed(since: start)
        let completed = try await store.statusCounters().backgroundTasks[.completed] ?? 0
        let sorted = latencies.sorted()
        var result = WorkloadResult(
            workload: "W8", n: completed, samples: [total], verified: report.isComplete && completed == latencies.count * tasksPerRun,
            unit: "seconds for every task of \(runs) concurrent runs over \(Int(seconds)) s to be completed and committed")
        result.extra["tasks_per_second"] = Double(completed) / total
        result.extra["launch_p50_s"] = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
        result.extra["launch_p99_s"] = sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, sorted.count * 99 / 100)]
        result.extra["peak_rss_mb"] = peakRSSMB()
        return result
    }
}
