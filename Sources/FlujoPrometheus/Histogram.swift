import Synchronization

/// A cumulative histogram with fixed bucket bounds.
final class Histogram: Sendable {
    let bounds: [Double]
    private let state: Mutex<(counts: [UInt64], sum: Double, count: UInt64)>

    /// Default bounds for durations in seconds, from 0.5 ms to 60 s.
    static let durationBounds: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    init(bounds: [Double] = Histogram.durationBounds) {
        self.bounds = bounds
        state = Mutex(([UInt64](repeating: 0, count: bounds.count), 0, 0))
    }

    func observe(_ value: Double) {
        state.withLock { state in
            // Bucket counts are per bucket here and made cumulative when read.
            if let index = bounds.firstIndex(where: { value <= $0 }) { state.counts[index] += 1 }
            state.sum += value
            state.count += 1
        }
    }

    /// `_bucket` samples (cumulative, ending with `+Inf` equal to `_count`), `_sum` and `_count`.
    func samples(name: String, labels: [(String, String)]) -> [MetricFamily.Sample] {
        let (counts, sum, count) = state.withLock { ($0.counts, $0.sum, $0.count) }
        var samples: [MetricFamily.Sample] = []
        samples.reserveCapacity(bounds.count + 3)
        var cumulative: UInt64 = 0
        for (bound, bucket) in zip(bounds, counts) {
            cumulative += bucket
            samples.append(.init(name: name + "_bucket", labels: labels + [("le", PrometheusText.format(bound))], value: Double(cumulative)))
        }
        samples.append(.init(name: name + "_bucket", labels: labels + [("le", "+Inf")], value: Double(count)))
        samples.append(.init(name: name + "_sum", labels: labels, value: sum))
        samples.append(.init(name: name + "_count", labels: labels, value: Double(count)))
        return samples
    }
}
