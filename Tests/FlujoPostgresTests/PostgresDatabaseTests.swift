import Flujo
@testable import FlujoPostgres
import FlujoTestSupport
import Foundation
import Glibc
import Testing

/// The server `make test` starts (Tests/Support/postgres.sh): its state URI.
let testServerURI = ProcessInfo.processInfo.environment["FLUJO_TEST_POSTGRES_URI"]

/// A database of its own on the test server, for one test.
func freshDatabase(_ label: String) async throws -> PostgresLocation {
    let server = try PostgresLocation(uri: try #require(testServerURI))
    let admin = try await PostgresDatabase.open(server)
    let name = "flujo_\(label)_\(UInt32.random(in: 0...UInt32.max))"
    try await admin.createDatabase(name)
    await admin.close()
    var location = server
    location.database = name
    return location
}

@Suite("PostgreSQL state location")
struct PostgresLocationTests {
    @Test("a state URI is read with its timeouts and TLS mode; the password comes from the URI, PGPASSWORD or the password file, and is never printed")
    func parse() throws {
        let full = try PostgresLocation(
            uri: "postgres://ada:s%3Acret@db.internal:6543/orders?connect_timeout=2.5&statement_timeout_ms=900&sslmode=require&reconnect_window=1.5&pool_size=8",
            environment: [:])
        #expect(full.reconnectWindow == .milliseconds(1500) && full.poolSize == 8)
        #expect(full.host == "db.internal" && full.port == 6543 && full.user == "ada" && full.database == "orders")
        #expect(full.password == "s:cret")
        #expect(full.connectTimeout == .milliseconds(2500) && full.statementTimeoutMs == 900 && full.tls == .require)
        #expect(full.description == "postgres://ada@db.internal:6543/orders", "no password in what is printed")
        #expect(!"\(full)".contains("cret"))
        let defaults = try PostgresLocation(uri: "postgresql://ada@h/db", environment: [:])
        #expect(defaults.port == 5432 && defaults.password == nil && defaults.tls == .prefer && defaults.statementTimeoutMs == 30_000)
        #expect(defaults.reconnectWindow == .seconds(10) && defaults.poolSize == 4)
        #expect(try PostgresLocation(uri: "postgres://ada@h/db", environment: ["PGPASSWORD": "from-env"]).password == "from-env")
        let folder = TestSupport.temporaryDirectory("flujo-pgpass")
        let file = folder.appendingPathComponent("pgpass").path
        try "# comment\nother:5432:*:ada:wrong\nh:5432:db:ada:from-file\n*:*:*:*:any\n".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try PostgresLocation(uri: "postgres://ada@h/db", environment: ["PGPASSFILE": file]).password == "from-file")
        #expect(try PostgresLocation(uri: "postgres://bob@x:1/y", environment: ["PGPASSFILE": file]).password == "any")
        #expect(try PostgresLocation(uri: "postgres://ada:uri@h/db", environment: ["PGPASSWORD": "env"]).password == "uri", "the URI wins")
    }

    @Test("bad state URIs are refused with what is wrong and how to write it", arguments: [
        ("sqlite:///tmp/x.db", "another scheme"), ("postgres://h/db", "no user"), ("postgres://ada@/db", "no host"),
        ("postgres://ada@h", "no database"), ("postgres://ada@h:70000/db", "port"), ("postgres://ada@h/db?connect_timeout=-1", "connect_timeout"),
        ("postgres://ada@h/db?sslmode=maybe", "sslmode"), ("postgres://ada@h/db?pool=9", "unknown parameter"),
        ("postgres://ada@h/db?pool_size=0", "pool_size"), ("postgres://ada@h/db?pool_size=many", "pool_size"),
        ("postgres://ada@h/db?reconnect_window=-2", "reconnect_window"), ("postgres://ada@h/db?reconnect_window=nan", "reconnect_window"),
        ("postgres://ada:pw@h:port/db", "port \"port\" is not a number"), ("postgres://ada:p:w@h:5x/db", "port \"5x\" is not a number"),
    ])
    func invalid(uri: String, expected: String) {
        do {
            _ = try PostgresLocation(uri: uri, environment: [:])
            Issue.record("accepted \(uri)")
        } catch {
            #expect("\(error)".contains(expected), "\(error)")
            #expect("\(error)".hasPrefix("invalid PostgreSQL state URI: "))
            #expect(!"\(error)".contains("pw") && !"\(error)".contains("p:w"), "a password is never shown")
        }
    }
}

