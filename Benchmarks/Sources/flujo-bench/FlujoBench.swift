import ArgumentParser
import Foundation

/// Runs Flujo's end-to-end workloads and prints their figures.
@main
struct FlujoBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flujo-bench",
        abstract: "Flujo's end-to-end workloads: W1 fan-out, W2 resume, W3 stale cleanup, W4 scrape, W5 hook overhead, W6 OTLP, W7 recovery after SIGKILL, W8 sustained launches, W10 metrics render, W11 OTLP metrics push.")

    @Option(help: "One workload: W1, W1-memory, W2, W2+10k, W3, W4, W4-1M, W5, W6, W6-gzip, W7, W8, W8-memory, W8-untracked, W10, W10-1M, W11, W11-gzip, W9 or W12 (W8-memory, W8-untracked, W9 and W12 run only when named; W12 compares PostgreSQL claim strategies and needs --store). Without it, every workload runs, each in its own process.")
    var workload: String?

    @Flag(help: "Print one JSON object as the last line.")
    var json = false

    @Option(help: "Repetitions (renders for W4).")
    var repetitions: Int?

    @Option(help: .hidden) var path: String?
    @Option(help: "W1, W2, W5, W7 and W8 on a PostgreSQL server: a postgres:// URI (each workload creates a database of its own there; W7 and W8 use 4 processes).") var store: String?
    @Option(help: .hidden) var tasks: Int?
    @Option(name: .customLong("keep-seconds"), help: "W9: how long completed tasks are kept (default 60).") var keepSeconds: Double?

    static let all = ["W1", "W1-memory", "W2", "W2+10k", "W3", "W4", "W4-1M", "W5", "W6", "W6-gzip", "W7", "W8", "W10", "W10-1M", "W11", "W11-gzip"]

    func run() async throws {
        Workloads.storeURI = store
        guard let workload else { return try await runAll() }
        let result: WorkloadResult
        switch workload {
        case "W1": result = try await Workloads.w1(repetitions: repetitions ?? 15)
        case "W1-memory": result = try await Workloads.w1(repetitions: repetitions ?? 15, inMemory: true)
        case "W2": result = try await Workloads.w2(repetitions: repetitions ?? 5, otherFailed: 0)
        case "W2+10k": result = try await Workloads.w2(repetitions: repetitions ?? 5, otherFailed: 10_000)
        case "W3": result = try await Workloads.w3(repetitions: repetitions ?? 5)
        case "W4": result = try await Workloads.w4(tasks: 10_000, renders: repetitions ?? 1000)
        case "W4-1M": result = try await Workloads.w4(tasks: 1_000_000, renders: repetitions ?? 1000)
        case "W5": result = try await Workloads.w5(repetitions: repetitions ?? 9)
        case "W10": result = try await Workloads.w10(tasks: 10_000, renders: repetitions ?? 1000)
        case "W10-1M": result = try await Workloads.w10(tasks: 1_000_000, renders: repetitions ?? 1000)
        case "W11": result = try await Workloads.w11(pushes: repetitions ?? 200, gzip: false)
        case "W11-gzip": result = try await Workloads.w11(pushes: repetitions ?? 200, gzip: true)
        case "W6": result = try await Workloads.w6(gzip: false, batches: 200, repetitions: repetitions ?? 3)
        case "W6-gzip": result = try await Workloads.w6(gzip: true, batches: 200, repetitions: repetitions ?? 3)
        case "W7": result = try await Workloads.w7(tasks: tasks ?? 10_000, repetitions: repetitions ?? 3)
        case "W8": result = try await Workloads.w8(runs: 64, tasksPerRun: tasks ?? 50, seconds: 10)
        case "W8-memory": result = try await Workloads.w8(runs: 64, tasksPerRun: tasks ?? 50, seconds: 10, variant: .memory)
        case "W8-untracked": result = try await Workloads.w8(runs: 64, tasksPerRun: tasks ?? 50, seconds: 10, variant: .untracked)
        case "W9": result = try await Workloads.w9(total: tasks ?? 1_000_000, keepSeconds: keepSeconds ?? 60)
        case "W9-prune": result = try await Workloads.w9Prune(tasks: tasks ?? 200_000, fresh: 200_000)
        case "W7-child":
            try await Workloads.w7Child(location: path ?? "w7.db", tasks: tasks ?? 10_000)
            return
        case "W7-worker":
            try await Workloads.w7Worker(location: path ?? "w7.db", concurrency: tasks ?? 16)
            return
        case "W12": result = try await Workloads.w12(tasks: tasks ?? 10_000)
        case "W12-child-advisory", "W12-child-skip-locked":
            let strategy = Workloads.ClaimStrategy(rawValue: String(workload.dropFirst("W12-child-".count))) ?? .advisory
            try await Workloads.w12Child(location: path ?? "", strategy: strategy, claimers: tasks ?? 16)
            return
        case "W8-child":
            try await Workloads.w8Child(location: path ?? "w8.db", runs: repetitions ?? 16, tasksPerRun: tasks ?? 50, seconds: 10)
            return
        default: throw ValidationError("unknown workload \(workload); choose one of \(Self.all.joined(separator: ", "))")
        }
        if !json {
            print("\(result.workload): median \(format(result.median)), min \(format(result.min)), max \(format(result.max)) (\(result.unit)), verified \(result.verified)")
        }
        print(result.json)
        if !result.verified { throw ExitCode(1) }
    }

    /// Runs each workload in its own process (so peak memory is its own) and prints a table.
    private func runAll() async throws {
        var rows: [[String]] = []
        for name in Self.all {
            try? FileHandle.standardError.write(contentsOf: Data("running \(name)...\n".utf8))
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            process.arguments = ["--workload", name, "--json"]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            let last = String(decoding: data, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? "{}"
            let object = (try? JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any]) ?? [:]
            func number(_ key: String) -> Double { (object[key] as? Double) ?? 0 }
            var note = ""
            if let rate = object["spans_per_second"] as? Double { note += String(format: "%.0f spans/s, %.0f B/span", rate, number("bytes_per_span")) }
            if let perSink = object["ns_per_sink_call"] as? Double { note += String(format: "%.0f ns per sink call", perSink) }
            if let fresh = object["median_s_fresh_file"] as? Double, fresh > 0 {
                note += (note.isEmpty ? "" : ", ") + "fresh file " + format(fresh)
            }
            if let rate = object["tasks_per_second"] as? Double {
                note += (note.isEmpty ? "" : ", ") + String(format: "%.0f durable tasks/s", rate) + ", launch p99 " + format(number("launch_p99_s"))
            }
            if let worker = object["worker_seconds_median"] as? Double { note += (note.isEmpty ? "" : ", ") + "worker (64 at once) completed them in " + format(worker) }
            if let peak = object["peak_rss_mb"] as? Double { note += (note.isEmpty ? "" : ", ") + String(format: "peak %.0f MiB", peak) }
            rows.append([name, String(object["n"] as? Int ?? 0), format(number("median_s")), format(number("min_s")), format(number("max_s")),
                         String(object["verified"] as? Bool ?? false), (object["unit"] as? String ?? ""), note])
        }
        let header = ["workload", "n", "median", "min", "max", "verified", "unit", "notes"]
        var widths = header.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        for row in [header] + rows {
            print(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
    }
}

/// Seconds for people: s, ms or µs.
func format(_ seconds: Double) -> String {
    if seconds >= 1 { return String(format: "%.2f s", seconds) }
    if seconds >= 0.001 { return String(format: "%.2f ms", seconds * 1e3) }
    return String(format: "%.2f µs", seconds * 1e6)
}
