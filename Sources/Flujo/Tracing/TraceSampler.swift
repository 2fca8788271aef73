import Foundation
import W3CTraceContext

/// Whether a new trace is sampled, as `OTEL_TRACES_SAMPLER` names it.
///
/// The decision is taken once, at the root of a trace (or, with a parent-based
/// sampler, taken from the caller), and travels with the trace: its spans, the
/// background tasks it launches and every later attempt of those tasks share
/// it (a task keeps it in its `TaskTrace`). A trace that is not sampled is
/// neither stored nor exported; its `traceparent` still carries the decision
/// to the calls its steps make.
public enum TraceSampler: Sendable, Hashable {
    /// Every trace.
    case alwaysOn
    /// No trace.
    case alwaysOff
    /// A fraction of traces, decided from the trace id (so every process agrees).
    case traceIDRatio(Double)
    /// The caller's decision when there is a caller; the root sampler otherwise.
    indirect case parentBased(root: TraceSampler)

    /// The specification's default: `parentbased_always_on`.
    public static let parentBasedAlwaysOn = TraceSampler.parentBased(root: .alwaysOn)

    /// Decides for a span whose trace is `traceID`; `parentSampled` is the
    /// caller's decision when the span has a remote parent.
    public func decide(traceID: TraceID, parentSampled: Bool?) -> Bool {
        switch self {
        case .alwaysOn: return true
        case .alwaysOff: return false
        case let .traceIDRatio(ratio):
            if ratio >= 1 { return true }
            if ratio <= 0 { return false }
            // The low 8 bytes of the id, compared with the ratio's share of 2^64.
            let low = withUnsafeBytes(of: traceID.bytes) { raw in
                (8..<16).reduce(UInt64(0)) { ($0 << 8) | UInt64(raw[$1]) }
            }
            return Double(low) < ratio * 18_446_744_073_709_551_616.0
        case let .parentBased(root):
            if let parentSampled { return parentSampled }
            return root.decide(traceID: traceID, parentSampled: nil)
        }
    }

    /// Reads `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` values. Nil,
    /// with the reason, for a name this library does not know or an argument
    /// that is not a ratio between 0 and 1.
    public static func parse(_ name: String, argument: String?) -> (sampler: TraceSampler?, problem: String?) {
        func ratio() -> (Double?, String?) {
            guard let argument, !argument.isEmpty else { return (1, nil) }
            guard let value = Double(argument.trimmingCharacters(in: .whitespaces)), value.isFinite, (0...1).contains(value) else {
                return (nil, "OTEL_TRACES_SAMPLER_ARG \(argument.debugDescription) is not a ratio between 0 and 1")
            }
            return (value, nil)
        }
        switch name.trimmingCharacters(in: .whitespaces).lowercased() {
        case "always_on": return (.alwaysOn, nil)
        case "always_off": return (.alwaysOff, nil)
        case "traceidratio":
            let (value, problem) = ratio()
            return (value.map { .traceIDRatio($0) }, problem)
        case "parentbased_always_on": return (.parentBased(root: .alwaysOn), nil)
        case "parentbased_always_off": return (.parentBased(root: .alwaysOff), nil)
        case "parentbased_traceidratio":
            let (value, problem) = ratio()
            return (value.map { .parentBased(root: .traceIDRatio($0)) }, problem)
        default:
            return (nil, "OTEL_TRACES_SAMPLER \(name.debugDescription) is not supported (always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio)")
        }
    }

    /// The sampler's `OTEL_TRACES_SAMPLER` name and argument.
    public var name: String {
        switch self {
        case .alwaysOn: return "always_on"
        case .alwaysOff: return "always_off"
        case let .traceIDRatio(ratio): return "traceidratio(\(ratio))"
        case let .parentBased(root): return "parentbased_\(root.name)"
        }
    }
}