@Suite("PostgreSQL connection and schema (a real server)", .enabled(if: testServerURI != nil, "no PostgreSQL test server: run `make test`, which starts one"))
struct PostgresDatabaseTests {
    @Test("opening migrates a new database to the current schema, once, also when four processes' worth of opens race")
    func migrates() async throws {
        let location = try await freshDatabase("migrate")
        let opened = try await withThrowingTaskGroup(of: PostgresDatabase.self) { group in
            for _ in 0..<4 { group.addTask { try await PostgresDatabase.open(location) } }
            var all: [PostgresDatabase] = []
            for try await database in group { all.append(database) }
            return all
        }
        for database in opened { #expect(try await database.schemaVersion() == PostgresDatabase.currentSchemaVersion) }
        let tables = try await opened[0].tableNames()
        #expect(Set(["workflow_state", "runs", "steps", "spans", "status_counts", "stat_totals", "created_per_hour", "flujo_schema_versions"]).isSubset(of: tables))
        #expect(try await opened[0].appliedVersions() == Array(1...PostgresDatabase.currentSchemaVersion), "each version applied once")
        for database in opened { await database.close() }
        let again = try await PostgresDatabase.open(location)
        #expect(try await again.appliedVersions() == Array(1...PostgresDatabase.currentSchemaVersion))
        await again.close()
    }

    @Test("a database of schema version 1 or 3 with rows is upgraded to the current version; its counters stay equal to a recount through single and bulk changes", arguments: [1, 3])
    func upgrades(from version: Int) async throws {
        let location = try await freshDatabase("upgrade_v\(version)")
        let old = try await PostgresDatabase.open(location, migrate: true, upTo: version)
        #expect(try await old.appliedVersions() == Array(1...version))
        // Rows written under that version's counters: per row (1), per statement in one row per counter (3).
        for (index, status) in ["running", "failed", "completed", "running", "paused"].enumerated() {
            try await old.execute("""
                INSERT INTO workflow_state (run_id, pipeline_id, pipeline_name, pipeline_version, status, created_at, updated_at,
                                            is_background_task, task_id, execution_time_ms, owner)
                VALUES (\("r_bg_bg_\(index)"), 'p', 'p', '1', \(status), \(index), \(index), true, \("bg_\(index)"), 5, 'pg:1')
                """)
        }
        await old.close()
        let store = try await PostgresStateStore.open(location)
        #expect(try await store.database.appliedVersions() == Array(1...PostgresDatabase.currentSchemaVersion))
        func expectRecount(_ moment: Comment) async throws {
            let recount = try await store.database.rows("SELECT status, count(*)::bigint FROM workflow_state WHERE is_background_task GROUP BY status") {
                (try $0[0].decode(String.self), try $0[1].decode(Int.self))
            }
            let expected = Dictionary(uniqueKeysWithValues: recount.compactMap { pair in RunStatus(rawValue: pair.0).map { ($0, pair.1) } })
            let counters = try await store.statusCounters()
            #expect(counters.backgroundTasks == expected, moment)
            #expect(counters.totalRuns == (try await store.database.query("SELECT count(*)::bigint FROM workflow_state").first ?? -1), moment)
            #expect(counters.durationCount == (try await store.database.query("SELECT count(execution_time_ms)::bigint FROM workflow_state").first ?? -1), moment)
        }
        try await expectRecount("after the upgrade")
        try await store.save(WorkflowState(runID: "r_bg_bg_1", pipelineName: "p", status: .completed, executionTimeMs: 7, isBackgroundTask: true, taskID: "bg_1"))
        try await store.save(WorkflowState(runID: "r_bg_bg_new", pipelineName: "p", status: .failed, isBackgroundTask: true, taskID: "bg_new"))
        try await expectRecount("after single changes")
        // Both running tasks belong to an owner no session holds: one statement changes both.
        #expect(try await store.failOrphanedTasks(applying: TaskLifecycle.orphaned(at: .now)).count == 2)
        try await expectRecount("after a bulk change")
        #expect(try await store.prune(PrunePolicy(cutoffs: [.completed: .now.adding(seconds: 60), .failed: .now.adding(seconds: 60)], keptFailureCategories: []), limit: 100, dryRun: false) > 0)
        try await expectRecount("after retention")
        await store.close()
    }

    @Test("running runs that record no owner (rows of earlier versions) are failed once not updated for the threshold, their rows in runs too; recent and owned ones are not")
    func staleLegacyRuns() async throws {
        let store = try await PostgresStateStore.open(try await freshDatabase("staleruns"))
        for (run, updated) in [("run_legacy_old", 0), ("run_legacy_recent", Int(Timestamp.now.millisecondsSince1970))] {
            try await store.database.execute("""
                INSERT INTO workflow_state (run_id, pipeline_id, pipeline_name, pipeline_version, status, created_at, updated_at, is_background_task)
                VALUES (\(run), 'p', 'p', '1', 'running', 0, \(updated), false)
                """)
            try await store.database.execute("INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, started_at) VALUES (\(run), 'p', '1', 'running', 0)")
        }
        try await store.save(WorkflowState(runID: "run_owned_old", pipelineName: "p", status: .running, createdAt: Timestamp(millisecondsSince1970: 0), updatedAt: Timestamp(millisecondsSince1970: 0)))
        let now = Timestamp.now
        #expect(try await store.failStaleRuns(updatedBefore: now.adding(seconds: -3600), applying: TaskLifecycle.staleRun(thresholdHours: 1, at: now)) == 1)
        #expect(try await store.load(runID: "run_legacy_old")?.status == .failed)
        #expect(try await store.load(runID: "run_legacy_recent")?.status == .running)
        #expect(try await store.load(runID: "run_owned_old")?.status == .running, "its owner, this store, lives")
        #expect(try await store.database.query("SELECT count(*)::bigint FROM runs WHERE status = 'failed' AND ended_at IS NOT NULL").first == 1)
        #expect(try await store.statusCounters().runs == [.failed: 1, .running: 2])
        await store.close()
    }

    @Test("stale cleanup and recovery that only count change the rows the returning forms change, in one statement each; counters follow")
    func countedTransitions() async throws {
        let store = try await PostgresStateStore.open(try await freshDatabase("counted"))
        // Old rows of no known owner (stale), rows of an owner no session holds (orphaned), and a fresh one.
        for (index, owner) in ["NULL", "NULL", "NULL", "'pg:1'", "'pg:1'"].enumerated() {
            try await store.database.execute("""
                INSERT INTO workflow_state (run_id, pipeline_id, pipeline_name, pipeline_version, status, created_at, updated_at,
                                            is_background_task, task_id, owner)
                VALUES (\("r_bg_bg_\(index)"), 'p', 'p', '1', 'running', 0, 0, true, \("bg_\(index)"), \(unescaped: owner))
                """)
        }
        try await store.save(WorkflowState(runID: "r_bg_bg_fresh", pipelineName: "p", status: .running, isBackgroundTask: true, taskID: "bg_fresh"))
        let now = Timestamp.now
        let stale = TaskLifecycle.stale(thresholdHours: 1, at: now)
        #expect(try await store.failStaleTaskCount(heartbeatBefore: now.adding(seconds: -3600), applying: stale) == 3)
        #expect(try await store.failStaleTaskCount(heartbeatBefore: now.adding(seconds: -3600), applying: stale) == 0, "nothing is left to change")
        #expect(try await store.failOrphanedTaskCount(applying: TaskLifecycle.orphaned(at: now)) == 2)
        for index in 0..<3 {
            let task = try await store.loadTask(taskID: "bg_\(index)")
            #expect(task?.status == stale.status && task?.errorCategory == stale.errorCategory && task?.updatedAt == now)
        }
        #expect(try await store.loadTask(taskID: "bg_3")?.errorCategory == .lostWorker)
        #expect(try await store.loadTask(taskID: "bg_fresh")?.status == .running, "its owner, this store, lives")
        #expect(try await store.statusCounters().backgroundTasks.filter { $0.value != 0 } == [.failed: 5, .running: 1])
        await store.close()
    }

    @Test("each session adds to the stripe of the counters its process id picks; the stripes add up to a recount")
    func stripedCounters() async throws {
        let location = try await freshDatabase("stripes")
        var stores: [PostgresStateStore] = []
        var stripes: Set<Int> = []
        for index in 0..<3 {
            let store = try await PostgresStateStore.open(location)
            stores.append(store)
            stripes.insert((try await store.database.query("SELECT pg_backend_pid()::bigint").first ?? -1) % 16)
            for task in 0..<2 {
                let id = "bg_\(index)_\(task)"
                try await store.save(WorkflowState(runID: "r_\(id)", pipelineName: "p", status: .running, isBackgroundTask: true, taskID: id))
                try await store.save(WorkflowState(runID: "r_\(id)", pipelineName: "p", status: task == 0 ? .completed : .failed, executionTimeMs: 3, isBackgroundTask: true, taskID: id))
            }
        }
        let database = stores[0].database
        let written = Set(try await database.query("SELECT DISTINCT shard::bigint FROM status_counts WHERE count <> 0"))
        #expect(written == stripes, "each session wrote to its own stripe")
        let counters = try await stores[0].statusCounters()
        #expect(counters.backgroundTasks == [.completed: 3, .failed: 3])
        #expect(counters.totalRuns == 6 && counters.durationCount == 6 && counters.durationSumMs == 18)
        for store in stores { await store.close() }
    }

    @Test("statements run on up to pool_size connections at once, opened as work needs them; callers beyond wait their turn")
    func pool() async throws {
        var location = try await freshDatabase("pool")
        location.poolSize = 2
        let store = try await PostgresStateStore.open(location)
        #expect(store.pool.opened.count == 1, "one connection until more are needed")
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<6 {
                group.addTask {
                    let database = try await store.pool.acquire()
                    defer { store.pool.release(database) }
                    _ = try await database.query("SELECT 1 FROM pg_sleep(0.3)")
                }
            }
            try await group.waitForAll()
        }
        let took = ContinuousClock.now - started
        #expect(store.pool.opened.count == 2)
        #expect(took >= .milliseconds(850) && took < .milliseconds(1700), "three waves of two, not six in a row nor six at once: \(took)")
        await store.close()
    }

