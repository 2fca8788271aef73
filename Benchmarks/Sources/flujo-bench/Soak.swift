import Flujo
import FlujoSQLite
import Foundation

extension Workloads {
    /// W9: `total` background tasks through one store whose retention keeps
    /// completed work `keepSeconds`; maintenance prunes as it goes. Samples the
    /// size of the database and its log every second (the curve), and times a
    /// scrape's counter read at the start and at the end (it must not grow).
    static func w9(total: Int, keepSeconds: Double) async throws -> WorkloadResult {
        let path = folder().appendingPathComponent("w9.db").path
        let store = try SQLiteStateStore(path: path)
        var settings = settings()
        settings.state.keepCompletedHours = keepSeconds / 3600
        settings.backgroundTasks.staleCheckIntervalSeconds = 0.5
        settings.backgroundTasks.heartbeatIntervalSeconds = 0.5
        let runner = Runner(store: store, settings: settings)
        runner.startMaintenance()
        let tiny = Step<Int, Int>("tiny") { value, _ in value }
        let perRun = 100
        let pipeline = Pipeline(name: "w9", steps: Array(repeating: .background(tiny), count: perRun))
        func size() -> Double {
            let files = [path, path + "-wal"]
            return files.reduce(0.0) { $0 + Double((try? FileManager.default.attributesOfItem(atPath: $1)[.size] as? Int) ?? 0) } / 1_048_576
        }
        func scrape() async throws -> Double {
            let start = ContinuousClock.now
            for _ in 0..<100 { _ = try await store.statusCounters() }
            return elapsed(since: start) / 100
        }
        let scrapeBefore = try await scrape()
        let start = ContinuousClock.now
        var curve: [Double] = []
        var launched = 0
        var lastSample = ContinuousClock.now
        while launched < total {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<16 { group.addTask { _ = try? await runner.run(pipeline, input: 1) } }
            }
            launched += 16 * perRun
            if ContinuousClock.now - lastSample >= .seconds(1) {
                curve.append(size())
                lastSample = ContinuousClock.now
                try? FileHandle.standardError.write(contentsOf: Data(String(format: "\r%d tasks, %.1f MiB", launched, curve.last ?? 0).utf8))
            }
        }
        try? FileHandle.standardError.write(contentsOf: Data("\n".utf8))
        let seconds = elapsed(since: start)
        let scrapeAfter = try await scrape()
        _ = await runner.close(timeout: .seconds(120))
        let counters = try await store.statusCounters()
        var result = WorkloadResult(
            workload: "W9", n: launched, samples: [seconds], verified: counters.totalRuns + counters.prunedRuns >= launched,
            unit: "seconds for \(launched) tasks with \(Int(keepSeconds)) s retention")
        result.extra["size_mb_max"] = curve.max() ?? 0
        result.extra["size_mb_last"] = curve.last ?? 0
        result.extra["size_mb_at_25pct"] = curve.isEmpty ? 0 : curve[curve.count / 4]
        result.extra["size_mb_at_50pct"] = curve.isEmpty ? 0 : curve[curve.count / 2]
        result.extra["size_mb_at_75pct"] = curve.isEmpty ? 0 : curve[curve.count * 3 / 4]
        result.extra["rows_left"] = Double(counters.totalRuns)
        result.extra["pruned"] = Double(counters.prunedRuns)
        result.extra["scrape_s_before"] = scrapeBefore
        result.extra["scrape_s_after"] = scrapeAfter
        result.extra["tasks_per_second"] = Double(launched) / seconds
        return result
    }

    /// Retention alone: `tasks` completed tasks past keeping (with `fresh` newer
    /// ones kept), pruned in batches of 500; rows per second.
    static func w9Prune(tasks: Int, fresh: Int) async throws -> WorkloadResult {
        let store = try SQLiteStateStore(path: folder().appendingPathComponent("w9p.db").path)
        let old = Timestamp.now.adding(seconds: -3600)
        var batch: [WorkflowState] = []
        for index in 0..<(tasks + fresh) {
            let time = index < tasks ? old : Timestamp.now
            batch.append(WorkflowState(runID: "r\(index % 1000)_bg_bg_\(index)", pipelineName: "w9", status: .completed, createdAt: time, updatedAt: time,
                                       executionTimeMs: 1, isBackgroundTask: true, parentRunID: "r\(index % 1000)", taskID: "bg_\(index)", stepName: "s"))
            if batch.count == 50_000 { try store.saveAll(batch); batch.removeAll(keepingCapacity: true) }
        }
        try store.saveAll(batch)
        var settings = settings()
        settings.state.keepCompletedHours = 0.5
        let operations = TaskOperations(store: store, settings: settings)
        let start = ContinuousClock.now
        let pruned = try await operations.prune(batch: 500)
        let seconds = elapsed(since: start)
        let counters = try await store.statusCounters()
        return WorkloadResult(workload: "W9-prune", n: tasks, samples: [seconds], verified: pruned == tasks && counters.backgroundTasks[.completed] == fresh,
                              unit: "seconds to prune \(tasks) rows", extra: ["rows_per_second": Double(pruned) / seconds])
    }
}
