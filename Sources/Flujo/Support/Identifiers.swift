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
        return hex(random)
    }

    /// `bytes` as lowercase hex, two digits each.
    private static func hex(_ bytes: [UInt8]) -> String {
        String(unsafeUninitializedCapacity: bytes.count * 2) { text in
            for (index, byte) in bytes.enumerated() {
                text[2 * index] = hexDigits[Int(byte >> 4)]
                text[2 * index + 1] = hexDigits[Int(byte & 0x0f)]
            }
            return bytes.count * 2
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// A new run id: `run_` + 32 hex digits (see `timeOrderedHex`).
    public static func newRunID() -> String { "run_" + timeOrderedHex() }

    /// A new background task id: `bg_` + 32 hex digits (see `timeOrderedHex`).
    public static func newTaskID() -> String { "bg_" + timeOrderedHex() }

    /// 32 hex digits: the milliseconds since the Unix epoch (12 digits), then
    /// 80 random bits (20 digits). Ids made later sort later, so the rows and
    /// index entries of new runs and tasks go to the end of their B-trees,
    /// where a commit rewrites a few pages, instead of one page per id
    /// anywhere in the file.
    public static func timeOrderedHex() -> String {
        let milliseconds = nowUnixNano() / 1_000_000
        var bytes = [UInt8](repeating: 0, count: 16)
        for index in 0..<6 { bytes[index] = UInt8(truncatingIfNeeded: milliseconds >> UInt64(40 - 8 * index)) }
        bytes.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { arc4random_buf(base + 6, 10) }
        }
        return hex(bytes)
    }

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
