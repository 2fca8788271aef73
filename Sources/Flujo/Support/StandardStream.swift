#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A line that could not be written to standard output or standard error: a
/// full disk behind a redirection, a closed descriptor, a reader gone from a
/// pipe (when `SIGPIPE` is ignored). Thrown instead of stopping the process.
public struct StandardStreamError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `standard output` or `standard error`.
    public let stream: String
    /// The system's error number (`errno`), such as `ENOSPC` or `EPIPE`.
    public let code: Int32

    /// Creates an error.
    public init(stream: String, code: Int32) {
        self.stream = stream
        self.code = code
    }

    public var description: String {
        "cannot write to \(stream): \(String(cString: strerror(code)))"
    }
}

/// Standard output or standard error, written with `write(2)`: every byte or an
/// error, never a trap (`FileHandle.write(_:)` traps when a write fails).
package enum StandardStream: Sendable {
    case output
    case error

    var fileDescriptor: Int32 { self == .output ? STDOUT_FILENO : STDERR_FILENO }

    /// The stream's name in messages.
    package var name: String { self == .output ? "standard output" : "standard error" }

    /// Writes all of `text`, retrying interrupted and partial writes.
    package func write(_ text: String) throws(StandardStreamError) {
        try Self.write(text, to: fileDescriptor, name: name)
    }

    /// Writes all of `text` to `descriptor`, named `name` in the error.
    static func write(_ text: String, to descriptor: Int32, name: String) throws(StandardStreamError) {
        var text = text
        let failure: Int32? = text.withUTF8 { bytes -> Int32? in
            var offset = 0
            while offset < bytes.count {
                let written = systemWrite(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += written
            }
            return nil
        }
        if let failure { throw StandardStreamError(stream: name, code: failure) }
    }
}

/// `write(2)`, under a name that does not clash with `StandardStream.write`.
private func systemWrite(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}
