import Flujo
import FlujoOTLP
import FlujoPostgres
import FlujoPrometheus
import FlujoSQLite
import FlujoTelemetry
import FlujoTesting
import Foundation
import Synchronization

/// What one workload measured.
struct WorkloadResult {
    var workload: String
    var n: Int
    /// Seconds per repetition (or per item, as the workload says in `unit`).
    var samples: [Double]
    var verified: Bool
    var unit: String
    var extra: [String: Double] = [:]

    var sorted: [Double] { samples.sorted() }
    var median: Double { sorted.isEmpty ? 0 : sorted[sorted.count / 2] }
    var min: Double { sorted.first ?? 0 }
    var max: Double { sorted.last ?? 0 }

    var json: String {
        var object: [String: Any] = [
            "workload": workload, "n": n, "median_s": median, "min_s": min, "max_s": max, "verified": verified,
            "unit": unit, "repetitions": samples.count,
        ]
        for (key, value) in extra { object[key] = value }
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}

/// A no-op sink, for measuring the bus.
struct NoopSink: HookSink {
    let name: String
    func handle(_ event: HookEvent) async throws {}
}

enum Workloads {
    /// A new folder for one workload's files, inside `root`.
    static func folder() -> URL {
        let url = root.appendingPathComponent(UUID().uuidString)
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Everything this process writes, removed when it exits.
    static let root: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("flujo-bench-\(getpid())-\(UUID().uuidString.prefix(8))")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: Workloads.root) }
        return url
    }()

    static func settings() -> FlujoSettings {
        var settings = FlujoSettings()
        settings.backgroundTasks.heartbeatIntervalSeconds = 3600
        settings.backgroundTasks.staleCheckIntervalSeconds = 0
        return settings
    }

    static func elapsed(since start: ContinuousClock.Instant) -> Double {
        let parts = (ContinuousClock.now - start).components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }

    /// CPU time (user and system) of this process and of its children that
    /// have been waited for, in seconds.
    static func cpuSeconds() -> Double {
        func seconds(_ who: __rusage_who) -> Double {
            var usage = rusage()
            guard getrusage(__rusage_who_t(who.rawValue), &usage) == 0 else { return 0 }
            let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            let system = Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
            return user + system
        }
        return seconds(RUSAGE_SELF) + seconds(RUSAGE_CHILDREN)
    }

    /// Peak resident memory of this process so far, in MiB (VmHWM).
    static func peakRSSMB() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return 0 }
        return kb / 1024
    }

    // MARK: W1

    static let first = Step<Int, Int>("first") { value, _ in value }
    static let tiny = Step<Int, Int>("tiny") { value, context in
        try context.reportUsage(costUSD: 0.001, tokens: 10)
        return value
    }

    /// One foreground step, then 200 background steps; time until all 200 are persisted completed.
    ///
    /// Two phases on one state file: its first runs (the write-ahead log's file
    /// still growing), then the steady state of a service whose log has reached
    /// its full size once and started over (`settle`). The median reported is the
    /// steady state's; the fresh file's is reported beside it.
    static func w1(repetitions: Int, inMemory: Bool = false) async throws -> WorkloadResult {
        var verified = true
        let path = folder().appendingPathComponent("w1.db").path
        let store: any StateStore = inMemory ? InMemoryStateStore() : try await makeStore(path: path, label: "w1")
        let pipeline = Pipeline(name: "w1", steps: [.run(first)] + Array(repeating: .background(tiny), count: 200))
        /// One run: seconds until every task is persisted, and until the run returned.
        func once() async throws -> (total: Double, launched: Double) {
            let runner = Runner(store: store, settings: settings())
            let start = ContinuousClock.now
            let result = try await runner.run(pipeline, input: 1)
            let launched = elapsed(since: start)
            // `close()` returns once every task's outcome is committed (a task's end
            // events go out just before its outcome is stored, so they would come too early).
            await runner.close()
            let seconds = elapsed(since: start)
            let completed = try await store.listBackgroundTasks(BackgroundTaskQuery(parentRunID: result.runID, statuses: [.completed], limit: 1000))
            let totals = try await store.runTotals(runID: result.runID)
            verified = verified && completed.count == 200 && totals?.backgroundTokens == 2000
            return (seconds, launched)
        }
        _ = try await once()   // statements prepared, caches filled
        var fresh: [Double] = []
        if let sqlite = store as? SQLiteStateStore {
            for _ in 0..<7 { fresh.append(try await once().total) }
            try await settle(sqlite, path: path) { _ = try await once() }
        }
        var samples: [Double] = []
        var launchSamples: [Double] = []
        for _ in 0..<repetitions {
            let run = try await once()
            samples.append(run.total)
            launchSamples.append(run.launched)
        }
        var extra = ["peak_rss_mb": peakRSSMB(), "median_s_until_run_returns": launchSamples.sorted()[launchSamples.count / 2]]
        if !fresh.isEmpty { extra["median_s_fresh_file"] = fresh.sorted()[fresh.count / 2] }
        return WorkloadResult(workload: inMemory ? "W1-memory" : "W1", n: 200, samples: samples, verified: verified,
                              unit: inMemory ? "seconds for 200 tasks, in-memory store" : "seconds for 200 tasks, steady state",
                              extra: extra)
    }

    /// Brings a state file to the steady state of a running service: repeats
    /// `work` until the write-ahead log has reached the size at which it is
    /// checkpointed (4,000 pages), then starts the log over, so later writes
    /// reuse its file instead of growing it.
    /// `--store`: a postgres:// URI whose server gets a new database per workload; nil: SQLite files.
    nonisolated(unsafe) static var storeURI: String?

    /// The store a workload runs on: a SQLite file at `path`, or a new database on `--store`'s server.
    static func makeStore(path: String, label: String) async throws -> any StateStore {
        guard let uri = storeURI else { return try SQLiteStateStore(path: path) }
        let server = try PostgresLocation(uri: uri)
        let name = "flujo_bench_\(label)_\(UInt32.random(in: 0...UInt32.max))"
        try await PostgresDatabase.createDatabase(name, on: server)
        var location = server
        location.database = name
        return try await PostgresStateStore.open(location)
    }

    /// Where a workload shared by several processes keeps its state: the SQLite
    /// file at `path`, or the URI of a new database on `--store`'s server.
    static func newLocation(path: String, label: String) async throws -> String {
        guard let uri = storeURI else { return path }
        let server = try PostgresLocation(uri: uri)
        let name = "flujo_bench_\(label)_\(UInt32.random(in: 0...UInt32.max))"
        try await PostgresDatabase.createDatabase(name, on: server)
        guard var components = URLComponents(string: uri) else { throw PostgresStoreError.invalidURI("unreadable --store") }
        components.path = "/" + name
        return components.string ?? uri
    }

    /// Opens the state at a location of `newLocation`.
    static func openStore(_ location: String) async throws -> any StateStore {
        if PostgresLocation.isPostgres(location) { return try await PostgresStateStore.open(try PostgresLocation(uri: location)) }
        return try SQLiteStateStore(path: location)
    }

    static func settle(_ store: SQLiteStateStore, path: String, work: () async throws -> Void) async throws {
        let full = 4000 * 4096
        func walSize() -> Int {
            ((try? FileManager.default.attributesOfItem(atPath: path + "-wal"))?[.size] as? Int) ?? 0
        }
        var rounds = 0
        while walSize() < full && rounds < 10_000 {
            try await work()
            rounds += 1
        }
        try store.checkpoint()
        // Flush what earlier work left dirty, so the kernel's writeback of it
        // does not compete with the measured runs for the two cores.
        sync()
    }

    // MARK: W2

    static let picky = Step<JSONValue, String>("picky") { input, _ in
        guard input["ok"] == .bool(true) else { throw PickyError() }
        return "ok"
    }

    struct PickyError: Error, CategorizedError {
        var category: ErrorCategory { .externalService }
    }

    /// 100 failed background tasks: list them, resume each with data that makes it succeed. Seconds per resume.
    ///
    /// Each repetition is a new parent run with 100 failing tasks in the same
    /// file. The first few run on a brand-new file; then the file is brought to
    /// a service's steady state (`settle`) before the measured ones.
    static func w2(repetitions: Int, otherFailed: Int) async throws -> WorkloadResult {
        let path = folder().appendingPathComponent("w2.db").path
        let store = try await makeStore(path: path, label: "w2")
        if otherFailed > 0 {
            let now = Timestamp.now
            try await store.save((0..<otherFailed).map { index in StateWrite(
                WorkflowState(runID: "other_bg_bg_\(index)", pipelineName: "other", status: .failed, createdAt: now,
                              errorMessage: "boom", metadataJSON: "{}", isBackgroundTask: true, parentRunID: "other",
                              taskID: "bg_other_\(index)", errorCategory: .network, attempts: 1, stepName: "picky"))
            })
        }
        var verified = true
        func once() async throws -> Double {
            // The launching engine is closed first: then every task's failure is committed.
            let pipeline = Pipeline(name: "w2", steps: Array(repeating: .background(picky), count: 100))
            let registry = StepRegistry(pipeline)
            let launcher = Runner(store: store, settings: settings(), registry: registry)
            let result = try await launcher.run(pipeline, input: JSONValue.object(["ok": .bool(false)]))
            await launcher.close()
            let runner = Runner(store: store, settings: settings(), registry: registry)
            let start = ContinuousClock.now
            let failed = try await runner.tasks.failed(parentRunID: result.runID)
            var completed = 0
            for task in failed {
                if try await runner.tasks.resume(taskID: task.taskID, newData: .object(["ok": .bool(true)])).status == .completed { completed += 1 }
            }
            let seconds = elapsed(since: start) / Double(max(1, failed.count))
            let stillFailed = try await store.listBackgroundTasks(BackgroundTaskQuery(parentRunID: result.runID, statuses: [.failed], limit: 1000))
            let counters = try await store.statusCounters()
            verified = verified && failed.count == 100 && completed == 100 && stillFailed.isEmpty
                && (counters.backgroundTasks[.failed] ?? 0) == otherFailed
            await runner.close()
            return seconds
        }
        var fresh: [Double] = []
        for _ in 0..<3 { fresh.append(try await once()) }
        if let sqlite = store as? SQLiteStateStore { try await settle(sqlite, path: path) { _ = try await once() } }
        var samples: [Double] = []
        for _ in 0..<repetitions { samples.append(try await once()) }
        return WorkloadResult(workload: otherFailed > 0 ? "W2+10k" : "W2", n: 100, samples: samples, verified: verified,
                              unit: "seconds per resume (list included), steady state",
                              extra: ["other_failed_tasks": Double(otherFailed), "median_s_fresh_file": fresh.sorted()[fresh.count / 2]])
    }

    // MARK: W3

    /// 10,000 running tasks with 48 h old heartbeats; one cleanup with a 24 h threshold.
    static func w3(repetitions: Int) async throws -> WorkloadResult {
        var samples: [Double] = []
        var verified = true
        for _ in 0..<repetitions {
            let store = try SQLiteStateStore(path: folder().appendingPathComponent("w3.db").path)
            let old = Timestamp.now.adding(seconds: -48 * 3600)
            try store.saveAll((0..<10_000).map { index in
                WorkflowState(runID: "p_bg_bg_\(index)", pipelineName: "w3", status: .running, createdAt: old,
                              isBackgroundTask: true, parentRunID: "p", taskID: "bg_\(index)", attempts: 1, stepName: "s")
            })
            // As in a service that has been running: the log's file already allocated.
            try store.checkpoint()
            let runner = Runner(store: store, settings: settings())
            let start = ContinuousClock.now
            let count = try await runner.tasks.cleanupStaleTasks(staleHours: 24)
            samples.append(elapsed(since: start))
            let counters = try await store.statusCounters()
            verified = verified && count == 10_000 && counters.backgroundTasks[.failed] == 10_000 && (counters.backgroundTasks[.running] ?? 0) == 0
            await runner.close()
        }
        return WorkloadResult(workload: "W3", n: 10_000, samples: samples, verified: verified, unit: "seconds per cleanup call")
    }

    // MARK: W4

    /// A full /metrics render over a database of `tasks` background tasks and 1,000 runs.
    static func w4(tasks: Int, renders: Int) async throws -> WorkloadResult {
        let store = try SQLiteStateStore(path: folder().appendingPathComponent("w4.db").path)
        let statuses = RunStatus.allCases
        let now = Timestamp.now
        var expected: [RunStatus: Int] = [:]
        var batch: [WorkflowState] = []
        for index in 0..<tasks {
            let status = statuses[index % statuses.count]
            expected[status, default: 0] += 1
            batch.append(WorkflowState(runID: "r\(index % 1000)_bg_bg_\(index)", pipelineName: "w4", status: status, createdAt: now,
                                       executionTimeMs: 5, isBackgroundTask: true, parentRunID: "r\(index % 1000)", taskID: "bg_\(index)", stepName: "s"))
            if batch.count == 50_000 { try store.saveAll(batch); batch.removeAll(keepingCapacity: true) }
        }
        batch += (0..<1000).map { WorkflowState(runID: "r\($0)", pipelineName: "w4", status: .completed, createdAt: now, executionTimeMs: 10) }
        try store.saveAll(batch)
        let events = EventMetrics()
        let hooks = HookBus()
        let collector = MetricsCollector(store: store, events: events, hooks: hooks)
        var samples: [Double] = []
        var text = ""
        for _ in 0..<renders {
            let start = ContinuousClock.now
            text = try await collector.render()
            samples.append(elapsed(since: start))
        }
        let verified = statuses.allSatisfy { text.contains("flujo_background_tasks_by_status{status=\"\($0.rawValue)\"} \(expected[$0] ?? 0)\n") }
            && text.contains("flujo_runs_by_status{status=\"completed\"} 1000\n")
            && text.contains("flujo_runs_total \(tasks + 1000)\n")
        return WorkloadResult(workload: tasks >= 1_000_000 ? "W4-1M" : "W4", n: tasks, samples: samples, verified: verified,
                              unit: "seconds per full render", extra: ["bytes": Double(text.utf8.count)])
    }

    // MARK: W10, W11

    /// Feeds every metrics sink as a busy process would: 50 step names, runs,
    /// and tasks that start, complete, fail, retry and are recovered.
    static func fillMetrics(_ events: EventMetrics, _ tasks: TaskMetrics) async throws {
        func event(_ runID: String, taskID: String?, _ payload: HookEvent.Payload) -> HookEvent {
            HookEvent(runID: runID, parentRunID: taskID == nil ? nil : "r", taskID: taskID, pipelineName: "w10", pipelineVersion: "1",
                      isBackground: taskID != nil, unixNano: Identifiers.nowUnixNano(), payload: payload)
        }
        for round in 0..<20 {
            for step in 0..<50 {
                let span = SpanPosition.root().child()
                let end = HookEvent.StepEnd(
                    stepName: "step_\(step)", stepIndex: step, mode: .sync, success: step % 7 != 0, attempts: 1,
                    latencySeconds: Double(step + round) / 1000, usage: Usage(costUSD: 0.001, tokens: 10), retries: [], span: span)
                try await events.handle(event("r", taskID: nil, step % 7 == 0 ? .onStepFailure(end) : .postStep(end)))
            }
            try await events.handle(event("r", taskID: nil, .postRun(HookEvent.RunEnd(status: .completed, durationSeconds: 0.05, usage: Usage(), stepsRun: 50, span: .root()))))
            let task = "bg_\(round)"
            try await tasks.handle(event("r_bg_\(task)", taskID: task, .preRun(HookEvent.RunStart(inputSummary: "", totalSteps: 1))))
            try await tasks.handle(event("r_bg_\(task)", taskID: task, .postRun(HookEvent.RunEnd(
                status: round % 3 == 0 ? .failed : .completed, durationSeconds: 0.01, usage: Usage(), stepsRun: 1,
                errorCategory: round % 3 == 0 ? .timeout : nil, retryScheduled: round % 6 == 0, sinceLaunchSeconds: Double(round)))))
        }
    }

    /// A full /metrics render, Prometheus text and OpenMetrics, with 50 steps'
    /// series in every family, over a store of `tasks` background tasks.
    static func w10(tasks: Int, renders: Int) async throws -> WorkloadResult {
        let store = try SQLiteStateStore(path: folder().appendingPathComponent("w10.db").path)
        var batch: [WorkflowState] = []
        let now = Timestamp.now
        for index in 0..<tasks {
            batch.append(WorkflowState(runID: "r\(index % 1000)_bg_bg_\(index)", pipelineName: "w10", status: RunStatus.allCases[index % RunStatus.allCases.count],
                                       createdAt: now, executionTimeMs: 5, isBackgroundTask: true, parentRunID: "r\(index % 1000)", taskID: "bg_\(index)", stepName: "s"))
            if batch.count == 50_000 { try store.saveAll(batch); batch.removeAll(keepingCapacity: true) }
        }
        try store.saveAll(batch)
        let events = EventMetrics()
        let taskMetrics = TaskMetrics()
        try await fillMetrics(events, taskMetrics)
        let collector = MetricsCollector(store: store, events: events, tasks: taskMetrics, hooks: HookBus())
        var samples: [Double] = []
        var openSamples: [Double] = []
        var text = ""
        var open = ""
        for _ in 0..<renders {
            var start = ContinuousClock.now
            text = try await collector.render()
            samples.append(elapsed(since: start))
            start = ContinuousClock.now
            open = try await collector.exposition(accept: "application/openmetrics-text").body
            openSamples.append(elapsed(since: start))
        }
        var collectSamples: [Double] = []
        var families: [MetricFamily] = []
        for _ in 0..<renders {
            let start = ContinuousClock.now
            families = try await collector.collect()
            collectSamples.append(elapsed(since: start))
        }
        var counterSamples: [Double] = []
        for _ in 0..<renders {
            let start = ContinuousClock.now
            _ = try await store.statusCounters()
            counterSamples.append(elapsed(since: start))
        }
        var renderSamples: [Double] = []
        for _ in 0..<renders {
            let start = ContinuousClock.now
            text = PrometheusText.render(families)
            renderSamples.append(elapsed(since: start))
        }
        let steps = Set(text.split(separator: "\n").filter { $0.hasPrefix("flujo_step_duration_seconds_count{") }).count
        let verified = steps == 50 && text.contains("flujo_tasks_started_total 20\n") && open.hasSuffix("# EOF\n") && open.contains("# {trace_id=\"")
        let familyCount = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.count
        return WorkloadResult(workload: tasks >= 1_000_000 ? "W10-1M" : "W10", n: tasks, samples: samples, verified: verified,
                              unit: "seconds per full Prometheus text render",
                              extra: ["bytes": Double(text.utf8.count), "families": Double(familyCount), "series_lines": Double(text.split(separator: "\n").count),
                                      "openmetrics_median_s": openSamples.sorted()[openSamples.count / 2], "openmetrics_bytes": Double(open.utf8.count),
                                      "collect_median_s": collectSamples.sorted()[collectSamples.count / 2], "store_counters_median_s": counterSamples.sorted()[counterSamples.count / 2], "text_median_s": renderSamples.sorted()[renderSamples.count / 2]])
    }

    /// One OTLP metrics push of the W10 families to a local receiver that
    /// discards them: read, convert, encode (protobuf-c) and send.
    static func w11(pushes: Int, gzip: Bool) async throws -> WorkloadResult {
        let server = try await DiscardServer()
        let store = InMemoryStateStore()
        let events = EventMetrics()
        let taskMetrics = TaskMetrics()
        try await fillMetrics(events, taskMetrics)
        var otlp = OTLPSettings()
        otlp.endpoint = "http://127.0.0.1:\(server.port)"
        var settings = OTLPMetricsSettings()
        settings.compression = gzip ? "gzip" : "none"
        let exporter = OTLPMetricsExporter(settings: settings.transport(from: otlp), serviceName: "bench")
        let push = MetricsPush(collector: MetricsCollector(store: store, events: events, tasks: taskMetrics), exporter: exporter, settings: settings)
        var samples: [Double] = []
        let bytesBefore = server.counters.bodyBytes.load(ordering: .relaxed)
        for _ in 0..<pushes {
            let start = ContinuousClock.now
            await push.pushOnce()
            exporter.forceFlush(timeout: .seconds(60))
            samples.append(elapsed(since: start))
        }
        let bytes = server.counters.bodyBytes.load(ordering: .relaxed) - bytesBefore
        let stats = exporter.statistics
        exporter.shutdown()
        await server.stop()
        return WorkloadResult(workload: gzip ? "W11-gzip" : "W11", n: pushes, samples: samples, verified: stats.delivered == pushes && stats.failed == 0,
                              unit: "seconds per push (read, convert, encode, send)", extra: ["bytes_per_push": Double(bytes) / Double(max(1, pushes))])
    }

    // MARK: W5

    static let trivial = Step<Int, Int>("trivial") { value, _ in value }

    /// 200 trivial foreground steps, persisted, with no sink and with 3 no-op sinks.
    static func w5(repetitions: Int) async throws -> WorkloadResult {
        let pipeline = Pipeline(name: "w5", steps: Array(repeating: .run(trivial), count: 200))
        var freshMedian: Double?
        func measure(sinks: Int) async throws -> (perStep: [Double], verified: Bool) {
            var samples: [Double] = []
            var verified = true
            let path = folder().appendingPathComponent("w5.db").path
            let store = try await makeStore(path: path, label: "w5")
            let hooks = HookBus()
            for index in 0..<sinks { hooks.register(NoopSink(name: "noop\(index)")) }
            let runner = Runner(store: store, settings: settings(), hooks: hooks)
            _ = try await runner.run(pipeline, input: 0)   // warm up: statements prepared, caches filled
            var fresh: [Double] = []
            for _ in 0..<7 {
                let start = ContinuousClock.now
                _ = try await runner.run(pipeline, input: 0)
                fresh.append(elapsed(since: start) / 200)
            }
            freshMedian = freshMedian ?? fresh.sorted()[fresh.count / 2]
            if let sqlite = store as? SQLiteStateStore { try await settle(sqlite, path: path) { _ = try await runner.run(pipeline, input: 0) } }
            for _ in 0..<repetitions {
                let start = ContinuousClock.now
                let result = try await runner.run(pipeline, input: 0)
                samples.append(elapsed(since: start) / 200)
                let steps = try await store.steps(runID: result.runID)
                verified = verified && result.status == .completed && steps.count == 200
            }
            await runner.close()
            return (samples, verified)
        }
        let bare = try await measure(sinks: 0)
        let withSinks = try await measure(sinks: 3)
        let eventsPerRun = 2.0 + 200 * 2
        let medianBare = bare.perStep.sorted()[bare.perStep.count / 2]
        let medianSinks = withSinks.perStep.sorted()[withSinks.perStep.count / 2]
        let perSinkCall = Swift.max(0, (medianSinks - medianBare) * 200 / (eventsPerRun * 3))
        return WorkloadResult(workload: "W5", n: 200, samples: bare.perStep, verified: bare.verified && withSinks.verified,
                              unit: "seconds per persisted foreground step, no sink, steady state",
                              extra: ["median_s_with_3_sinks": medianSinks, "ns_per_sink_call": perSinkCall * 1e9, "events_per_run": eventsPerRun,
                                      "median_s_fresh_file": freshMedian ?? 0])
    }

    // MARK: W6

    /// A span with the attributes a step span carries.
    static func span(_ index: Int, traceID: [UInt8]) -> TraceSpan {
        var spanID = [UInt8](repeating: 0, count: 8)
        withUnsafeBytes(of: UInt64(index + 1).bigEndian) { spanID = Array($0) }
        let start = UInt64(1_764_000_000_000_000_000) + UInt64(index) * 1000
        return TraceSpan(
            traceID: traceID, spanID: spanID, parentSpanID: [0, 0, 0, 0, 0, 0, 0, 1], runID: "run_0123456789abcdef0123456789abcdef",
            name: "charge_card", startUnixNano: start, endUnixNano: start + 250_000,
            attributes: [
                ("flujo.step.type", .string("sync")), ("flujo.attempt_number", .int(1)),
                ("flujo.run_id", .string("run_0123456789abcdef0123456789abcdef")),
                ("flujo.budget.quota_before_usd", .double(0.75)), ("flujo.budget.quota_before_tokens", .int(9000)),
                ("success", .bool(true)), ("latency_s", .double(0.00025)),
                ("flujo.budget.actual_cost_usd", .double(0.001)), ("flujo.budget.actual_tokens", .int(10)),
            ],
            events: [], status: .ok, statusMessage: nil, isBackground: false)
    }

    /// Spans per second encoded and sent in 512-span batches to a local receiver that discards them.
    static func w6(gzip: Bool, batches: Int, repetitions: Int) async throws -> WorkloadResult {
        let server = try await DiscardServer()
        let count = batches * 512
        let spans = (0..<count).map { span($0, traceID: Array(1...16)) }
        var samples: [Double] = []
        var verified = true
        var bytes = 0
        for _ in 0..<repetitions {
            var otlp = OTLPSettings()
            otlp.endpoint = "http://127.0.0.1:\(server.port)"
            otlp.maxQueueSize = count
            otlp.maxExportBatchSize = 512
            otlp.scheduleDelayMs = 60_000
            otlp.compression = gzip ? "gzip" : "none"
            let exporter = OTLPExporter(settings: otlp, serviceName: "bench")
            let requestsBefore = server.counters.requests.load(ordering: .relaxed)
            let bytesBefore = server.counters.bodyBytes.load(ordering: .relaxed)
            let start = ContinuousClock.now
            for span in spans { exporter.onEnd(span) }
            exporter.forceFlush(timeout: .seconds(120))
            let seconds = elapsed(since: start)
            samples.append(seconds)
            let stats = exporter.statistics
            exporter.shutdown()
            let requests = server.counters.requests.load(ordering: .relaxed) - requestsBefore
            bytes = server.counters.bodyBytes.load(ordering: .relaxed) - bytesBefore
            verified = verified && stats.exported == count && requests == batches && stats.droppedQueueFull == 0
        }
        await server.stop()
        let median = samples.sorted()[samples.count / 2]
        return WorkloadResult(workload: gzip ? "W6-gzip" : "W6", n: count, samples: samples, verified: verified,
                              unit: "seconds to encode and send n spans",
                              extra: ["spans_per_second": Double(count) / median, "bytes_per_span": Double(bytes) / Double(count), "peak_rss_mb": peakRSSMB()])
    }
}
