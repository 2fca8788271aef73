import Synchronization
import W3CTraceContext

/// A cumulative histogram with fixed bucket bounds, keeping the latest
/// exemplar of each bucket (OpenMetrics shows them; Prometheus text does not).
///
/// It keeps its own samples (names, labels and rendered prefixes made once)
/// and updates their values as it observes: an observation adds to one
/// bucket, and a scrape writes the lines from them in place, making the
/// buckets cumulative as it goes, with no sample built.
final class Histogram: SampleSource {
    let bounds: [Double]
    private struct State {
        /// Each bucket's own count (not cumulative), the last one `+Inf`'s.
        var counts: [Double]
        /// The latest exemplar of each bucket.
        var exemplars: [MetricFamily.Exemplar?]
        var sum = 0.0
        var count = 0.0
    }
    private let state: Mutex<State>
    /// `_bucket` samples, then `_sum` and `_count`, with their names and labels and no value.
    private let template: [MetricFamily.Sample]
    /// Every sample's rendered `name{labels} `, one after another, and where each ends:
    /// a scrape copies them, and writes the values next to them.
    private let prefixes: [UInt8]
    private let prefixEnds: [Int]

    /// Default bounds for durations in seconds, from 0.5 ms to 60 s.
    static let durationBounds: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    /// A histogram whose samples are named `name_bucket`, `name_sum` and `name_count`, with `labels`.
    init(name: String, labels: [(String, String)] = [], bounds: [Double] = Histogram.durationBounds) {
        self.bounds = bounds
        var samples: [MetricFamily.Sample] = []
        samples.reserveCapacity(bounds.count + 3)
        for le in bounds.map({ PrometheusText.format($0) }) + ["+Inf"] {
            samples.append(.init(name: name + "_bucket", labels: labels + [("le", le)], value: 0))
        }
        samples.append(.init(name: name + "_sum", labels: labels, value: 0))
        samples.append(.init(name: name + "_count", labels: labels, value: 0))
        var prefixes: [UInt8] = []
        var prefixEnds: [Int] = []
        for sample in samples {
            prefixes += PrometheusText.prefix(of: sample)
            prefixEnds.append(prefixes.count)
        }
        self.prefixes = prefixes
        self.prefixEnds = prefixEnds
        template = samples
        state = Mutex(State(counts: Array(repeating: 0, count: bounds.count + 1), exemplars: Array(repeating: nil, count: bounds.count + 1)))
    }

    /// Records a value; `exemplar` (a sampled span's ids) is kept as its bucket's latest.
    func observe(_ value: Double, exemplar: (traceID: TraceID, spanID: SpanID, unixSeconds: Double)? = nil) {
        let index = bounds.firstIndex(where: { value <= $0 }) ?? bounds.count
        state.withLock { state in
            state.counts[index] += 1
            state.sum += value
            state.count += 1
            if let exemplar {
                state.exemplars[index] = MetricFamily.Exemplar(traceID: exemplar.traceID, spanID: exemplar.spanID, value: value, timestamp: exemplar.unixSeconds)
            }
        }
    }

    /// `_bucket` samples (cumulative, ending with `+Inf` equal to `_count`), `_sum` and `_count`.
    var samples: [MetricFamily.Sample] {
        let now = state.withLock { $0 }
        var samples = template
        var cumulative = 0.0
        for index in now.counts.indices {
            cumulative += now.counts[index]
            samples[index].value = cumulative
            samples[index].exemplar = now.exemplars[index]
        }
        samples[now.counts.count].value = now.sum
        samples[now.counts.count + 1].value = now.count
        return samples
    }

    func write(into out: inout ExpositionWriter, exemplars: Bool) {
        prefixes.withUnsafeBufferPointer { prefixes in
            prefixEnds.withUnsafeBufferPointer { ends in
                state.withLock { state in
                    let buckets = state.counts.count
                    var cumulative = 0.0
                    var start = 0
                    state.counts.withUnsafeBufferPointer { counts in
                        for index in 0..<buckets {
                            cumulative += counts[index]
                            out.appendLine(prefix: UnsafeBufferPointer(rebasing: prefixes[start..<ends[index]]), value: cumulative,
                                           exemplar: exemplars ? state.exemplars[index] : nil)
                            start = ends[index]
                        }
                    }
                    out.appendLine(prefix: UnsafeBufferPointer(rebasing: prefixes[start..<ends[buckets]]), value: state.sum, exemplar: nil)
                    out.appendLine(prefix: UnsafeBufferPointer(rebasing: prefixes[ends[buckets]..<ends[buckets + 1]]), value: state.count, exemplar: nil)
                }
            }
        }
    }
}

/// One counter series that keeps its own value and rendered prefix, and
/// writes its line in place.
final class CounterSeries: SampleSource {
    private let template: MetricFamily.Sample
    private let prefix: [UInt8]
    private let value = Mutex(0.0)

    /// A series named `name`, with `labels`.
    init(name: String, labels: [(String, String)]) {
        template = MetricFamily.Sample(name: name, labels: labels, value: 0)
        prefix = PrometheusText.prefix(of: template)
    }

    /// Adds `amount`.
    func add(_ amount: Double) {
        value.withLock { $0 += amount }
    }

    var samples: [MetricFamily.Sample] {
        var sample = template
        sample.value = value.withLock { $0 }
        return [sample]
    }

    func write(into out: inout ExpositionWriter, exemplars: Bool) {
        let now = value.withLock { $0 }
        prefix.withUnsafeBufferPointer { out.appendLine(prefix: $0, value: now, exemplar: nil) }
    }
}
