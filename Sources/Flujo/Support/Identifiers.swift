import Foundation

/// Random identifiers and wall-clock nanoseconds.
public enum Identifiers {
    /// `count` random bytes as lowercase hex (2 × count digits), from the
    /// system's generator (`arc4random_buf`: getrandom on Linux) in one call.
    public static func randomHex(bytes count: Int) -> String {
        precondition(count >= 0)
        var random = [UInt8](repeating: 0, count: count)
        random.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { arc4random_buf(base, count) }
        }
        return String(unsafeUninitializedCapacity: count * 2) { text in
            for (index, byte) in random.enumerated() {
                text[2 * index] = hexDigits[Int(byte >> 4)]
                text[2 * index + 1] = hexDigits[Int(byte & 0x0f)]
            }
            return count * 2
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// A new run id: `run_` + 32 hex digits.
    public static func newRunID() -> String { "run_" + randomHex(bytes: 16) }

    /// A new background task id: `bg_` + 32 hex digits.
    public static func newTaskID() -> String { "bg_" + randomHex(bytes: 16) }

    /// The run id of a background task: `<parent_run_id>_bg_<task_id>`.
    public static func taskRunID(parentRunID: String, taskID: String) -> String { "\(parentRunID)_bg_\(taskID)" }

    /// The current wall-clock time in nanoseconds since the Unix epoch.
    public static func nowUnixNano() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    /// This process, as the owner of resume claims: host, pid and a random suffix.
    public static let processOwner: String = {
        let host = ProcessInfo.processInfo.hostName
        return "\(host):\(getpid()):\(randomHex(bytes: 4))"
    }()
}
