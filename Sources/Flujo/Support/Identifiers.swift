import Foundation

/// Random identifiers and wall-clock nanoseconds.
public enum Identifiers {
    /// `count` random bytes as lowercase hex (2 × count digits).
    public static func randomHex(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        var text = ""
        text.reserveCapacity(count * 2)
        var remaining = count
        while remaining > 0 {
            var word = generator.next() as UInt64
            for _ in 0..<min(8, remaining) {
                let byte = UInt8(truncatingIfNeeded: word)
                text.append(hexDigits[Int(byte >> 4)])
                text.append(hexDigits[Int(byte & 0x0f)])
                word >>= 8
            }
            remaining -= 8
        }
        return text
    }

    private static let hexDigits: [Character] = Array("0123456789abcdef")

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

    /// This process, as the owner of leases: host, pid and a random suffix.
    public static let processOwner: String = {
        let host = ProcessInfo.processInfo.hostName
        return "\(host):\(getpid()):\(randomHex(bytes: 4))"
    }()
}
