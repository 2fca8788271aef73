import Flujo
import FlujoOTLP
import FlujoPrometheus
import FlujoSQLite
import Foundation
import Synchronization

/// What the operator commands need from the application that embeds them:
/// the steps it can resume, and where output goes.
public enum CLIContext {
    private static let shared = Mutex<StepRegistry>(StepRegistry())

    /// The steps `flujo tasks resume` and `retry` can run. Register the
    /// application's steps here before calling `FlujoCLI.main`.
    public static var registry: StepRegistry {
        get { shared.withLock { $0 } }
        set { shared.withLock { $0 = newValue } }
    }
}

/// An error the commands report in one line, with its exit status.
public struct CLIError: Error, CustomStringConvertible {
    /// The message, without the `error: ` prefix.
    public var description: String
    /// 1: the operation failed; 2: the command line was wrong.
    public var exitCode: Int32

    /// Creates an error.
    public init(_ description: String, exitCode: Int32 = 1) {
        self.description = description
        self.exitCode = exitCode
    }
}

/// Writes to standard output and standard error, unbuffered.
public enum Output {
    /// Prints a line on standard output.
    public static func line(_ text: String = "") {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    /// Prints a line on standard error.
    public static func error(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// Whether standard output is a terminal.
    public static var isTerminal: Bool { isatty(STDOUT_FILENO) == 1 }
    /// Whether standard error is a terminal.
    public static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }
}

/// Telemetry wired from settings: console tracer, OTLP exporter (when
/// enabled), event metrics, all on one hook bus.
public struct TelemetrySetup: Sendable {
    /// The bus to give the runner.
    public let hooks = HookBus()
    /// The OTLP exporter, when `[telemetry.otlp]` (or OTEL_*) enables it.
    public let otlp: OTLPExporter?
    /// Event-derived Prometheus metrics.
    public let events: EventMetrics
    /// Span processors to give the runner.
    public var spanProcessors: [any SpanProcessor] { otlp.map { [$0] } ?? [] }

    /// Wires telemetry for `settings`, with a console tracer when given.
    public init(settings: FlujoSettings, console: ConsoleTracer?) {
        if let console { hooks.register(console) }
        events = EventMetrics(background: settings.prometheusBackground)
        hooks.register(events)
        otlp = settings.telemetry.otlp.enabled ? OTLPExporter(settings: settings) : nil
    }

    /// A collector of every metric for this setup.
    public func collector(store: any StateStore) -> MetricsCollector {
        MetricsCollector(store: store, events: events, hooks: hooks, counterSources: otlp.map { [$0] } ?? [])
    }

    /// Flushes and stops the exporter.
    public func shutdown() {
        otlp?.shutdown(timeout: .seconds(10))
    }
}
