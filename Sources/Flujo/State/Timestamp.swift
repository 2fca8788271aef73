import Foundation

/// A point in time as whole milliseconds since the Unix epoch, UTC.
///
/// Flujo stores every time this way (SQLite `INTEGER` columns), so comparisons
/// in SQL and in Swift never mix time zones or clocks.
public struct Timestamp: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    public var millisecondsSince1970: Int64

    /// Creates a timestamp from milliseconds since the epoch.
    public init(millisecondsSince1970: Int64) {
        self.millisecondsSince1970 = millisecondsSince1970
    }

    /// Creates a timestamp from a `Date`, truncated to the millisecond; a date
    /// beyond the range saturates at its end (NaN is the epoch).
    public init(_ date: Date) {
        let milliseconds = (date.timeIntervalSince1970 * 1000).rounded(.down)
        let limit = 9.2e18
        self.millisecondsSince1970 = milliseconds.isNaN ? 0 : Int64(min(max(milliseconds, -limit), limit))
    }

    /// The current wall-clock time.
    public static var now: Timestamp {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Timestamp(millisecondsSince1970: Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000)
    }

    /// The same instant as a `Date`.
    public var date: Date { Date(timeIntervalSince1970: Double(millisecondsSince1970) / 1000) }

    /// This time moved by a number of seconds (negative moves back).
    /// Saturates at the ends of the range instead of trapping, whatever `seconds` is (NaN adds nothing).
    public func adding(seconds: Double) -> Timestamp {
        let milliseconds = (seconds * 1000).rounded()
        guard !milliseconds.isNaN else { return self }
        let limit = 9.2e18
        let delta = Int64(min(max(milliseconds, -limit), limit))
        let (sum, overflow) = millisecondsSince1970.addingReportingOverflow(delta)
        return Timestamp(millisecondsSince1970: overflow ? (delta > 0 ? .max : .min) : sum)
    }

    /// ISO-8601 in UTC with milliseconds, e.g. `2026-11-25T13:14:15.123Z`.
    /// Every value has one, however far from now (a row's time is shown, never trapped on).
    public var iso8601: String {
        let seconds = time_t(millisecondsSince1970.floorDiv(1000))
        let remainder = millisecondsSince1970 % 1000
        let millis = remainder < 0 ? remainder + 1000 : remainder
        var parts = tm()
        var copy = seconds
        gmtime_r(&copy, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }

    public var description: String { iso8601 }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.millisecondsSince1970 < rhs.millisecondsSince1970
    }
}

extension Int64 {
    /// Division rounding towards negative infinity.
    fileprivate func floorDiv(_ divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }
}
