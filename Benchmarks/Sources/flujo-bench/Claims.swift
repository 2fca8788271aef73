import Flujo
import FlujoPostgres
import Foundation
import Logging
import PostgresNIO
import Synchronization

extension Workloads {
    /// How W12's claimers take tasks.
    enum ClaimStrategy: String, CaseIterable {
        /// The store's claims: session advisory locks (`claimNextDueTask`), the
        /// outcome saved under the claim, then the claim released.
        case advisory
        /// `FOR UPDATE SKIP LOCKED`: the claim written to the row (running,
        /// under an owner), the row read, then the same outcome write.
        case skipLocked = "skip-locked"
    }

    /// W12 (PostgreSQL, `--store`): `processes` processes of `claimers`
    /// claimers each take `tasks` due tasks and complete each, once with each
    /// strategy, on a database of their own. Claims per second under contention.
    static func w12(tasks: Int, processes: Int = 4, claimers: Int = 16) async throws -> WorkloadResult {
        guard storeURI != nil else { throw PostgresStoreError.invalidURI("W12 compares PostgreSQL claim strategies: give --store postgres://...") }
        var result = WorkloadResult(workload: "W12", n: tasks, samples: [], verified: true,
                                    unit: "seconds for \(processes) processes x \(claimers) claimers to claim and complete \(tasks) due tasks (advisory locks)")
        for strategy in ClaimStrategy.allCases {
            let location = try await newLocation(path: "", label: "w12")
            let store = try await PostgresStateStore.open(try PostgresLocation(uri: location))
            var batch: [StateWrite] = []
            for index in 0..<tasks {
                batch.append(StateWrite(
                    WorkflowState(runID: "r_bg_bg_\(index)", pipelineName: "w12", status: .failed, isBackgroundTask: true, parentRunID: "r",
                                  taskID: "bg_\(index)", errorCategory: .network, attempts: 1, stepName: "tiny"),
                    nextAttemptAt: Timestamp(millisecondsSince1970: 1_000 + Int64(index))))
                if batch.count == 500 || index == tasks - 1 {
                    try await store.save(batch)
                    batch.removeAll()
                }
            }
            let children = try (0..<processes).map { _ in
                try childProcess(["--workload", "W12-child-\(strategy.rawValue)", "--path", location, "--tasks", String(claimers)])
            }
            let pipes = children.map { child in
                let pipe = Pipe()
                child.standardOutput = pipe
                return pipe
            }
            let start = ContinuousClock.now
            for child in children { try child.run() }
            var claimed = 0
            for (child, pipe) in zip(children, pipes) {
                let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                child.waitUntilExit()
                claimed += output.split(separator: "\n").compactMap { $0.hasPrefix("claimed ") ? Int($0.dropFirst(8)) : nil }.reduce(0, +)
            }
            let seconds = elapsed(since: start)
            let completed = try await store.statusCounters().backgroundTasks[.completed] ?? 0
            await store.close()
            result.verified = result.verified && claimed == tasks && completed == tasks
            if strategy == .advisory { result.samples = [seconds] }
            result.extra["\(strategy.rawValue)_claims_per_second"] = Double(tasks) / seconds
        }
        return result
    }

    /// A W12 claimer process: `claimers` loops take due tasks until none is left; prints "claimed N".
    static func w12Child(location: String, strategy: ClaimStrategy, claimers: Int) async throws {
        let store = try await PostgresStateStore.open(try PostgresLocation(uri: location))
        let claimed: Int
        switch strategy {
        case .advisory:
            claimed = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<claimers {
                    group.addTask {
                        var count = 0
                        while let task = try await store.claimNextDueTask(owner: "w12", now: .now), let taskID = task.taskID {
                            var done = task
                            done.status = .completed
                            done.updatedAt = .now
                            try await store.save(done)
                            await store.endClaim(taskID: taskID)
                            count += 1
                        }
                        return count
                    }
                }
                return try await group.reduce(0, +)
            }
        case .skipLocked:
            let place = try PostgresLocation(uri: location)
            let configuration = PostgresConnection.Configuration(
                host: place.host, port: place.port, username: place.user, password: place.password, database: place.database, tls: .disable)
            let logger = Logger(label: "w12")
            let claims = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
            let owner = "w12:\(getpid())"
            claimed = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<claimers {
                    group.addTask {
                        var count = 0
                        while true {
                            let now = Timestamp.now.millisecondsSince1970
                            var runID: String?
                            for try await id in try await claims.query("""
                                UPDATE workflow_state SET status = 'running', owner = \(owner), updated_at = \(now)
                                WHERE run_id = (SELECT run_id FROM workflow_state
                                                WHERE status = 'failed' AND next_attempt_at IS NOT NULL AND next_attempt_at <= \(now)
                                                ORDER BY next_attempt_at, run_id LIMIT 1 FOR UPDATE SKIP LOCKED)
                                RETURNING run_id
                                """, logger: logger).decode(String.self) { runID = id }
                            guard let runID, var done = try await store.load(runID: runID) else { return count }
                            // The same outcome write as the store's claims make.
                            done.status = .completed
                            done.updatedAt = .now
                            try await store.save(done)
                            count += 1
                        }
                    }
                }
                return try await group.reduce(0, +)
            }
            try await claims.close()
        }
        print("claimed \(claimed)")
        await store.close()
    }
}
