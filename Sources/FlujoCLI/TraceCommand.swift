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

    /// How deep the tree is drawn; deeper spans are drawn at this depth, each saying its own.
    static let maxDrawnDepth = 32

    /// The tree as lines: name, [bg], duration, status and the error message.
    /// Drawn without recursion and at most `maxDrawnDepth` deep, so no stored
    /// tree (however deep an edited file makes it) can exhaust the stack or
    /// widen the lines without bound; spans whose parents form a loop, which no
    /// root reaches, are listed after the tree.
    static func render(_ spans: [SpanRecord]) -> [String] {
        let ids = Set(spans.map(\.spanID))
        var children: [String: [SpanRecord]] = [:]
        var roots: [SpanRecord] = []
        for span in spans {
            if let parent = span.parentSpanID, ids.contains(parent) { children[parent, default: []].append(span) } else { roots.append(span) }
        }
        var lines: [String] = []
        var drawn = Set<String>()
        // Depth first, in order: the next span to draw is last.
        var pending: [(span: SpanRecord, prefix: String, isLast: Bool, depth: Int)] = roots.reversed().map { ($0, "", true, 0) }
        while let (span, prefix, isLast, depth) = pending.popLast() {
            guard drawn.insert(span.spanID).inserted else { continue }
            let branch = depth == 0 ? "" : (isLast ? "└─ " : "├─ ")
            lines.append(prefix + branch + describe(span) + (depth > maxDrawnDepth ? "  (depth \(depth))" : ""))
            let next = children[span.spanID] ?? []
            let childPrefix = depth == 0 || depth >= maxDrawnDepth ? prefix : prefix + (isLast ? "   " : "│  ")
            for (index, child) in next.enumerated().reversed() {
                pending.append((child, childPrefix, index == next.count - 1, depth + 1))
            }
        }
        let unreached = spans.filter { !drawn.contains($0.spanID) }
        if !unreached.isEmpty {
            lines.append("\(unreached.count) span(s) whose parents form a loop, so no root reaches them:")
            for span in unreached { lines.append("   " + describe(span) + "  (parent \(span.parentSpanID ?? "-"))") }
        }
        return lines
    }

    /// One span: name, [bg], duration, status, its run or task, and the error message.
    private static func describe(_ span: SpanRecord) -> String {
        let duration = Double(span.endUnixNano &- span.startUnixNano) / 1e9
        var text = "\(span.name)\(span.isBackground ? " [bg]" : "")  \(ConsoleTracer.duration(duration))  \(span.attributes["flujo.status"] == "paused" ? "paused" : span.status)"
        if span.name == "pipeline_run" { text += "  \(span.runID)" }
        if let task = span.attributes["flujo.task_id"], span.name != "pipeline_run" { text += "  \(task)" }
        if let message = span.statusMessage, span.status == "error" { text += "  — \(cut(message, 80))" }
        return text
    }
}
