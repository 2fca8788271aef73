// A helper process for tests that need more than one process on one state file.
//
//   FlujoTestHelper write PATH COUNT PREFIX       save COUNT runs, one transaction each, printing "committed N"
//   FlujoTestHelper hold PATH RUN_ID             begin a transaction, insert RUN_ID, print "in-transaction", wait
//   FlujoTestHelper claim PATH TASK_ID OWNER [HOLD_MS]  claim a task; print "claimed" (and hold the claim
//                                               HOLD_MS before exiting) or "lost <status>"
//   FlujoTestHelper resume PATH MARKER TASK_ID... resume tasks whose step is "record": it prints "running TASK_ID",
//                                               waits FLUJO_HELPER_STEP_MS (150), appends a line to
//                                               MARKER; prints each outcome ("completed"), or "busy" /
//                                               "already-completed" when another process won
//   FlujoTestHelper worker PATH MARKER N          run due tasks whose step is "record", N at a time, until none is
//                                               due; each appends a line to MARKER (after printing "running TASK_ID"
//                                               and waiting FLUJO_HELPER_STEP_MS, when set); prints "done RAN".
//                                               FLUJO_HELPER_CRASH=1: the step SIGKILLs its own process instead;
//                                               FLUJO_HELPER_RETRY_MS: the retry backoff, fixed
//   (PATH of `worker` and `fanout` may be a postgres:// URI)
//   FlujoTestHelper fanout PATH N TASK_MS [MODE]  run a pipeline launching N background "sleeper" tasks of
//                                               TASK_MS each (heartbeat every 50 ms); prints "launched RUN_ID",
//                                               then waits for them. MODE `no-heartbeat`: no maintenance;
//                                               `spans`: every span is kept in the store, and "spans-saved"
//                                               printed once the run's own spans are; `quick`: tasks spread
//                                               over 6 s instead of 20. Prints "closed, unpersisted N" at the end
//   FlujoTestHelper filelimit PATH               save run "before"; under a file-size limit (RLIMIT_FSIZE) that the
//                                               next commit's log writes cross, try to save run "big" and print
//                                               "refused <error>" (or "committed-big"); lift the limit, save run
//                                               "after" and print "recovered"
//   FlujoTestHelper foreground PATH              run a pipeline whose second step prints "running RUN_ID" and waits an hour
//                                               (PATH may be a postgres:// URI)
//   FlujoTestHelper console PATH                 run a pipeline of two steps traced by a default ConsoleTracer (standard
//                                               output as the test redirected it); print "status S, console errors N"
//                                               on standard error, after the hook bus's log of each error
import CSQLite
import Flujo
import FlujoPostgres
import FlujoSQLite
import Foundation

/// A store on a SQLite file, or on PostgreSQL for a postgres:// URI.
func openStore(_ location: String) async throws -> any StateStore {
    if PostgresLocation.isPostgres(location) { return try await PostgresStateStore.open(try PostgresLocation(uri: location)) }
    return try SQLiteStateStore(path: location)
}

