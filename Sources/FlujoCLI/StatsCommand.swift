import ArgumentParser
import Flujo
import Foundation

/// `flujo stats`: runs and background tasks by status, recent runs, mean duration.
public struct StatsCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "stats", abstract: "Show runs and background tasks by status.")
    @OptionGroup var common: CommonOptions
    @OptionGroup var output: JSONOption

    public init() {}

    public func run() async throws {
        let loaded = try common.loadSettings()
        let store = try await common.openStateStore(loaded.settings, readOnly: true)
        let stats = try await store.workflowStats(now: .now)
        func counts(_ values: [RunStatus: Int]) -> [String: Int] {
            Dictionary(uniqueKeysWithValues: RunStatus.allCases.map { ($0.rawValue, values[$0] ?? 0) })
        }
        if output.json {
            Output.line(jsonText([
                "total_workflows": stats.totalWorkflows,
                "status_counts": counts(stats.statusCounts),
                "background_status_counts": counts(stats.backgroundStatusCounts),
                "recent_workflows_24h": stats.recentWorkflows24h,
                "average_execution_time_ms": stats.averageExecutionTimeMs,
            ] as [String: Any]))
            return
        }
        Output.line("state: \(loaded.settings.state.shownLocation)")
        Output.line("runs (background tasks included): \(stats.totalWorkflows), \(stats.recentWorkflows24h) in the last 24 h, mean duration \(String(format: "%.1f", stats.averageExecutionTimeMs)) ms")
        Output.line()
        Output.line(table(["status", "runs", "background tasks"], RunStatus.allCases.map {
            [$0.rawValue, String(stats.statusCounts[$0] ?? 0), String(stats.backgroundStatusCounts[$0] ?? 0)]
        }))
    }
}
