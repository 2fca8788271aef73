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
        /// `_bucket` samples, each counting its own bucket only, then `_sum` and `_count`.
        var samples: [MetricFamily.Sample]
    }
    private let state: Mutex<State>
    /// Every sample's rendered `name{labels} `, one after another, and where each ends:
    /// a scrape copies them without touching a sample's own storage.
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
        for index in samples.indices {
            let prefix = PrometheusText.prefix(of: samples[index])
            samples[index].renderedPrefix = prefix
            prefixes += prefix
            prefixEnds.append(prefixes.count)
        }
        self.prefixes = prefixes
        self.prefixEnds = prefixEnds
        state = Mutex(State(samples: samples))
    }

    /// Records a value; `exemplar` (a sampled span's ids) is kept as its bucket's latest.
    func observe(_ value: Double, exemplar: (traceID: TraceID, spanID: SpanID, unixSeconds: Double)? = nil) {
        let index = bounds.firstIndex(where: { value <= $0 }) ?? bounds.count
        let last = bounds.count
        state.withLock { state in
            state.samples.withUnsafeMutableBufferPointer { samples in
                samples[index].value += 1
                samples[last + 1].value += value
                samples[last + 2].value += 1
                if let exemplar {
                    samples[index].exemplar = MetricFamily.Exemplar(traceID: exemplar.traceID, spanID: exemplar.spanID, value: value, timestamp: exemplar.unixSeconds)
                }
            }
        }
    }

    /// `_bucket` samples (cumulative, ending with `+Inf` equal to `_count`), `_sum` and `_count`.
    var samples: [MetricFamily.Sample] {
        var samples = state.withLock { $0.samples }
        var cumulative = 0.0
        for index in 0...bounds.count {
            cumulative += samples[index].value
            samples[index].value = cumulative
        }
        return samples
    }

    func write(into out: inout ExpositionWriter, exemplars: Bool) {
        let buckets = bounds.count + 1
        prefixes.withUnsafeBufferPointer { prefixes in
            prefixEnds.withUnsafeBufferPointer { ends in
                state.withLock { state in
                    state.samples.withUnsafeBufferPointer { samples in
                        var cumulative = 0.0
                        var start = 0
                        for index in 0..<samples.count {
                            let value: Double
                            if index < buckets {
                                cumulative += samples[index].value
                                value = cumulative
                            } else {
                                value = samples[index].value
                            }
                            let prefix = UnsafeBufferPointer(rebasing: prefixes[start..<ends[index]])
                            out.appendLine(prefix: prefix, value: value, exemplar: exemplars ? samples[index].exemplar : nil)
                            start = ends[index]
                        }
                    }
                }
            }
        }
    }
}