    @Test("a store's sessions name this process in pg_stat_activity: flujo, host, pid and the suffix of its owner")
    func applicationName() async throws {
        let store = try await PostgresStateStore.open(try await freshDatabase("appname"))
        let database = try await store.pool.acquire()
        let names = try await database.rows("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()") { try $0[0].decode(String.self) }
        store.pool.release(database)
        #expect(names == [String(("flujo " + Identifiers.processOwner).prefix(63))], "\(names)")
        #expect(names.first?.hasPrefix("flujo \(ProcessInfo.processInfo.hostName.prefix(20))") == true)
        #expect(names.first?.contains(":\(getpid()):") == true || (names.first?.utf8.count ?? 0) == 63)
        await store.close()
    }

    @Test("a database of a newer schema is refused with both versions named, and left as it is")
    func newerRefused() async throws {
        let location = try await freshDatabase("newer")
        let database = try await PostgresDatabase.open(location)
        try await database.recordVersionForTest(99)
        await database.close()
        do {
            _ = try await PostgresDatabase.open(location)
            Issue.record("a newer database was opened")
        } catch {
            #expect(error == .newerSchema(location: location.description, found: 99, supported: PostgresDatabase.currentSchemaVersion))
            #expect("\(error)".contains("schema version 99, newer than the \(PostgresDatabase.currentSchemaVersion)"))
        }
    }

