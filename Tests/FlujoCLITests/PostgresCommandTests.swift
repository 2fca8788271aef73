import Flujo
import FlujoPostgres
import FlujoTestSupport
import Foundation
import Testing

/// The `flujo` command on a PostgreSQL state database of the server `make test` starts.
@Suite("flujo on PostgreSQL", .enabled(if: ProcessInfo.processInfo.environment["FLUJO_TEST_POSTGRES_URI"] != nil, "no PostgreSQL test server: run `make test`, which starts one"))
struct PostgresCommandTests {
    @Test("demo, listings, retry, stats and metrics work on a postgres:// URI unchanged; the URI's password is never printed")
    func commands() async throws {
        let server = try #require(ProcessInfo.processInfo.environment["FLUJO_TEST_POSTGRES_URI"])
        let location = try PostgresLocation(uri: server)
        let name = "flujo_cli_\(UInt32.random(in: 0...UInt32.max))"
        try await PostgresDatabase.createDatabase(name, on: location)
        let uri = server.replacingOccurrences(of: "/\(location.database)", with: "/\(name)")
        let secret = try #require(location.password)
        let cli = CLI()
        let unset = try await cli.run(["tasks", "list", "--db", uri])
        #expect(unset.status != 0 && unset.stderr.contains("no Flujo state here yet"), "read-only commands create nothing: \(unset.stderr)")
        let demo = try await cli.run(["demo", "--db", uri, "--seed", "3", "--background", "6"])
        #expect(demo.status == 0, "\(demo.stderr)")
        #expect(demo.stdout.contains("postgres://\(location.user)@\(location.host):\(location.port)/\(name)"))
        let runID = try #require(demo.stdout.split(separator: "\n").first { $0.hasPrefix("run ") }.map { String($0.split(separator: " ", omittingEmptySubsequences: true)[1]) })
        let tasks = try #require(try await cli.json(["tasks", "list", "--parent", runID, "--db", uri, "--json"]) as? [[String: Any]])
        #expect(tasks.count == 9)
        let failed = tasks.filter { $0["status"] as? String == "failed" }
        #expect(!failed.isEmpty)
        let retry = try await cli.run(["tasks", "retry", "--parent", runID, "--db", uri])
        #expect(retry.status == 0 && retry.stdout.contains("completed"), "\(retry.stdout) \(retry.stderr)")
        let stats = try await cli.run(["stats", "--db", uri])
        #expect(stats.status == 0 && stats.stdout.contains("completed"), "\(stats.stderr)")
        let metrics = try await cli.run(["metrics", "--db", uri])
        #expect(metrics.stdout.contains("flujo_runs_total 10"), "\(metrics.stdout)")
        let trace = try await cli.run(["trace", runID, "--db", uri])
        #expect(trace.status == 0 && trace.stdout.contains("pipeline_run"), "\(trace.stderr)")
        let check = try await cli.run(["db", "check", "--db", uri])
        #expect(check.status == 2 && check.stderr.contains("works on SQLite files"))
        for output in [unset, demo, retry, stats, metrics, trace, check] {
            #expect(!output.stdout.contains(secret) && !output.stderr.contains(secret), "the password was printed")
        }
        // The password from PGPASSWORD instead of the URI.
        let bare = uri.replacingOccurrences(of: ":\(secret)@", with: "@")
        let listed = try await cli.run(["tasks", "list", "--db", bare], environment: ["PGPASSWORD": secret])
        #expect(listed.status == 0 && listed.stdout.contains("send_receipt"), "\(listed.stderr)")
    }

    @Test("SIGTERM while the server is gone: the worker stops quietly, with no failure logged for the call it cancelled", .timeLimit(.minutes(2)))
    func workerStopsWhileServerIsGone() async throws {
        // A server of its own, stopped under the worker: the other tests' server stays up.
        let server = try await OwnPostgresServer.start("worker")
        defer { server.stop() }
        let uri = server.uri
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OTEL_") && !$0.key.hasPrefix("FLUJO_") }
        environment["NO_COLOR"] = "1"
        let worker = try RunningProcess(
            TestSupport.executable("flujo"), ["worker", "--poll-ms", "200", "--db", uri], environment: environment, capturingErrors: true)
        #expect(await worker.waitForLine { $0.hasPrefix("worker running: 1 at once") })
        server.stop()
        // Long enough for the worker's next calls to find the server gone.
        try await Task.sleep(for: .seconds(3))
        worker.send(SIGTERM)
        await worker.waitForExit()
        #expect(worker.terminationStatus == 143)
        let lines = worker.linesSoFar
        #expect(lines.contains { $0.hasPrefix("terminated: stopping gracefully") }, "\(lines)")
        #expect(!lines.contains { $0.contains("CancellationError") }, "a stop is not a failure: \(lines)")
    }
}
