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