    @Test("a store whose sessions are killed (pg_terminate_backend): its claim is released at once and another store takes the task; its late outcomes never overwrite a newer attempt")
    func terminatedBackends() async throws {
        let location = try await freshDatabase("terminate")
        let first = try await PostgresStateStore.open(location)
        let second = try await PostgresStateStore.open(location)
        try await first.save(WorkflowState(runID: "r_bg_bg_f", pipelineName: "p", status: .failed, isBackgroundTask: true, parentRunID: "r", taskID: "bg_f", errorCategory: .network))
        try await first.save(WorkflowState(runID: "r_bg_bg_r", pipelineName: "p", status: .running, isBackgroundTask: true, parentRunID: "r", taskID: "bg_r"))
        guard case .claimed = try await first.claimTask(taskID: "bg_f", owner: "first") else {
            Issue.record("the first claim succeeds")
            return
        }
        #expect(try await second.claimTask(taskID: "bg_f", owner: "second") == .notClaimable(status: .running, owner: nil))
        #expect(try await second.failOrphanedTasks(applying: TaskLifecycle.orphaned(at: .now)).isEmpty, "the owner lives: nothing is orphaned")
        #expect(try await second.failStaleTasks(heartbeatBefore: .now.adding(seconds: 3600), applying: TaskLifecycle.stale(thresholdHours: 0.0001, at: .now)).isEmpty,
                "a task with a known owner is never failed by the heartbeat rule")
        let admin = try await PostgresDatabase.open(location)
        for pid in try await first.backendPIDs() { try await admin.execute("SELECT pg_terminate_backend(\(pid))") }
        await admin.close()
        let deadline = ContinuousClock.now + .seconds(10)
        var claimed = false
        while !claimed && ContinuousClock.now < deadline {
            if case .claimed = try await second.claimTask(taskID: "bg_f", owner: "second") { claimed = true } else { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(claimed, "the killed session's claim was released")
        // The first store connects again, but its claim is gone: its outcome is refused.
        let late = await saveEventually(first, WorkflowState(
            runID: "r_bg_bg_f", pipelineName: "p", status: .completed, isBackgroundTask: true, parentRunID: "r", taskID: "bg_f", attempts: 2))
        #expect(late?.isSuperseded == true, "refused for good: \(String(describing: late))")
        #expect(try await second.loadTask(taskID: "bg_f")?.status == .failed, "the row waits for the new claimer's outcome")
        second.releaseClaim(taskID: "bg_f")
        first.releaseClaim(taskID: "bg_f")
        // Its running task: either recovered before the first store took its owner lock back
        // (then its outcome is refused), or still its own (then its outcome is written).
        let ended = try await second.failOrphanedTasks(applying: TaskLifecycle.orphaned(at: .now))
        let outcome = await saveEventually(first, WorkflowState(
            runID: "r_bg_bg_r", pipelineName: "p", status: .completed, isBackgroundTask: true, parentRunID: "r", taskID: "bg_r"))
        if ended.map(\.taskID) == ["bg_r"] {
            #expect(outcome?.isSuperseded == true)
            #expect(try await second.loadTask(taskID: "bg_r")?.errorCategory == .lostWorker)
        } else {
            #expect(ended.isEmpty)
            #expect(outcome == nil)
            #expect(try await second.loadTask(taskID: "bg_r")?.status == .completed)
        }
        #expect(try await second.failOrphanedTasks(applying: TaskLifecycle.orphaned(at: .now)).isEmpty, "the first store's owner lock is back")
        await first.close()
        await second.close()
    }

    /// Saves `state`, again while the store is connecting again; nil once saved, or the error that refused it for good.
    func saveEventually(_ store: PostgresStateStore, _ state: WorkflowState) async -> StateStoreError? {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            do {
                try await store.save(state)
                return nil
            } catch let error as StateStoreError {
                return error
            } catch {
                if ContinuousClock.now > deadline { return .storage(path: "", code: 0, message: "\(error)") }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    @Test("server down: a one-line error naming host, port and database within the connect timeout, never a hang")
    func serverDown() async throws {
        var location = try PostgresLocation(uri: try #require(testServerURI))
        location.port = try closedPort()
        location.connectTimeout = .seconds(3)
        let started = ContinuousClock.now
        do {
            _ = try await PostgresDatabase.open(location)
            Issue.record("connected to a closed port")
        } catch {
            #expect("\(error)".hasPrefix("cannot connect to postgres://\(location.user)@\(location.host):\(location.port)/\(location.database)"), "\(error)")
            #expect(!"\(error)".contains("\n"))
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        // An address that never answers: the connect timeout bounds the wait.
        var silent = location
        silent.host = "10.255.255.1"
        silent.connectTimeout = .milliseconds(700)
        let waited = ContinuousClock.now
        do {
            _ = try await PostgresDatabase.open(silent)
            Issue.record("connected to a silent address")
        } catch {
            #expect("\(error)".contains("10.255.255.1"), "\(error)")
        }
        #expect(ContinuousClock.now - waited < .seconds(3), "bounded by connect_timeout")
    }

    @Test("a wrong password and a missing database are named, and the password is never printed")
    func authenticationAndMissingDatabase() async throws {
        var wrong = try PostgresLocation(uri: try #require(testServerURI))
        wrong.password = "not-the-password-4711"
        do {
            _ = try await PostgresDatabase.open(wrong)
            Issue.record("a wrong password was accepted")
        } catch {
            #expect(error == .authenticationFailed(location: wrong.description, user: wrong.user), "\(error)")
            #expect(!"\(error)".contains("4711"))
        }
        var missing = try PostgresLocation(uri: try #require(testServerURI))
        missing.database = "no_such_database_here"
        do {
            _ = try await PostgresDatabase.open(missing)
            Issue.record("a missing database was opened")
        } catch {
            #expect(error == .databaseMissing(location: missing.description, database: "no_such_database_here"), "\(error)")
            #expect("\(error)".contains("createdb no_such_database_here"))
        }
    }
}

/// A loopback port nothing listens on.
func closedPort() throws -> Int {
    let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(socket) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}