@main
struct FlujoTestHelper {
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            switch arguments.first {
            case "write" where arguments.count == 4:
                let store = try SQLiteStateStore(path: arguments[1])
                let count = Int(arguments[2]) ?? 0
                for index in 0..<count {
                    let state = WorkflowState(
                        runID: "\(arguments[3])-\(index)", pipelineName: "helper", status: index % 2 == 0 ? .completed : .failed,
                        executionTimeMs: Double(index), isBackgroundTask: index % 3 == 0)
                    try store.saveNow(state, step: StepRecord(runID: state.runID, stepIndex: 0, stepName: "s", success: true))
                    say("committed \(index)")
                }
            case "hold" where arguments.count == 3:
                _ = try SQLiteStateStore(path: arguments[1])
                var db: OpaquePointer?
                guard sqlite3_open(arguments[1], &db) == SQLITE_OK else { throw HelperError("cannot open") }
                guard sqlite3_exec(db, "BEGIN IMMEDIATE", nil, nil, nil) == SQLITE_OK else { throw HelperError("cannot begin") }
                let insert = """
                    INSERT INTO workflow_state (run_id, pipeline_id, pipeline_name, pipeline_version, status, created_at, updated_at)
                    VALUES ('\(arguments[2])', 'p', 'p', '1', 'running', 0, 0)
                    """
                guard sqlite3_exec(db, insert, nil, nil, nil) == SQLITE_OK else { throw HelperError("cannot insert") }
                say("in-transaction")
                while true { sleep(60) }
            case "claim" where arguments.count == 4 || arguments.count == 5:
                let store = try SQLiteStateStore(path: arguments[1])
                switch try await store.claimTask(taskID: arguments[2], owner: arguments[3]) {
                case .claimed:
                    say("claimed")
                    try await Task.sleep(for: .milliseconds(Int(arguments.count == 5 ? arguments[4] : "0") ?? 0))
                case let .notClaimable(status, _): say("lost \(status.rawValue)")
                case .notFound: say("not-found")
                }
            case "resume" where arguments.count >= 4:
                let store = try SQLiteStateStore(path: arguments[1])
                let runner = Runner(store: store)
                let marker = arguments[2]
                let stepMilliseconds = Int(ProcessInfo.processInfo.environment["FLUJO_HELPER_STEP_MS"] ?? "") ?? 150
                try runner.registry.register(Step<JSONValue, JSONValue>("record") { input, context in
                    say("running \(context.taskID ?? context.runID)")
                    try await Task.sleep(for: .milliseconds(stepMilliseconds))
                    // O_APPEND: several processes append to the marker at once without overwriting each other.
                    let descriptor = open(marker, O_WRONLY | O_APPEND)
                    let line = Array("ran \(context.taskID ?? context.runID) pid \(getpid())\n".utf8)
                    _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
                    close(descriptor)
                    return input
                })
                for taskID in arguments.dropFirst(3) {
                    do {
                        let outcome = try await runner.tasks.resume(taskID: taskID)
                        say(outcome.status.rawValue)
                    } catch RunnerError.alreadyBeingResumed {
                        say("busy")
                    } catch RunnerError.notResumable(_, let status) {
                        say("already-\(status.rawValue)")
                    }
                }
                await runner.close()
            case "worker" where arguments.count == 4:
                // A worker process: runs due tasks whose step is `record` until none is due.
                let store = try await openStore(arguments[1])
                let marker = arguments[2]
                let registry = StepRegistry()
                let stepMilliseconds = Int(ProcessInfo.processInfo.environment["FLUJO_HELPER_STEP_MS"] ?? "") ?? 0
                let crashes = ProcessInfo.processInfo.environment["FLUJO_HELPER_CRASH"] == "1"
                try registry.register(Step<JSONValue, JSONValue>("record") { input, context in
                    if stepMilliseconds > 0 {
                        say("running \(context.taskID ?? context.runID)")
                        try await Task.sleep(for: .milliseconds(stepMilliseconds))
                    }
                    // A poison task: the step takes its process down, as a crash or the OOM killer would.
                    if crashes { kill(getpid(), SIGKILL) }
                    let descriptor = open(marker, O_WRONLY | O_APPEND)
                    let line = Array("ran \(context.taskID ?? context.runID) pid \(getpid())\n".utf8)
                    _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
                    close(descriptor)
                    return input
                })
                var settings = FlujoSettings()
                if let delay = ProcessInfo.processInfo.environment["FLUJO_HELPER_RETRY_MS"].flatMap(Double.init) {
                    settings.backgroundTasks.retryBaseDelayMs = delay
                    settings.backgroundTasks.retryMaxDelayMs = delay
                }
                let worker = TaskWorker(operations: TaskOperations(store: store, settings: settings, registry: registry), concurrency: Int(arguments[3]) ?? 1, pollInterval: .milliseconds(20))
                let report = await worker.run(once: true)
                say("done \(report.ran)")
            case "fanout" where arguments.count == 4 || arguments.count == 5:
                let store = try await openStore(arguments[1])
                var settings = FlujoSettings()
                settings.backgroundTasks.heartbeatIntervalSeconds = 0.05
                let hooks = HookBus()
                let mode = arguments.count == 5 ? arguments[4] : ""
                let spans = mode == "spans" ? SpanPipeline(hooks: hooks, store: store) : nil
                let runner = Runner(store: store, settings: settings, hooks: hooks)
                // `no-heartbeat`: the tasks look stale to any threshold; only their owner lock says they live.
                if mode != "no-heartbeat" { runner.startMaintenance() }
                let milliseconds = Int(arguments[3]) ?? 100
                // Spread over twenty seconds (six in mode `quick`), so a kill finds some done and most in flight.
                let spread = mode == "quick" ? 6_000 : 20_000
                let sleeper = Step<Int, Int>("sleeper") { value, _ in
                    try await Task.sleep(for: .milliseconds(milliseconds + Int.random(in: 0..<spread)))
                    return value
                }
                let count = Int(arguments[2]) ?? 10
                let pipeline = Pipeline(name: "fanout", steps: (0..<count).map { _ in .background(sleeper) })
                let result = try await runner.run(pipeline, input: 7)
                say("launched \(result.runID)")
                if spans != nil {
                    while try await !store.spans(runID: result.runID).contains(where: { $0.name == "pipeline_run" && $0.parentSpanID == nil }) {
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    say("spans-saved")
                }
                let report = await runner.close(timeout: .seconds(600))
                await spans?.close()
                say("closed, unpersisted \(report.unpersisted.count)")
                if !report.isComplete { exit(1) }
            case "filelimit" where arguments.count == 2:
                let path = arguments[1]
                let store = try SQLiteStateStore(path: path)
                try store.saveNow(WorkflowState(runID: "before", pipelineName: "helper", status: .completed), step: nil)
                func size(_ file: String) -> Int {
                    ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? Int) ?? 0
                }
                // Writes past the limit fail with EFBIG instead of raising SIGXFSZ.
                signal(SIGXFSZ, SIG_IGN)
                let limit = rlim_t(max(size(path), size(path + "-wal")) + 64 * 1024)
                var capped = rlimit(rlim_cur: limit, rlim_max: rlim_t.max)
                guard setrlimit(Int32(RLIMIT_FSIZE.rawValue), &capped) == 0 else { throw HelperError("cannot set RLIMIT_FSIZE") }
                let big = "{\"blob\": \"" + String(repeating: "x", count: 1_000_000) + "\"}"
                do {
                    try store.saveNow(WorkflowState(runID: "big", pipelineName: "helper", contextJSON: big, status: .completed), step: nil)
                    say("committed-big")
                } catch {
                    say("refused \(error)")
                }
                var lifted = rlimit(rlim_cur: rlim_t.max, rlim_max: rlim_t.max)
                guard setrlimit(Int32(RLIMIT_FSIZE.rawValue), &lifted) == 0 else { throw HelperError("cannot lift RLIMIT_FSIZE") }
                try store.saveNow(WorkflowState(runID: "after", pipelineName: "helper", status: .completed), step: nil)
                say("recovered")
            case "foreground" where arguments.count == 2:
                let runner = Runner(store: try await openStore(arguments[1]))
                let first = Step<Int, Int>("first") { value, _ in value + 1 }
                let wait = Step<Int, Int>("wait") { value, context in
                    say("running \(context.runID)")
                    try await Task.sleep(for: .seconds(3600))
                    return value
                }
                _ = try await runner.run(Pipeline(name: "foreground", steps: [.run(first), .run(wait)]), input: 1)
            case "console" where arguments.count == 2:
                let store = try SQLiteStateStore(path: arguments[1])
                let hooks = HookBus()
                hooks.register(ConsoleTracer(color: "never"))
                let runner = Runner(store: store, hooks: hooks)
                let double = Step<Int, Int>("double") { value, _ in value * 2 }
                let result = try await runner.run(Pipeline(name: "console", steps: [.run(double), .run(double)]), input: 3)
                _ = await runner.close()
                let count = hooks.errorCounts.filter { $0.key.sink == "console" }.values.reduce(0, +)
                FileHandle.standardError.write(Data("status \(result.status.rawValue), console errors \(count)\n".utf8))
            default:
                throw HelperError("usage: FlujoTestHelper write|hold|claim|resume|fanout|filelimit|console ...")
            }
        } catch {
            FileHandle.standardError.write(Data("helper: \(error)\n".utf8))
            exit(1)
        }
    }
}

/// Prints a line and flushes it at once, so a parent reading the pipe sees it before a kill.
func say(_ line: String) {
    print(line)
    fflush(nil)
}

struct HelperError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

