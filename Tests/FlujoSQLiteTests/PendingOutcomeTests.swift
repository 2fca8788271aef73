import Flujo
import FlujoTestSupport
import Foundation
import Synchronization
import Testing

@testable import FlujoSQLite

/// Opens once every task may finish.
final class Release: Sendable {
    private let open = Atomic<Bool>(false)
    func wait() async { while !open.load(ordering: .acquiring) { try? await Task.sleep(for: .milliseconds(2)) } }
    func go() { open.store(true, ordering: .releasing) }
}

@Suite("Outcomes that cannot be written")
struct PendingOutcomeTests {
    static func full(_ store: SQLiteStateStore, _ path: String) throws {
        try store.setMaxPageCountForTesting(try pageCount(path))
    }

    @Test("kept and written again once the store accepts writes, before close; close then reports nothing")
    func writtenWhenSpaceReturns() async throws {
        let (store, path) = try makeStore()
        let release = Release()
        let logs = RecordingLogs()
        let runner = Runner(store: store, logger: logs.logger)
        let slow = Step<Int, String>("slow") { value, _ in await release.wait(); return String(repeating: "x", count: 3000) + "\(value)" }
        let result = try await runner.run(Pipeline(name: "p", steps: Array(repeating: .background(slow), count: 20)), input: 1)
        try Self.full(store, path)
        release.go()
        try await Task.sleep(for: .milliseconds(300))
        let stuck = try await store.listBackgroundTasks(BackgroundTaskQuery(statuses: [.running]))
        #expect(stuck.count == 20, "nothing could be written while the disk is full")
        try store.setMaxPageCountForTesting(1_000_000)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline, try await store.statusCounters().backgroundTasks[.completed, default: 0] < 20 {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await store.statusCounters().backgroundTasks[.completed] == 20, "written again in the background")
        let report = await runner.close()
        #expect(report.isComplete)
        // Twenty refused outcomes are one warning, and their writing again one notice.
        let refused = logs.messages(at: .warning).filter { $0.hasPrefix("could not persist the outcome of task") }
        #expect(refused.count == 1, "\(logs.messages(at: .warning))")
        #expect(refused.first?.contains("It is kept and written again with backoff until close()") == true)
        #expect(logs.messages(at: .notice) == ["task outcomes are written again, after 20 refused write(s) (19 of them not logged)"], "\(logs.messages(at: .notice))")
        #expect(result.backgroundTaskIDs.count == 20)
    }

    @Test("still unwritten at close: reported, and the rows stay running under this process")
    func reportedAtClose() async throws {
        let (store, path) = try makeStore()
        let release = Release()
        let logs = RecordingLogs()
        let runner = Runner(store: store, logger: logs.logger)
        let slow = Step<Int, String>("slow") { value, _ in await release.wait(); return String(repeating: "y", count: 3000) }
        _ = try await runner.run(Pipeline(name: "p", steps: Array(repeating: .background(slow), count: 60)), input: 1)
        try Self.full(store, path)
        release.go()
        let report = await runner.close(timeout: .seconds(5))
        #expect(report.unpersisted.count == 60)
        #expect(report.unpersisted.allSatisfy { $0.status == .completed && $0.error.contains("full") })
        #expect(try await store.listBackgroundTasks(BackgroundTaskQuery(statuses: [.running])).count == 60)
        // The log names the first 50 and counts the rest; the report names all 60.
        let errors = logs.messages(at: .error)
        #expect(errors.filter { $0.hasPrefix("could not persist the outcome of task bg_") }.count == 50, "\(errors.count) lines")
        #expect(errors.last == "... and 10 more task outcome(s) not persisted (close()'s report lists every one)", "\(errors.last ?? "")")
        #expect(Set(report.unpersisted.map(\.taskID)).count == 60)
        #expect(try await TaskOperations(store: store).recoverOrphanedTasks() == 0, "this process still lives: they are not orphans yet")
    }
}

