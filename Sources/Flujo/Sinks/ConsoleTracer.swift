import Foundation

/// A human-readable trace of runs on a terminal or into any text stream.
///
/// Run and step starts and ends, indented by depth, with status symbols,
/// duration, cost and tokens, the error category and message on failure and
/// the pause message. Inputs and outputs (truncated) in verbose mode only.
/// Texts from steps and events have their control characters escaped, so no
/// step name or error can move the cursor or recolour the terminal.
/// Background events, when its registration lets them through
/// (`HookBus.register(_:delivery:strict:background:)`), are marked `[bg]`.
public final class ConsoleTracer: HookSink {
    public let name = "console"
    private let verbose: Bool
    private let colors: Bool
    private let write: @Sendable (String) throws -> Void

    /// Creates a tracer.
    /// - Parameters:
    ///   - verbose: show input and output summaries.
    ///   - color: `auto` (a terminal without `NO_COLOR`), `always` or `never`.
    ///   - environment: where `NO_COLOR` is looked up.
    ///   - write: where lines go; standard output by default. What it throws
    ///     is the sink's error for that event: the hook bus counts and logs
    ///     it, and the run goes on. On standard output, a line that cannot be
    ///     written (a full disk, a closed pipe) is a `StandardStreamError`,
    ///     never a stop of the process.
    public init(
        verbose: Bool = false, color: String = "auto",
        environment: [String: String] = ProcessInfo.processInfo.environment,
        write: (@Sendable (String) throws -> Void)? = nil
    ) {
        self.verbose = verbose
        switch color {
        case "always": colors = true
        case "never": colors = false
        default: colors = write == nil && isatty(STDOUT_FILENO) == 1 && environment["NO_COLOR"].map(\.isEmpty) ?? true
        }
        self.write = write ?? { line in
            try StandardStream.output.write(line + "\n")
        }
    }

    /// Creates a tracer from `[telemetry.console]` settings.
    public convenience init(settings: FlujoSettings, write: (@Sendable (String) throws -> Void)? = nil) {
        self.init(verbose: settings.telemetry.console.verbose, color: settings.telemetry.console.color, write: write)
    }

    public func handle(_ event: HookEvent) async throws {
        guard let line = render(event) else { return }
        try write(line)
    }

    /// The line for an event, or nil for events the tracer does not print.
    func render(_ event: HookEvent) -> String? {
        let tag = event.isBackground ? paint("[bg] ", .dim) : ""
        let runDepth = event.parentRunID != nil && event.isBackground ? 2 : 0
        let indent = String(repeating: "  ", count: runDepth)
        switch event.payload {
        case let .preRun(start):
            var line = "\(indent)\(tag)\(paint("▶", .blue)) run \(TerminalText.escaped(event.runID)) (\(TerminalText.escaped(event.pipelineName)) v\(TerminalText.escaped(event.pipelineVersion)), \(start.totalSteps) step\(start.totalSteps == 1 ? "" : "s"))"
            if let task = event.taskID, !event.isBackground { line += " resuming \(TerminalText.escaped(task))" }
            if verbose { line += " input=\(TerminalText.escaped(start.inputSummary))" }
            return line
        case let .postRun(end):
            let symbol = symbol(for: end.status)
            var line = "\(indent)\(tag)\(symbol) run \(TerminalText.escaped(event.runID)) \(end.status.rawValue) in \(Self.duration(end.durationSeconds))\(usage(end.usage))"
            if let message = end.errorMessage, end.status != .completed {
                line += " — " + (end.errorCategory.map { "\($0.rawValue): " } ?? "") + TerminalText.escaped(message)
            }
            return line
        case let .preStep(start):
            var line = "\(indent)  \(tag)\(paint("▶", .blue)) \(TerminalText.escaped(start.stepName))"
            if start.mode == .background { line += " (launch)" }
            if verbose { line += " input=\(TerminalText.escaped(start.inputSummary))" }
            return line
        case let .postStep(end):
            var line = "\(indent)  \(tag)\(paint("✔", .green)) \(TerminalText.escaped(end.stepName)) \(Self.duration(end.latencySeconds))\(usage(end.usage))"
            if end.attempts > 1 { line += " after \(end.attempts) attempts" }
            if end.mode == .background, let feedback = end.feedback { line += " — \(TerminalText.escaped(feedback))" }
            if verbose, let output = end.outputSummary { line += " output=\(TerminalText.escaped(output))" }
            return line
        case let .onStepFailure(end):
            let category = end.errorCategory.map { "\($0.rawValue): " } ?? ""
            return "\(indent)  \(tag)\(paint("✘", .red)) \(TerminalText.escaped(end.stepName)) \(Self.duration(end.latencySeconds))\(usage(end.usage)) — \(category)\(TerminalText.escaped(end.feedback ?? "failed"))"
        case let .onPause(end):
            return "\(indent)  \(tag)\(paint("⏸", .yellow)) \(TerminalText.escaped(end.stepName)) paused — \(TerminalText.escaped(end.feedback ?? ""))"
        case let .taskLaunched(launch):
            return "\(indent)    \(tag)\(paint("↗", .dim)) launched \(launch.taskID) (\(TerminalText.escaped(launch.stepName)))"
        case let .taskFinished(end):
            var line = "\(indent)\(tag)\(symbol(for: end.status)) task \(end.taskID) (\(TerminalText.escaped(end.stepName))) \(end.status.rawValue)"
            if let message = end.errorMessage, end.status != .completed {
                line += " — " + (end.errorCategory.map { "\($0.rawValue): " } ?? "") + TerminalText.escaped(message)
            }
            return line
        }
    }

    private enum Color: String {
        case red = "31", green = "32", yellow = "33", blue = "34", dim = "2"
    }

    private func paint(_ text: String, _ color: Color) -> String {
        colors ? "\u{1B}[\(color.rawValue)m\(text)\u{1B}[0m" : text
    }

    private func symbol(for status: RunStatus) -> String {
        switch status {
        case .completed: return paint("✔", .green)
        case .failed: return paint("✘", .red)
        case .paused: return paint("⏸", .yellow)
        case .cancelled: return paint("⊘", .yellow)
        case .running: return paint("…", .blue)
        }
    }

    private func usage(_ usage: Usage) -> String {
        var parts: [String] = []
        if usage.costUSD != 0 { parts.append(String(format: "$%.4f", usage.costUSD)) }
        if usage.tokens != 0 { parts.append("\(usage.tokens) tokens") }
        return parts.isEmpty ? "" : " (" + parts.joined(separator: ", ") + ")"
    }

    /// A duration for people: µs, ms or s.
    public static func duration(_ seconds: Double) -> String {
        if seconds < 0.001 { return String(format: "%.0f µs", seconds * 1e6) }
        if seconds < 1 { return String(format: "%.1f ms", seconds * 1e3) }
        return String(format: "%.2f s", seconds)
    }
}
