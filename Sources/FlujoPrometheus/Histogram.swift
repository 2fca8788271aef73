import Synchronization

/// A cumulative histogram with fixed bucket bounds, keeping the latest
/// exemplar of each bucket (OpenMetrics shows them; Prometheus text does not).
final class Histogram: Sendable {
    let bounds: [Double]
    private struct State {
        var counts: [UInt64]
        var exemplars: [MetricFamily.Exemplar?]
        var sum = 0.0
        var count: UInt64 = 0
    }
    private let state: Mutex<State>

    /// Default bounds for durations in seconds, from 0.5 ms to 60 s.
    static let durationBounds: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    init(bounds: [Double] = Histogram.durationBounds) {
        self.bounds = bounds
        // One more bucket than bounds: +Inf.
        state = Mutex(State(counts: [UInt64](repeating: 0, count: bounds.count + 1), exemplars: Array(repeating: nil, count: bounds.count + 1)))
    }

    /// Records a value; `exemplar` (a sampled span's ids) is kept as its bucket's latest.
    func observe(_ value: Double, exemplar: (traceID: String, spanID: String, unixSeconds: Double)? = nil) {
        let index = bounds.firstIndex(where: { value <= $0 }) ?? bounds.count
        state.withLock { state in
            // Bucket counts are per bucket here and made cumulative when read.
            state.counts[index] += 1
            state.sum += value
            state.count += 1
            if let exemplar {
                state.exemplars[index] = MetricFamily.Exemplar(traceID: exemplar.traceID, spanID: exemplar.spanID, value: value, timestamp: exemplar.unixSeconds)
            }
        }
    }

    /// `_bucket` samples (cumulative, ending with `+Inf` equal to `_count`), `_sum` and `_count`.
    func samples(name: String, labels: [(String, String)]) -> [MetricFamily.Sample] {
        let snapshot = state.withLock { $0 }
        var samples: [MetricFamily.Sample] = []
        samples.reserveCapacity(bounds.count + 3)
        var cumulative: UInt64 = 0
        for index in 0...bounds.count {
            cumulative += snapshot.counts[index]
            let le = index < bounds.count ? PrometheusText.format(bounds[index]) : "+Inf"
            samples.append(.init(name: name + "_bucket", labels: labels + [("le", le)], value: Double(cumulative), exemplar: snapshot.exemplars[index]))
        }
        samples.append(.init(name: name + "_sum", labels: labels, value: snapshot.sum))
        samples.append(.init(name: name + "_count", labels: labels, value: Double(snapshot.count)))
        return samples
    }
}