extension PendingOutcomeTests {
    @Test("tasks still running at close whose cancellation cannot be written: the first 50 are named, the rest counted")
    func notMarkedCancelledAtClose() async throws {
        let (store, _) = try makeStore()
        let release = Gate()
        let logs = RecordingLogs()
        let runner = Runner(store: store, logger: logs.logger)
        // Steps that do not stop when cancelled: they are still running when close() gives up on them.
        let stubborn = Step<Int, Int>("stubborn") { value, _ in await release.wait(); return value }
        _ = try await runner.run(Pipeline(name: "p", steps: Array(repeating: .background(stubborn), count: 60)), input: 1)
        store.close()
        _ = await runner.close(timeout: .milliseconds(100))
        release.open()
        let errors = logs.messages(at: .error)
        let named = errors.filter { $0.hasPrefix("could not mark task run ") }
        #expect(named.count == 50, "\(errors.count) lines: \(errors.prefix(3))")
        #expect(named.allSatisfy { $0.contains("recovery fails it as a lost worker once the process ends") })
        #expect(errors.contains("... and 10 more task run(s) not marked cancelled"), "\(errors.suffix(3))")
    }
}

@Suite("Recovery policy")
struct RecoveryPolicyTests {
    @Test("recover_lost_tasks: retry makes a lost task due at once for workers; fail leaves it failed until someone resumes it", arguments: ["retry", "fail"])
    func policy(setting: String) async throws {
        let (store, path) = try makeStore()
        try await store.save(fullTask(runID: "r_bg_bg_lost", taskID: "bg_lost", status: .running))
        // The process that ran it has ended: its owner lock is free.
        try rawSQL(path, "UPDATE workflow_state SET owner = 'gone:1:dead' WHERE task_id = 'bg_lost'")
        var settings = FlujoSettings()
        settings.backgroundTasks.recoverLostTasks = setting
        #expect(try await TaskOperations(store: store, settings: settings).recoverOrphanedTasks() == 1)
        #expect(try await store.loadTask(taskID: "bg_lost")?.errorCategory == .lostWorker)
        let due = try await store.claimNextDueTask(owner: "w", now: .now)
        #expect((due != nil) == (setting == "retry"))
        if let due { store.releaseClaim(taskID: due.taskID!) }
    }
}

