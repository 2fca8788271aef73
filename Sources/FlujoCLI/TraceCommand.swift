import ArgumentParser
import Flujo
import Foundation

/// `flujo trace RUN_ID`: the span tree of a run, from the spans kept in the store.
public struct TraceCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "trace", abstract: "Show the span tree of a run, background spans marked.")
    @OptionGroup var common: CommonOptions
    @Argument(help: "The run id (run_...), or a background task's run id.") var runID: String

    public init() {}

    public func run() async throws {
        let loaded = try common.loadSettings()
        let store = try await common.openStateStore(loaded.settings, readOnly: true)
        let spans = try await store.spans(runID: runID)
        guard !spans.isEmpty else {
            if try await store.load(runID: runID) != nil {
                throw CLIError("run '\(runID)' has no spans in \(loaded.settings.state.shownLocation) (it ran with span persistence off, or is still running).")
            }
            throw CLIError("no run '\(runID)' in \(loaded.settings.state.shownLocation). List runs with `flujo tasks list` or `flujo stats`.")
        }
        Output.line("trace \(spans[0].traceID)")
        for line in TraceCommand.render(spans) { Output.line(TerminalText.escaped(line)) }
    }

    /// The tree as lines: name, [bg], duration, status and the error message.
    static func render(_ spans: [SpanRecord]) -> [String] {
        let ids = Set(spans.map(\.spanID))
        var children: [String: [SpanRecord]] = [:]
        var roots: [SpanRecord] = []
        for span in spans {
            if let parent = span.parentSpanID, ids.contains(parent) { children[parent, default: []].append(span) } else { roots.append(span) }
        }
        var lines: [String] = []
        func walk(_ span: SpanRecord, prefix: String, isLast: Bool, isRoot: Bool) {
            let branch = isRoot ? "" : (isLast ? "└─ " : "├─ ")
            let duration = Double(span.endUnixNano &- span.startUnixNano) / 1e9
            var text = "\(prefix)\(branch)\(span.name)\(span.isBackground ? " [bg]" : "")  \(ConsoleTracer.duration(duration))  \(span.attributes["flujo.status"] == "paused" ? "paused" : span.status)"
            if span.name == "pipeline_run" { text += "  \(span.runID)" }
            if let task = span.attributes["flujo.task_id"], span.name != "pipeline_run" { text += "  \(task)" }
            if let message = span.statusMessage, span.status == "error" { text += "  — \(cut(message, 80))" }
            lines.append(text)
            let next = children[span.spanID] ?? []
            for (index, child) in next.enumerated() {
                walk(child, prefix: prefix + (isRoot ? "" : (isLast ? "   " : "│  ")), isLast: index == next.count - 1, isRoot: false)
            }
        }
        for root in roots { walk(root, prefix: "", isLast: true, isRoot: true) }
        return lines
    }
}
