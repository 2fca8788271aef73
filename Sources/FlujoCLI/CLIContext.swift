import Flujo
import Foundation
import Synchronization

/// What the operator commands need from the application that embeds them:
/// the steps it can resume. `FlujoCLI.main(root:registry:)` sets it for the
/// commands it runs; it is a task-local value, not process-wide state.
public enum CLIContext {
    /// The steps `flujo tasks resume` and `retry` can run, while a command runs.
    @TaskLocal public static var registry = StepRegistry()
}

/// An error the commands report in one line, with its exit status.
public struct CLIError: Error, CustomStringConvertible {
    /// The message, without the `error: ` prefix.
    public var description: String
    /// 1: the operation failed; 2: the command line was wrong.
    public var exitCode: Int32
    /// Further lines, one item each (every problem of a configuration), printed indented below.
    public var details: [String]

    /// Creates an error.
    public init(_ description: String, exitCode: Int32 = 1, details: [String] = []) {
        self.description = description
        self.exitCode = exitCode
        self.details = details
    }
}

/// Writes to standard output and standard error, unbuffered.
///
/// A write that fails (a full disk behind a redirection, a closed descriptor)
/// never stops the process. The first failure on standard output is kept
/// (`failure`) and later lines are dropped: `FlujoCLI.main` then says so on
/// standard error and exits 1, so a script does not take a cut-off listing for
/// a whole one. Failures on standard error are dropped.
public enum Output {
    private static let outputFailure = Mutex<StandardStreamError?>(nil)

    /// Prints a line on standard output.
    public static func line(_ text: String = "") {
        write(text + "\n")
    }

    /// Prints `text` as it is on standard output.
    public static func write(_ text: String) {
        guard failure == nil else { return }
        do {
            try StandardStream.output.write(text)
        } catch {
            outputFailure.withLock { $0 = $0 ?? error }
        }
    }

    /// The first write to standard output that failed, if any.
    public static var failure: StandardStreamError? { outputFailure.withLock { $0 } }

    /// Prints a line on standard error.
    public static func error(_ text: String) {
        try? StandardStream.error.write(text + "\n")
    }

    /// Prints `text` as it is on standard error (progress lines that rewrite themselves).
    public static func progress(_ text: String) {
        try? StandardStream.error.write(text)
    }

    /// Whether standard output is a terminal.
    public static var isTerminal: Bool { isatty(STDOUT_FILENO) == 1 }
    /// Whether standard error is a terminal.
    public static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }
}