@Suite("Spans that cannot be kept")
struct SpanWriteFailureTests {
    @Test("a store that refuses span writes: each span counted as write_failed, one warning for the streak and one when writes succeed again")
    func refusedSpanWrites() async throws {
        let (store, path) = try makeStore()
        let logs = RecordingLogs()
        let persister = SpanPersister(store: store, logger: logs.logger)
        func span(_ index: Int, run: String) -> TraceSpan {
            // 4 KB of attributes each: a span needs pages the full file does not have.
            TraceSpan(
                traceID: Array(repeating: run == "r1" ? 1 : 2, count: 16), spanID: [0, 0, 0, 0, 0, 0, UInt8(index >> 8), UInt8(index & 0xFF)],
                parentSpanID: Array(repeating: 9, count: 8), runID: run, name: "step", startUnixNano: 1, endUnixNano: 2,
                attributes: [("payload", .string(String(repeating: "x", count: 4096)))], events: [], status: .ok, statusMessage: nil, isBackground: false)
        }
        try PendingOutcomeTests.full(store, path)
        for index in 0..<30 {
            persister.onEnd(span(index, run: "r1"))
            try await Task.sleep(for: .milliseconds(2))
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, persister.droppedCount < 30 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(persister.droppedCount == 30, "every span the store refused is counted")
        #expect(persister.counterSamples().contains { $0.name == "flujo_stored_spans_dropped_total" && $0.labels == ["reason": "write_failed"] && $0.value == 30 })
        #expect(persister.counterSamples().filter { $0.labels["reason"] != "write_failed" }.allSatisfy { $0.value == 0 })
        let refused = logs.messages(at: .warning).filter { $0.hasPrefix("could not keep") }
        #expect(refused.count == 1, "one warning for the whole streak: \(logs.messages(at: .warning))")
        #expect(refused.first?.contains("flujo_stored_spans_dropped_total{reason=\"write_failed\"}") == true)
        // Space comes back: the next spans are kept, and the log says so once.
        try store.setMaxPageCountForTesting(1_000_000)
        persister.onEnd(span(100, run: "r2"))
        await persister.close()
        #expect(try await store.spans(runID: "r2").count == 1)
        #expect(persister.droppedCount == 30)
        #expect(logs.messages(at: .warning).filter { $0 == "spans are kept in the store again" }.count == 1)
    }
}

@Suite("Repeated failures in the log")
struct FailureStreakTests {
    @Test("a worker whose database stays locked logs one warning for the streak, not one per loop and poll, and one notice when it runs tasks again")
    func workerStreak() async throws {
        let (store, path) = try makeStore(.init(busyTimeoutMs: 20))
        var task = fullTask(status: .failed)
        task.attempts = 1
        try await store.save([StateWrite(task, nextAttemptAt: Timestamp(millisecondsSince1970: 1_000))])
        // Another connection holds the write lock: every claim fails with `locked`.
        let locker = try SQLiteConnection(path: path, readOnly: false, create: false, busyTimeoutMs: 1000)
        try locker.execute("BEGIN EXCLUSIVE")
        let registry = StepRegistry()
        try registry.register(Step<JSONValue, Int>("send_receipt") { _, _ in 1 })
        let logs = RecordingLogs()
        let worker = TaskWorker(
            operations: TaskOperations(store: store, registry: registry), concurrency: 4, pollInterval: .milliseconds(20), logger: logs.logger)
        let ran = Atomic<Int>(0)
        let working = Task { await worker.run { _ in ran.add(1, ordering: .relaxed) } }
        try await Task.sleep(for: .milliseconds(500))
        let warnings = logs.messages(at: .warning)
        #expect(warnings.count == 1, "one line for every loop's failed polls: \(warnings)")
        #expect(warnings.first?.hasPrefix("worker could not run a task: ") == true && warnings.first?.contains("at most one line every") == true, "\(warnings)")
        try locker.execute("COMMIT")
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, ran.load(ordering: .relaxed) == 0 { try await Task.sleep(for: .milliseconds(10)) }
        working.cancel()
        _ = await working.value
        #expect(ran.load(ordering: .relaxed) == 1, "the task ran once the lock was gone")
        // Loops that found the task claimed by another loop succeeded meanwhile: the streak
        // ended (one notice), and the failures after it, within the interval, are not logged.
        let notices = logs.messages(at: .notice)
        #expect(notices.count == 1 && notices.first?.hasPrefix("worker runs tasks again, after ") == true, "\(notices)")
        #expect(logs.messages(at: .warning).count == 1)
        locker.close()
    }
}

@Suite("Log streaks")
struct LogStreakTests {
    @Test("at most one failure is reported per interval, with the count of those not reported; a success ends a reported streak once; failures and successes taking turns do not flood")
    func streak() {
        let streak = LogStreak(interval: .seconds(60))
        let start = ContinuousClock.now
        #expect(streak.success() == nil, "no streak, nothing to end")
        #expect(streak.failure(at: start) == .first)
        for second in 1...59 { #expect(streak.failure(at: start + .seconds(second)) == nil) }
        #expect(streak.failure(at: start + .seconds(60)) == .again(unreported: 59))
        #expect(streak.failure(at: start + .seconds(61)) == nil)
        #expect(streak.success().map { [$0.failures, $0.unreported] } == [62, 60])
        #expect(streak.success() == nil, "ended once")
        // Taking turns within the interval: nothing is reported, neither failures nor ends.
        for second in 62...100 {
            #expect(streak.failure(at: start + .seconds(second)) == nil)
            #expect(streak.success() == nil)
        }
        #expect(streak.failure(at: start + .seconds(120)) == .again(unreported: 40), "one line a interval, with the failures it did not report")
        #expect(streak.success().map { [$0.failures, $0.unreported] } == [1, 0])
        let later = LogStreak(interval: .seconds(60))
        #expect(later.failure(at: start) == .first)
        _ = later.success()
        #expect(later.failure(at: start + .seconds(90)) == .first, "a streak after a quiet interval is reported as new")
        #expect(LogStreak.Report.again(unreported: 3).tail(unreported: "errors") == " (and 3 more errors since the last line)")
        #expect(LogStreak.Report.first.tail(unreported: "errors") == "")
    }
}
